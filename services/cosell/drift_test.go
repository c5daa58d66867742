package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
)

// TestDriftFoundAndFixed: Partner Center's webhook for a change is lost (and the reconcile poll is an
// hour away), so the pair drifts; `cosell drift` reports the field, `cosell drift --fix` publishes the
// missed snapshot and the Opportunity follows; then no drift is left. An opted-in Opportunity made while
// the stages are down is reported as unlinked.
func TestDriftFoundAndFixed(t *testing.T) {
	t.Parallel()
	s, conn := opsStack(t, nil)
	r, oppID := referralSynced(t, s, "Drifting deal", 30000)
	quiet(t, s)
	if code, out, errOut := admin(t, conn, "drift"); code != 0 || !strings.Contains(out, "no drift") {
		t.Fatalf("drift on a converged system: code %d\n%s\n%s", code, out, errOut)
	}

	s.PC.SetFaults(pcemu.Faults{DropWebhooks: 1})
	v := 45500.0
	if _, err := s.PC.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
		t.Fatal(err)
	}
	quiet(t, s)
	if o, _ := s.SF.Get(sf.ObjectOpportunity, oppID); o[sf.FieldAmount] == v {
		t.Fatal("the change arrived although its webhook was dropped; the test proves nothing")
	}
	code, out, errOut := admin(t, conn, "drift")
	if code != 3 || !strings.Contains(out, "differs") || !strings.Contains(out, "dealValue") || !strings.Contains(out, "45500") {
		t.Fatalf("drift: code %d, want 3 and the dealValue difference\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = admin(t, conn, "drift", "--fix")
	if code != 0 || !strings.Contains(out, "pc snapshot published") {
		t.Fatalf("drift --fix: code %d\n%s\n%s", code, out, errOut)
	}
	eventually(t, 20*time.Second, "Opportunity healed", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldAmount] == v, fmt.Sprint(o[sf.FieldAmount])
	})
	quiet(t, s)
	if code, out, _ := admin(t, conn, "drift"); code != 0 || !strings.Contains(out, "no drift") {
		t.Errorf("drift after --fix: code %d\n%s", code, out)
	}

	// An opted-in Opportunity nobody has linked yet.
	s.StopPipeline()
	acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": "Unlinked GmbH", "BillingCountry": "DE"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{"Name": "Unlinked", "AccountId": acc, "Amount": 10.0,
		"CurrencyIsoCode": "EUR", "CloseDate": "2027-03-31", "StageName": "Qualification", sf.FieldSyncWithPartnerCenter: true})
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ = admin(t, conn, "drift", "--json")
	if code != 3 || !strings.Contains(out, `"kind": "unlinked"`) || !strings.Contains(out, id) {
		t.Errorf("drift with an unlinked opportunity: code %d\n%s", code, out)
	}
	if err := s.StartPipeline(context.Background()); err != nil {
		t.Fatal(err)
	}
}
