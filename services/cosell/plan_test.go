package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// TestPlanPreviewsAMappingChangeWithoutWriting syncs one referral, then plans its Opportunity with the
// running mapping (nothing to do) and with a changed mapping (another hold stage): the plan shows that the
// referral would be accepted, and nothing is written to either side.
func TestPlanPreviewsAMappingChangeWithoutWriting(t *testing.T) {
	ctx := context.Background()
	s, err := stack.Start(ctx, stack.Options{DataDir: t.TempDir(), Vars: map[string]string{"COSELL_SF_POLL_INTERVAL": "200ms", "COSELL_AUDIT_SUMMARY_INTERVAL": "0"},
		Consume: platform.ConsumeOptions{MaxWait: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	v := 1000.0
	r, err := s.PC.SellerCreate(pc.Referral{Name: "Plan me", CustomerProfile: &pc.CustomerProfile{Name: "Plan Co",
		Address: &pc.Address{Country: "US", PostalCode: "98052", City: "Redmond"}},
		Consent: &pc.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true},
		Details: &pc.Details{DealValue: &v, Currency: "USD", ClosingDateTime: "2027-02-15T00:00:00Z"}})
	if err != nil {
		t.Fatal(err)
	}
	bus, err := s.Connect(ctx, "cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	// Wait until the Opportunity cosell created has been observed and decided on.
	var plans []RecordPlan
	var oppID string
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(20 * time.Second); ; <-tick.C {
		for _, o := range s.SF.All(sf.ObjectOpportunity) {
			if o[sf.FieldReferralIdentifier] == r.ID {
				oppID = fmt.Sprint(o[sf.FieldID])
			}
		}
		if oppID != "" {
			if plans, err = Plan(ctx, bus, mapping.Default(), planSelection{OpportunityID: oppID}, time.Now()); err != nil {
				t.Fatal(err)
			}
			if len(plans) == 1 && plans[0].Linked {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Opportunity for the referral was not observed (id %q, plans %+v)", oppID, plans)
		}
	}
	if plans[0].ToPC != nil || len(plans[0].ToSF) != 0 {
		t.Fatalf("with the running mapping nothing is to be done: %+v", plans[0])
	}

	custom := strings.Replace(string(mapping.DefaultYAML()), "hold: Prospecting", "hold: Needs Analysis", 1)
	file := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(file, []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	writes := s.SF.Counts()["sobjects.update"] + s.PC.Counts()["referrals.patch"]
	t.Setenv("COSELL_NATS_URL", s.NATS.ClientURL())
	var out, errb bytes.Buffer
	if code := Run(ctx, []string{"plan", "--opportunity", oppID, "--mapping", file}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	// Prospecting is no longer the hold stage: the Opportunity would read as accepted.
	if !strings.Contains(out.String(), `replace /status = "Active"`) || !strings.Contains(out.String(), "nothing was written") {
		t.Fatalf("plan output:\n%s", out.String())
	}
	if now := s.SF.Counts()["sobjects.update"] + s.PC.Counts()["referrals.patch"]; now != writes {
		t.Fatalf("a plan wrote something: %d writes before, %d after", writes, now)
	}
	// As data: the same plan in JSON, and a plan for nothing is an empty list, not null.
	out.Reset()
	if code := Run(ctx, []string{"plan", "--opportunity", oppID, "--mapping", file, "-o", "json"}, &out, &errb); code != 0 ||
		!strings.HasPrefix(out.String(), "[") || !strings.Contains(out.String(), `"op": "replace"`) {
		t.Fatalf("plan -o json: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := Run(ctx, []string{"plan", "--referral", "no-such-referral", "-o", "json"}, &out, &errb); code != 0 || out.String() != "[]\n" {
		t.Fatalf("plan -o json for nothing: exit %d %q", code, out.String())
	}
}
