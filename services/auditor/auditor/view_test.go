package auditor

import (
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
)

func TestChangesFoldEveryStepOfAChangeIntoOneRow(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	n := 0
	d := func(link, stage, kind, cause string, fields ...string) contracts.Decision {
		n++
		return contracts.Decision{LinkID: link, Stage: stage, Kind: kind, Cause: cause, Fields: fields, At: at.Add(time.Duration(n) * time.Second)}
	}
	audit := "cmd/sf/pc-1/" + PurposeAudit + "/abc"
	decisions := []contracts.Decision{
		// A referral is created on Salesforce: created, the writer's outcome, the echo of our write, the
		// Audit field write-back and its echo.
		d("pc-1", "mapper", contracts.DecisionCreated, "pc/1/e1", "name", "dealValue"),
		d("pc-1", "mapper", contracts.DecisionWritten, "cmd/sf/pc-1/create"),
		d("pc-1", "mapper", contracts.DecisionEcho, "sf/006A/t1"),
		d("pc-1", "mapper", contracts.DecisionWritten, audit),
		d("pc-1", "mapper", contracts.DecisionNoChange, "sf/006A/t2"),
		// Another deal's change interleaves; its write is parked.
		d("pc-2", "mapper", contracts.DecisionApplied, "pc/2/e2", "dealValue"),
		d("pc-2", "sf-writer", contracts.DecisionDeadLetter, "cmd/sf/pc-2/pc/2/e2"),
		// The first deal's value changes in Partner Center: a conflict and what was sent, on one snapshot.
		d("pc-1", "mapper", contracts.DecisionConflict, "pc/1/e3", "dealValue"),
		d("pc-1", "mapper", contracts.DecisionApplied, "pc/1/e3", "dealValue"),
		d("pc-1", "mapper", contracts.DecisionFailed, "cmd/sf/pc-1/pc/1/e3"),
		// Unchanged snapshots of a third deal, with no change of its own before them.
		d("sf-3", "mapper", contracts.DecisionNoChange, "sf/006C/t1"),
		d("sf-3", "mapper", contracts.DecisionStale, "sf/006C/t0"),
		// The parked write is re-driven and carried out.
		d("pc-2", "auditor", contracts.DecisionRedriven, "cmd/sf/pc-2/pc/2/e2"),
		d("pc-2", "mapper", contracts.DecisionWritten, "cmd/sf/pc-2/pc/2/e2"),
	}
	decisions[5].Changes = []contracts.FieldChange{{Field: "dealValue", Before: 1000.0, After: 2500.0, From: contracts.PartnerCenter}}
	got := Changes(decisions)
	type row struct {
		link, from, outcome, stages, steps, fields string
	}
	var rows []row
	for _, c := range got {
		var steps []string
		for _, s := range c.Steps {
			steps = append(steps, s.Kind)
		}
		rows = append(rows, row{c.LinkID, c.From, c.Outcome, strings.Join(c.Stages, ">"), strings.Join(steps, ","), strings.Join(c.Fields, ",")})
	}
	want := []row{ // newest first
		{"sf-3", "Salesforce", "no change", "mapper", "no-change,stale", ""},
		{"pc-1", "Partner Center", "failed", "mapper>sf-writer", "conflict,applied,failed", "dealValue"},
		{"pc-2", "Partner Center", "written", "mapper>sf-writer>auditor", "applied,dead-letter,re-driven,written", "dealValue"},
		{"pc-1", "Partner Center", "written", "mapper>sf-writer", "created,written,echo,Audit field written,no-change", "name,dealValue"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d:\n%+v", len(rows), len(want), rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, rows[i], want[i])
		}
	}
	if v := got[2].Values; len(v) != 1 || v[0] != (ShownChange{Field: "dealValue", Before: "1000", After: "2500", From: "Partner Center"}) {
		t.Errorf("the change's values: %+v", v)
	}
	if got[2].At != decisions[5].At {
		t.Errorf("a change is shown at its first decision's time, got %v", got[2].At)
	}
}

func TestChangesOutcomeOfAParkedChange(t *testing.T) {
	steps := []Step{{Kind: contracts.DecisionApplied}, {Kind: contracts.DecisionDeadLetter}}
	if o := outcomeOf(steps); o != "dead letter" {
		t.Errorf("parked: %q", o)
	}
	if o := outcomeOf(append(steps, Step{Kind: contracts.DecisionRedriven})); o != "in flight" {
		t.Errorf("re-driven, not written yet: %q", o)
	}
	if o := outcomeOf([]Step{{Kind: contracts.DecisionApplied}, {Kind: auditStep(contracts.DecisionFailed)}}); o != "in flight" {
		t.Errorf("a failed Audit write-back is not the change's outcome: %q", o)
	}
	for _, o := range Outcomes {
		if pillClass(o) == "" && o != "re-driven" && o != "ignored" && o != "no change" {
			t.Errorf("outcome %q has no colour", o)
		}
	}
}

