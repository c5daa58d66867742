package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// TestDriftFoundAndFixed: Partner Center's webhook for a change is lost (and the reconcile poll is an
// hour away), so the pair drifts; `cosell drift` reports the field, `cosell drift --fix` publishes the
// missed snapshot and the Opportunity follows; then no drift is left. An opted-in Opportunity made while
// the stages are down is reported as unlinked.
func TestDriftFoundAndFixed(t *testing.T) {
	t.Parallel()
	s, conn := opsStack(t, nil)
	r, oppID := referralSynced(t, s, "Drifting deal", 30000)
	stacktest.Quiet(t, s)
	if code, out, errOut := admin(t, conn, "drift"); code != 0 || !strings.Contains(out, "no drift") {
		t.Fatalf("drift on a converged system: code %d\n%s\n%s", code, out, errOut)
	}

	s.PC.SetFaults(pcemu.Faults{DropWebhooks: 1})
	v := 45500.0
	if _, err := s.PC.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
		t.Fatal(err)
	}
	stacktest.Quiet(t, s)
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
	testkit.Eventually(t, 20*time.Second, "Opportunity healed", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldAmount] == v, fmt.Sprint(o[sf.FieldAmount])
	})
	stacktest.Quiet(t, s)
	if code, out, _ := admin(t, conn, "drift"); code != 0 || !strings.Contains(out, "no drift") {
		t.Errorf("drift after --fix: code %d\n%s", code, out)
	}
	// The fix is on the link's timeline with who made it.
	rec, err := s.Auditor.Lookup(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if by := byOf(rec.Timeline, contracts.DecisionDriftFixed); by != auditor.CLIOperator().String() {
		t.Errorf("drift fix audited as by %q; timeline %s", by, kinds(rec.Timeline))
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
	code, out, _ = admin(t, conn, "drift", "-o", "json")
	if code != 3 || !strings.Contains(out, `"kind": "unlinked"`) || !strings.Contains(out, id) {
		t.Errorf("drift with an unlinked opportunity: code %d\n%s", code, out)
	}
	if err := s.StartPipeline(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestCustomFieldFlowsAndDriftSeesIt runs the system with a customised mapping (a field added on both
// sides: the referral's campaignId ↔ the org's own Opportunity field Partner_Campaign__c), loaded the way
// the stages load it. The field goes referral → Opportunity and back; `cosell drift` with the same mapping
// finds no drift (it reads the fields the mapping names, as sf-ingest does); a change sf-ingest missed is
// found, and `drift --fix` publishes the snapshot sf-ingest would have published: with the custom field,
// the Microsoft Solutions and the same event id, so sf-ingest's own copy of that version is dropped as a
// duplicate.
func TestCustomFieldFlowsAndDriftSeesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	file, meta := customMapping(t)
	if _, err := mapping.Load(mapping.Config{File: file, Metadata: meta}); err != nil {
		t.Fatalf("custom mapping: %v", err)
	}
	s, conn := opsStack(t, func(o *stack.Options) {
		o.Vars["COSELL_MAPPING_FILE"], o.Vars["COSELL_MAPPING_METADATA"] = file, meta
		o.SFMetadataDir = meta
	})
	withMapping := []string{"--mapping", file, "--metadata", meta}

	// Partner Center → Salesforce.
	ref := stacktest.SellerReferral("Campaign deal", 25000)
	ref.CampaignID = "FY27-AZURE"
	ref.Details.Requirements = &pc.Requirements{Solutions: []pc.Solution{{ID: "SOL-AZ-1", Name: "Azure Migrate"}}}
	r, err := s.PC.SellerCreate(ref)
	if err != nil {
		t.Fatal(err)
	}
	var oppID string
	testkit.Eventually(t, 20*time.Second, "Opportunity with the campaign", func() (bool, string) {
		opps := stacktest.OpportunitiesFor(s, r.ID)
		if len(opps) != 1 {
			return false, fmt.Sprintf("%d opportunities", len(opps))
		}
		oppID = fmt.Sprint(opps[0][sf.FieldID])
		return opps[0][campaignField] == "FY27-AZURE", fmt.Sprint(opps[0][campaignField])
	})

	// Salesforce → Partner Center: accepted and re-campaigned in one edit.
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldStageName: "Qualification", campaignField: "FY27-AI"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "referral with the new campaign", func() (bool, string) {
		got, err := s.PC.Get(r.ID)
		if err != nil {
			return false, err.Error()
		}
		return got.CampaignID == "FY27-AI" && got.Status == pc.StatusActive, got.CampaignID + " " + got.Status
	})
	stacktest.Quiet(t, s)
	if code, out, errOut := admin(t, conn, "drift", withMapping...); code != 0 || !strings.Contains(out, "no drift") {
		t.Fatalf("drift with the custom mapping on a converged system: code %d\n%s\n%s", code, out, errOut)
	}

	// A change sf-ingest does not see (the stages are down): drift finds it, --fix heals it.
	s.StopPipeline()
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{campaignField: "FY27-DATA"}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := admin(t, conn, "drift", withMapping...)
	if code != 3 || !strings.Contains(out, "campaign") || !strings.Contains(out, "FY27-DATA") {
		t.Fatalf("drift: code %d, want 3 and the campaign difference\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = admin(t, conn, "drift", append(withMapping, "--fix")...); code != 0 || !strings.Contains(out, "sf snapshot published") {
		t.Fatalf("drift --fix: code %d\n%s\n%s", code, out, errOut)
	}
	bus, err := s.Connect(ctx, "cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	snaps := oppSnapshots(t, bus, oppID)
	healed := snaps[len(snaps)-1]
	if healed.data.Via != "drift" || healed.data.Opportunity.Fields[campaignField] != "FY27-DATA" {
		t.Fatalf("drift --fix published %+v, want the Opportunity with %s=FY27-DATA", healed.data, campaignField)
	}
	if sols := healed.data.Opportunity.Solutions; len(sols) != 1 || sols[0].SolutionID != "SOL-AZ-1" {
		t.Errorf("the healed snapshot lost the Microsoft Solutions: %+v", sols)
	}
	if want := contracts.OpportunityObservedID(oppID, healed.data.Version); healed.id != want {
		t.Errorf("drift --fix published id %s, want the ingest id %s", healed.id, want)
	}

	if err := s.StartPipeline(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "referral healed", func() (bool, string) {
		got, _ := s.PC.Get(r.ID)
		return got.CampaignID == "FY27-DATA", got.CampaignID
	})
	stacktest.Quiet(t, s)
	same := 0
	for _, sn := range oppSnapshots(t, bus, oppID) {
		if sn.id == healed.id {
			same++
		}
	}
	if same != 1 {
		t.Errorf("%d snapshots with id %s: sf-ingest's read of the version drift published was not a duplicate", same, healed.id)
	}
	if code, out, errOut := admin(t, conn, "drift", withMapping...); code != 0 || !strings.Contains(out, "no drift") {
		t.Errorf("drift after --fix: code %d\n%s\n%s", code, out, errOut)
	}
}

type oppSnapshot struct {
	id   string
	data contracts.OpportunityObserved
}

// oppSnapshots reads every observed snapshot of an Opportunity, in stream order.
func oppSnapshots(t *testing.T, bus *platform.Bus, oppID string) []oppSnapshot {
	t.Helper()
	var out []oppSnapshot
	err := bus.Read(context.Background(), contracts.StreamObserved, func(m platform.Stored) error {
		e, err := m.Event()
		if err != nil {
			return err
		}
		d, err := platform.DataAs[contracts.OpportunityObserved](e)
		if err != nil {
			return err
		}
		out = append(out, oppSnapshot{id: e.ID(), data: d})
		return nil
	}, platform.Subjects(contracts.Subject(contracts.SubjectOpportunityObserved, oppID)))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no snapshot of %s observed", oppID)
	}
	return out
}