func TestLinkViewSaysWhoWhatAndWhy(t *testing.T) {
	r := Records{ReferralURL: "https://partner.microsoft.com/dashboard/referrals/v2/leads/%s", OpportunityURL: "https://x.lightning.force.com/lightning/r/Opportunity/%s/view"}
	l := LinkRecord{Link: contracts.Link{ID: "pc-R1", ReferralID: "R1", OpportunityID: "006A", State: contracts.LinkLinked,
		Synced: map[string]any{"name": "Contoso data platform", "dealValue": 1234567.5, "currency": "EUR"},
		PC:     contracts.Side{Latest: map[string]any{"customerName": "Contoso Ltd", "status": "active"}},
		SF:     contracts.Side{Latest: map[string]any{"status": "won"}},
	}}
	v := r.View(l)
	if v.Deal != "Contoso data platform" || v.Customer != "Contoso Ltd" || v.Value != "1,234,567.50 EUR" || v.PCStatus != "active" || v.SFStatus != "won" {
		t.Errorf("view: %+v", v)
	}
	if v.ReferralURL != "https://partner.microsoft.com/dashboard/referrals/v2/leads/R1" || v.OpportunityURL != "https://x.lightning.force.com/lightning/r/Opportunity/006A/view" {
		t.Errorf("record links: %q %q", v.ReferralURL, v.OpportunityURL)
	}
	if v.Attention != "" || v.Fix != "" {
		t.Errorf("a link in step needs attention: %q", v.Attention)
	}
	for _, q := range []string{"contoso", "CONTOSO LTD", "R1", "006a"} {
		if !v.Matches(q) {
			t.Errorf("%q does not find the deal", q)
		}
	}
	if v.Matches("northwind") {
		t.Error("northwind finds Contoso")
	}

	l.Held = &contracts.Held{Reason: "the Opportunity is in the hold stage", Fields: []string{"dealValue"}}
	l.Review = map[string]contracts.Review{"closeDate": {PC: "2027-01-01", SF: "2027-02-01"}}
	v = r.View(l)
	for _, want := range []string{"held: the Opportunity is in the hold stage (dealValue)", "closeDate (Partner Center 2027-01-01, Salesforce 2027-02-01)"} {
		if !strings.Contains(v.Attention, want) {
			t.Errorf("attention %q lacks %q", v.Attention, want)
		}
	}
	if v.Fix != "cosell links get pc-R1" {
		t.Errorf("fix: %q", v.Fix)
	}
	parked := v.Parked([]DeadLetterEntry{{Seq: 4, LinkID: "pc-R1"}, {Seq: 5, LinkID: "pc-R2"}, {Seq: 7, LinkID: "pc-R1"}})
	if !strings.Contains(parked.Attention, "held: ") || !strings.Contains(parked.Attention, "2 message(s) parked in the dead letters (4, 7)") || parked.Fix != "cosell dlq retry 4 7" {
		t.Errorf("parked: %q, fix %q", parked.Attention, parked.Fix)
	}
	if p := (LinkView{LinkRecord: LinkRecord{Link: contracts.Link{ID: "pc-R9"}}}).Parked(nil); p.Attention != "" {
		t.Errorf("nothing parked: %q", p.Attention)
	}
	if v := (Records{}).View(l); v.ReferralURL != "" || v.OpportunityURL != "" {
		t.Errorf("links without a format: %+v", v)
	}
	for x, want := range map[float64]string{0: "0 USD", 999: "999 USD", 1000: "1,000 USD", -48000: "-48,000 USD", 7300.25: "7,300.25 USD"} {
		if got := money(x, "USD"); got != want {
			t.Errorf("money(%v) = %q, want %q", x, got, want)
		}
	}
}

func TestWhoDecidedAndWhereItCameFrom(t *testing.T) {
	for _, c := range []struct {
		d        contracts.Decision
		by, from string
	}{
		{contracts.Decision{Stage: "mapper", Kind: contracts.DecisionApplied, Cause: "pc/R1/e1"}, "mapper", "Partner Center"},
		{contracts.Decision{Stage: "mapper", Kind: contracts.DecisionEcho, Cause: "sf/006A/t1"}, "mapper", "Salesforce"},
		{contracts.Decision{Stage: "mapper", Kind: contracts.DecisionWritten, Cause: "cmd/pc/sf-006A/create"}, "pc-writer", "pc-writer's outcome"},
		{contracts.Decision{Stage: "mapper", Kind: contracts.DecisionFailed, Cause: "cmd/sf/pc-R1/sf/006A/t1"}, "sf-writer", "sf-writer's outcome"},
		{contracts.Decision{Stage: "mapper", Kind: contracts.DecisionNoChange, Cause: "cmd/sf/pc-R1/create"}, "mapper", "sf-writer's outcome"},
		{contracts.Decision{Stage: "sf-writer", Kind: contracts.DecisionDeadLetter, Cause: "cmd/sf/pc-R1/create"}, "sf-writer", "command to sf-writer"},
		{contracts.Decision{Stage: "auditor", Kind: contracts.DecisionRedriven, Cause: ""}, "auditor", ""},
	} {
		if by, from := DecidedBy(c.d), SideOf(c.d); by != c.by || from != c.from {
			t.Errorf("%s on %q: by %q from %q, want %q %q", c.d.Kind, c.d.Cause, by, from, c.by, c.from)
		}
	}
}
