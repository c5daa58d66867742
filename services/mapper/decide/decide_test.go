package decide

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/mapping"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// def decides with the built-in mapping.
func def() Decider { return Decider{Mapping: mapping.Default()} }

// sampleReferral is the documented Get-by-id sample (partner-center.md), with a closing date added.
func sampleReferral() partnercenter.Referral {
	const doc = `{
	  "id": "61c65491-2f2c-461a-84b4-3654499bc1d9", "engagementId": "b1c40bb4-6d36-4eca-baa3-e1460cf2a454",
	  "name": "Contoso supply chain", "createdDateTime": "2018-10-29T21:24:52.040469Z", "updatedDateTime": "2018-10-29T21:24:52.040469Z",
	  "status": "New", "substatus": "Pending", "qualification": "SalesQualified", "type": "Independent",
	  "customerProfile": {"name": "Contoso Customer Inc", "address": {"addressLine1": "One Microsoft Way", "city": "Redmond", "state": "WA", "postalCode": "98052", "country": "US"}, "size": "10to50employees"},
	  "consent": {"consentToToShareInfoWithOthers": true, "consentToContact": true},
	  "details": {"notes": "Customer is looking to leverage Dynamics 365.", "dealValue": 50000, "currency": "USD", "closingDateTime": "2027-01-31T00:00:00Z"},
	  "eTag": "\"2500ec5a-0000-0000-0000-5bf4967d0000\""}`
	var r partnercenter.Referral
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		panic(err)
	}
	return r
}

func ver(tag string, minutes int) contracts.Version {
	return contracts.Version{Tag: tag, At: t0.Add(time.Duration(minutes) * time.Minute)}
}

func opp(id string, fields map[string]any) contracts.Opportunity {
	f := map[string]any{
		sf.FieldName: "Fabrikam rollout", sf.FieldAmount: 1200.0, sf.FieldCurrencyIsoCode: "EUR",
		sf.FieldCloseDate: "2027-03-01", sf.FieldStageName: "Qualification", sf.FieldDescription: "notes",
		sf.FieldSyncWithPartnerCenter: true, "Account.Name": "Fabrikam", "Account.BillingCountry": "DE",
	}
	for k, v := range fields {
		f[k] = v
	}
	return contracts.Opportunity{ID: id, Fields: f}
}

func TestReferralFirstSightCreatesOpportunity(t *testing.T) {
	m := def()
	r := sampleReferral()
	res := m.Observe(nil, m.ObserveReferral("e1", r, ver(r.ETag, 0)), t0)
	if res.Opp == nil || res.Opp.Data.Op != contracts.OpCreate {
		t.Fatalf("want an Opportunity create, got %+v", res)
	}
	f := res.Opp.Data.Fields
	want := map[string]any{
		sf.FieldName: "Contoso supply chain ✔", sf.FieldAmount: 50000.0, sf.FieldCurrencyIsoCode: "USD",
		sf.FieldCloseDate: "2027-01-31", sf.FieldStageName: "Prospecting", sf.FieldReferralIdentifier: r.ID,
		sf.FieldSyncWithPartnerCenter: true, sf.FieldDescription: "Customer is looking to leverage Dynamics 365.",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("field %s = %v, want %v", k, f[k], v)
		}
	}
	if a := res.Opp.Data.Account; a == nil || a.Name != "Contoso Customer Inc" || a.Country != "US" || a.PostalCode != "98052" {
		t.Errorf("account = %+v", a)
	}
	if res.Link == nil || res.Link.State != contracts.LinkCreatingOpportunity || res.Link.SF.Pending != res.Opp.ID {
		t.Fatalf("link = %+v", res.Link)
	}
	if res.Opp.Data.ReferralID != r.ID {
		t.Errorf("create must upsert by the referral id")
	}
}

func TestOpportunityFirstSight(t *testing.T) {
	m := def()
	cases := []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"sync on creates a referral", nil, contracts.DecisionCreated},
		{"sync off is ignored", map[string]any{sf.FieldSyncWithPartnerCenter: false}, contracts.DecisionIgnored},
		{"a referral id adopts", map[string]any{sf.FieldReferralIdentifier: "r-9"}, contracts.DecisionLinked},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := opp("006A", c.fields)
			res := m.Observe(nil, m.ObserveOpportunity("e1", o, ver("1", 0)), t0)
			if len(res.Decisions) != 1 || res.Decisions[0].Kind != c.want {
				t.Fatalf("decisions = %+v", res.Decisions)
			}
			if c.want == contracts.DecisionCreated {
				r := res.Referral.Data.Create
				if r.ExternalReferenceID != "006A" || *r.Details.DealValue != 1200 || r.Details.Currency != "EUR" ||
					r.Details.ClosingDateTime != "2027-03-01T00:00:00Z" || r.CustomerProfile.Name != "Fabrikam" ||
					r.CustomerProfile.Address.Country != "DE" {
					t.Errorf("referral to create = %+v", r)
				}
			} else if res.Referral != nil {
				t.Errorf("no referral must be created")
			}
		})
	}
}

// linked returns a link made by a PC-originated create and its completion.
func linked(t *testing.T, m Decider) (contracts.Link, partnercenter.Referral) {
	t.Helper()
	r := sampleReferral()
	res := m.Observe(nil, m.ObserveReferral("e1", r, ver("a", 0)), t0)
	out := m.Outcome(*res.Link, contracts.Outcome{
		CommandID: res.Opp.ID, LinkID: res.Link.ID, System: contracts.Salesforce, Op: contracts.OpCreate,
		Status: contracts.OutcomeWritten, Created: true, OpportunityID: "006X",
	}, t0)
	if out.Link.State != contracts.LinkLinked || out.Link.OpportunityID != "006X" || out.NewIndexes[contracts.Salesforce] != "006X" {
		t.Fatalf("link after outcome = %+v", out.Link)
	}
	if out.Opp != nil || out.Referral != nil {
		t.Fatalf("nothing waited, nothing must be sent: %+v", out)
	}
	return *out.Link, r
}

func TestEchoStaleAndDuplicate(t *testing.T) {
	m := def()
	l, r := linked(t, m)
	// Our own Opportunity as Salesforce returns it: same mapped values.
	o := opp("006X", map[string]any{
		sf.FieldName: r.Name, sf.FieldAmount: 50000.0, sf.FieldCurrencyIsoCode: "USD", sf.FieldCloseDate: "2027-01-31",
		sf.FieldStageName: "Prospecting", sf.FieldDescription: r.Details.Notes, sf.FieldReferralIdentifier: r.ID,
		"Account.Name": "Contoso Customer Inc", "Account.BillingCountry": "US", "Account.BillingPostalCode": "98052", "Account.BillingCity": "Redmond",
	})
	res := m.Observe(&l, m.ObserveOpportunity("e2", o, ver("s1", 1)), t0)
	if res.Opp != nil || res.Referral != nil || res.Decisions[0].Kind != contracts.DecisionEcho {
		t.Fatalf("want echo, got %+v", res.Decisions)
	}
	l = *res.Link
	again := m.Observe(&l, m.ObserveOpportunity("e2", o, ver("s1", 1)), t0)
	if again.Link != nil || again.Decisions[0].Kind != contracts.DecisionNoChange {
		t.Fatalf("same version twice: %+v", again.Decisions)
	}
	old := m.Observe(&l, m.ObserveOpportunity("e0", o, ver("s0", 0)), t0)
	if old.Link != nil || old.Decisions[0].Kind != contracts.DecisionStale {
		t.Fatalf("older version: %+v", old.Decisions)
	}
}

func TestHoldStageThenAccept(t *testing.T) {
	m := def()
	l, r := linked(t, m)
	base := map[string]any{
		sf.FieldName: r.Name, sf.FieldCurrencyIsoCode: "USD", sf.FieldCloseDate: "2027-01-31",
		sf.FieldDescription: r.Details.Notes, sf.FieldReferralIdentifier: r.ID,
	}
	held := opp("006X", merge(base, map[string]any{sf.FieldAmount: 64000.0, sf.FieldStageName: "Prospecting"}))
	res := m.Observe(&l, m.ObserveOpportunity("e2", held, ver("s1", 1)), t0)
	if res.Referral != nil || res.Decisions[0].Kind != contracts.DecisionHeld {
		t.Fatalf("hold stage must hold changes: %+v", res.Decisions)
	}
	l = *res.Link
	active := opp("006X", merge(base, map[string]any{sf.FieldAmount: 64000.0, sf.FieldStageName: "Qualification"}))
	res = m.Observe(&l, m.ObserveOpportunity("e3", active, ver("s2", 2)), t0)
	if res.Referral == nil {
		t.Fatalf("leaving hold must send: %+v", res.Decisions)
	}
	got := map[string]any{}
	for _, op := range res.Referral.Data.Patch {
		got[op.Path] = op.Value
	}
	if got["/status"] != "Active" || got["/substatus"] != "Accepted" || got["/details/dealValue"] != 64000.0 || len(got) != 3 {
		t.Fatalf("patch = %v", got)
	}
	if res.Referral.Data.ReferralID != r.ID {
		t.Errorf("patch must target the linked referral")
	}
}

func TestPartnerCenterChangeUpdatesOnlyChangedFields(t *testing.T) {
	m := def()
	l, r := linked(t, m)
	v := 75000.0
	r.Details.DealValue = &v
	r.Status, r.Substatus = partnercenter.StatusClosed, partnercenter.SubstatusWon
	res := m.Observe(&l, m.ObserveReferral("e5", r, ver("b", 5)), t0)
	if res.Opp == nil {
		t.Fatalf("want an update, got %+v", res.Decisions)
	}
	f := res.Opp.Data.Fields
	if len(f) != 2 || f[sf.FieldAmount] != 75000.0 || f[sf.FieldStageName] != "Closed Won" {
		t.Fatalf("fields = %v", f)
	}
	// Closed referrals take no more changes: a Salesforce edit is held.
	l = *res.Link
	o := opp("006X", map[string]any{sf.FieldAmount: 1.0, sf.FieldStageName: "Closed Won", sf.FieldReferralIdentifier: r.ID})
	res = m.Observe(&l, m.ObserveOpportunity("e6", o, ver("s9", 9)), t0)
	if res.Referral != nil || res.Decisions[len(res.Decisions)-1].Kind != contracts.DecisionHeld {
		t.Fatalf("closed referral must hold: %+v", res.Decisions)
	}
}

func TestConflictNewestWins(t *testing.T) {
	m := def()
	l, r := linked(t, m)
	// Salesforce changed the amount at minute 3 (seen), Partner Center at minute 2 (arriving late).
	o := opp("006X", map[string]any{sf.FieldName: r.Name, sf.FieldAmount: 111.0, sf.FieldCurrencyIsoCode: "USD",
		sf.FieldCloseDate: "2027-01-31", sf.FieldStageName: "Prospecting", sf.FieldDescription: r.Details.Notes})
	l.SF.Seen = ver("s3", 3)
	l.SF.Latest = m.FromOpportunity(o)
	v := 222.0
	r.Details.DealValue = &v
	res := m.Observe(&l, m.ObserveReferral("e4", r, ver("c", 2)), t0)
	if res.Opp != nil {
		t.Fatalf("older PC change must not overwrite the newer SF change: %+v", res.Opp)
	}
	if res.Decisions[0].Kind != contracts.DecisionConflict || res.Decisions[0].Fields[0] != mapping.FieldDealValue {
		t.Fatalf("decisions = %+v", res.Decisions)
	}
}

func TestReferralCreateOutcomeWritesBackAndLinks(t *testing.T) {
	m := def()
	o := opp("006A", nil)
	res := m.Observe(nil, m.ObserveOpportunity("e1", o, ver("s1", 0)), t0)
	created := *res.Referral.Data.Create
	created.ID, created.ETag, created.Status, created.Substatus = "r-1", `"e1"`, partnercenter.StatusActive, partnercenter.SubstatusAccepted
	out := m.Outcome(*res.Link, contracts.Outcome{
		CommandID: res.Referral.ID, System: contracts.PartnerCenter, Op: contracts.OpCreate, Status: contracts.OutcomeWritten,
		Created: true, ReferralID: "r-1", Referral: &created, Version: ver(`"e1"`, 1),
	}, t0)
	if out.Link.ReferralID != "r-1" || out.Link.State != contracts.LinkLinked || out.NewIndexes[contracts.PartnerCenter] != "r-1" {
		t.Fatalf("link = %+v", out.Link)
	}
	if out.LinkBack == nil || out.LinkBack.Data.Fields[sf.FieldReferralIdentifier] != "r-1" || out.LinkBack.Data.OpportunityID != "006A" {
		t.Fatalf("link-back = %+v", out.LinkBack)
	}
	if out.Opp != nil || out.Referral != nil {
		t.Fatalf("the created referral is our own write: nothing to send, got %+v %+v", out.Opp, out.Referral)
	}
	// The webhook of our own create: same version, no new decision to send.
	again := m.Observe(out.Link, m.ObserveReferral("e9", created, ver(`"e1"`, 1)), t0)
	if again.Opp != nil || again.Referral != nil {
		t.Fatalf("echo of our create must not bounce: %+v", again)
	}
}

// TestReturnedReferralBeforeItsOutcome: pc-writer publishes the referral its create returned just before
// the create's outcome, which carries the same referral. Decided first, that snapshot changes no link
// (the outcome completes it, one link write for both) and audits nothing (the outcome is the write's audit
// record), and the outcome then decides as it does alone;
// a snapshot pc-ingest read (not returned by the create) still completes the link at once.
func TestReturnedReferralBeforeItsOutcome(t *testing.T) {
	m := def()
	res := m.Observe(nil, m.ObserveOpportunity("e1", opp("006A", nil), ver("s1", 0)), t0)
	created := *res.Referral.Data.Create
	created.ID, created.ETag, created.Status, created.Substatus = "r-1", `"e1"`, partnercenter.StatusActive, partnercenter.SubstatusAccepted
	returned := m.ObserveReferral("pc/r-1/e1", created, ver(`"e1"`, 1))
	returned.Returned = true
	snap := m.Observe(res.Link, returned, t0)
	if snap.Link != nil || snap.Opp != nil || snap.Referral != nil || snap.LinkBack != nil || len(snap.NewIndexes) != 0 {
		t.Fatalf("the returned referral must wait for its outcome: %+v", snap)
	}
	if len(snap.Decisions) != 0 {
		t.Fatalf("the returned referral is no decision of its own (the write's outcome is its audit record): %+v", snap.Decisions)
	}
	out := m.Outcome(*res.Link, contracts.Outcome{
		CommandID: res.Referral.ID, System: contracts.PartnerCenter, Op: contracts.OpCreate, Status: contracts.OutcomeWritten,
		Created: true, ReferralID: "r-1", Referral: &created, Version: ver(`"e1"`, 1),
	}, t0)
	if out.Link.ReferralID != "r-1" || out.Link.State != contracts.LinkLinked || out.Link.PC.Pending != "" ||
		out.Link.PC.Seen.Tag != `"e1"` || out.NewIndexes[contracts.PartnerCenter] != "r-1" {
		t.Fatalf("link = %+v", out.Link)
	}
	if out.LinkBack == nil || out.LinkBack.Data.Fields[sf.FieldReferralIdentifier] != "r-1" || out.Opp != nil || out.Referral != nil {
		t.Fatalf("the outcome writes the referral id back and nothing else: %+v %+v %+v", out.LinkBack, out.Opp, out.Referral)
	}
	ownReferralAuditsNothing(t, "the create's outcome", out)
	// The returned referral decided on after the outcome (the observed loop behind the outcomes loop):
	// the outcome said it all, nothing to write or audit.
	if late := m.Observe(out.Link, returned, t0); late.Link != nil || late.Opp != nil || late.Referral != nil || late.LinkBack != nil || len(late.Decisions) != 0 {
		t.Fatalf("the returned referral after its outcome: %+v", late)
	}
	// The same referral read by pc-ingest (its webhook, pc-writer's snapshot lost): it completes the link.
	read := m.Observe(res.Link, m.ObserveReferral("pc/r-1/e1", created, ver(`"e1"`, 1)), t0)
	if read.Link == nil || read.Link.ReferralID != "r-1" || read.NewIndexes[contracts.PartnerCenter] != "r-1" {
		t.Fatalf("a read referral completes the link: %+v", read.Link)
	}
	// A seller's change patches the referral; the patched referral comes back the same two ways.
	l := *out.Link
	change := m.Observe(&l, m.ObserveOpportunity("e3", opp("006A", map[string]any{sf.FieldAmount: 1500.0}), ver("s3", 3)), t0)
	if change.Referral == nil || change.Link.PC.Pending != change.Referral.ID {
		t.Fatalf("the change must patch the referral: %+v", change.Decisions)
	}
	l = *change.Link
	patched := created
	patched.ETag, patched.Details = `"e4"`, &partnercenter.Details{DealValue: new(1500.0), Currency: "EUR", ClosingDateTime: "2027-03-01T00:00:00Z", Notes: "notes"}
	returned = m.ObserveReferral("pc/r-1/e4", patched, ver(`"e4"`, 4))
	returned.Returned = true
	if snap := m.Observe(&l, returned, t0); snap.Link != nil || snap.Opp != nil || snap.Referral != nil || snap.LinkBack != nil || len(snap.Decisions) != 0 {
		t.Fatalf("the returned referral must wait for its patch's outcome: %+v", snap)
	}
	// The patched referral read by pc-ingest first (Partner Center's webhook before the patch's answer; the
	// stream keeps that snapshot, and pc-writer's of the same id is a duplicate): it holds what the pending
	// patch wrote, so it waits for the outcome too. A seller's edit read meanwhile does not.
	read = m.Observe(&l, m.ObserveReferral("pc/r-1/e4", patched, ver(`"e4"`, 4)), t0)
	if read.Link != nil || read.Opp != nil || read.Referral != nil || len(read.Decisions) != 0 {
		t.Fatalf("pc-ingest's read of our pending patch must wait for its outcome: %+v", read)
	}
	edited := patched
	edited.ETag, edited.Details = `"e5"`, &partnercenter.Details{DealValue: new(1600.0), Currency: "EUR", ClosingDateTime: "2027-03-01T00:00:00Z", Notes: "notes"}
	if seller := m.Observe(&l, m.ObserveReferral("pc/r-1/e5", edited, ver(`"e5"`, 5)), t0); seller.Link == nil || len(seller.Decisions) == 0 {
		t.Fatalf("a seller's edit read while our patch is pending is decided on: %+v", seller)
	}
	// Also one of a field that never travels to Partner Center (Microsoft's CRM id, which no fingerprint
	// of what we write there holds): the read holds what the patch wrote and more.
	msx := patched
	msx.ETag, msx.TrackingInfo = `"e5"`, &partnercenter.TrackingInfo{MicrosoftMsxID: "7-MSX42"}
	if seller := m.Observe(&l, m.ObserveReferral("pc/r-1/e5", msx, ver(`"e5"`, 5)), t0); seller.Opp == nil ||
		seller.Opp.Data.Fields[sf.FieldMicrosoftCRMIdentifier] != "7-MSX42" {
		t.Fatalf("Microsoft's CRM id read while our patch is pending must reach the Opportunity: %+v %v", seller.Opp, kinds(seller.Decisions))
	}
	done := m.Outcome(l, contracts.Outcome{CommandID: change.Referral.ID, LinkID: l.ID, System: contracts.PartnerCenter, Op: contracts.OpUpdate,
		Status: contracts.OutcomeWritten, ReferralID: "r-1", Referral: &patched, Version: ver(`"e4"`, 4)}, t0)
	if done.Link.PC.Pending != "" || done.Link.PC.Seen.Tag != `"e4"` || done.Opp != nil || done.Referral != nil {
		t.Fatalf("the patch's outcome decides on the referral it returned: pending %q, seen %q, %+v %+v",
			done.Link.PC.Pending, done.Link.PC.Seen.Tag, done.Opp, done.Referral)
	}
	ownReferralAuditsNothing(t, "the patch's outcome", done)
}

// ownReferralAuditsNothing fails t when an outcome's result holds a decision on the referral the write
// returned that says it showed nothing new (an echo, no change): the outcome is the write's audit record,
// and such a decision would cost an audit message per create and patch for nothing.
func ownReferralAuditsNothing(t *testing.T, what string, res Result) {
	t.Helper()
	for _, d := range res.Decisions {
		if d.Kind == contracts.DecisionEcho || d.Kind == contracts.DecisionNoChange {
			t.Errorf("%s decides %s (%s) on the referral its write returned; want nothing of it", what, d.Kind, d.Detail)
		}
	}
}

// TestWriteBackOutcomesAreInert: the outcome of a done Salesforce write-back (the referral id after a
// create, a sync status) would change nothing of its link but its memory of folded outcomes, so the mapper
// skips it (Inert) without a link write; a failed one, a sync write and a Partner Center write are folded.
func TestWriteBackOutcomesAreInert(t *testing.T) {
	m := def()
	res := m.Observe(nil, m.ObserveOpportunity("e1", opp("006A", nil), ver("s1", 0)), t0)
	created := *res.Referral.Data.Create
	created.ID, created.ETag = "r-1", `"e1"`
	made := m.Outcome(*res.Link, contracts.Outcome{CommandID: res.Referral.ID, System: contracts.PartnerCenter, Op: contracts.OpCreate,
		Status: contracts.OutcomeWritten, Created: true, ReferralID: "r-1", Referral: &created, Version: ver(`"e1"`, 1), At: t0}, t0)
	l := *made.Link
	status := m.statusBack(&l, "e2", "⏸ held")
	for _, c := range []*Command[contracts.OpportunityCommand]{made.LinkBack, status} {
		out := contracts.Outcome{CommandID: c.ID, LinkID: l.ID, System: contracts.Salesforce, Op: contracts.OpUpdate,
			Purpose: c.Data.Purpose, Status: contracts.OutcomeWritten, OpportunityID: "006A", ReferralID: "r-1", At: t0}
		if !Inert(out) {
			t.Errorf("%s: a done write-back must be inert", c.ID)
		}
		got := m.Outcome(l, out, t0)
		if got.Opp != nil || got.Referral != nil || got.LinkBack != nil || len(got.NewIndexes) != 0 {
			t.Errorf("%s: its fold sends %+v %+v %+v", c.ID, got.Opp, got.Referral, got.LinkBack)
		}
		next := *got.Link
		next.Folded, next.Audit = l.Folded, l.Audit
		if !reflect.DeepEqual(next, l) {
			t.Errorf("%s: its fold changes the link:\n%+v\n%+v", c.ID, next, l)
		}
		for _, d := range got.Decisions {
			if d.Kind != contracts.DecisionWritten {
				t.Errorf("%s: its fold decides %s (%s)", c.ID, d.Kind, d.Detail)
			}
		}
		failed := out
		failed.Status = contracts.OutcomeFailed
		sync := out
		sync.Purpose = "sync"
		pc := out
		pc.System = contracts.PartnerCenter
		for _, o := range []contracts.Outcome{failed, sync, pc} {
			if Inert(o) {
				t.Errorf("%s (%s, %s, %s) must be folded", c.ID, o.System, o.Purpose, o.Status)
			}
		}
	}
}

func TestFailedOutcomeMarksOpportunity(t *testing.T) {
	m := def()
	l, _ := linked(t, m)
	out := m.Outcome(l, contracts.Outcome{CommandID: "c1", System: contracts.PartnerCenter, Op: contracts.OpUpdate,
		Status: contracts.OutcomeFailed, Error: &contracts.Failure{Code: "invalidRequest", Message: "bad currency", Permanent: true}}, t0)
	if out.LinkBack == nil || out.LinkBack.Data.Fields[sf.FieldSyncStatus] != "✖ invalidRequest: bad currency (cosell links get "+l.OpportunityID+")" ||
		out.LinkBack.Data.Fields[sf.FieldName] != "Contoso supply chain ✖" {
		t.Fatalf("link-back = %+v", out.LinkBack)
	}
	if out.Decisions[0].Kind != contracts.DecisionFailed || out.Link.LastError == "" {
		t.Fatalf("decisions = %+v", out.Decisions)
	}
}

func merge(a, b map[string]any) map[string]any {
	c := map[string]any{}
	for k, v := range a {
		c[k] = v
	}
	for k, v := range b {
		c[k] = v
	}
	return c
}

// patchUnderWay links a pair, then has Salesforce accept the referral and move its close date, so a patch
// decided against the referral's eTag "a" is on its way to Partner Center.
func patchUnderWay(t *testing.T, m Decider) (contracts.Link, partnercenter.Referral, contracts.ReferralCommand, string) {
	t.Helper()
	l, r := linked(t, m)
	o := opp("006X", map[string]any{sf.FieldName: r.Name, sf.FieldAmount: 50000.0, sf.FieldCurrencyIsoCode: "USD",
		sf.FieldCloseDate: "2027-05-31", sf.FieldStageName: "Qualification", sf.FieldDescription: r.Details.Notes,
		sf.FieldReferralIdentifier: r.ID})
	res := m.Observe(&l, m.ObserveOpportunity("s-e1", o, ver("s1", 1)), t0)
	if res.Referral == nil {
		t.Fatalf("want a patch, got %+v", res.Decisions)
	}
	if res.Referral.Data.BaseETag != "a" {
		t.Fatalf("the patch must carry the eTag it was decided against, got %q", res.Referral.Data.BaseETag)
	}
	return *res.Link, r, res.Referral.Data, res.Referral.ID
}

func patchPaths(c *Command[contracts.ReferralCommand]) map[string]any {
	if c == nil {
		return nil
	}
	got := map[string]any{}
	for _, op := range c.Data.Patch {
		got[op.Path] = op.Value
	}
	return got
}

// TestPreconditionFailedRedecides folds the fresh referral of a 412 through the three-way merge: Microsoft's
// edit goes to Salesforce (never overwritten), and only what is still ours is proposed again.
func TestPreconditionFailedRedecides(t *testing.T) {
	m := def()
	v70 := 70000.0
	cases := []struct {
		name string
		edit func(r *partnercenter.Referral)
		// webhookFirst observes Microsoft's edit before the 412 outcome arrives.
		webhookFirst bool
		wantOpp      map[string]any // Opportunity fields sent to Salesforce (nil = no command)
		wantPatch    map[string]any // patch paths proposed again (nil = no command)
	}{
		{
			name:      "Microsoft changed another field",
			edit:      func(r *partnercenter.Referral) { r.Details.DealValue = &v70 },
			wantOpp:   map[string]any{sf.FieldAmount: 70000.0},
			wantPatch: map[string]any{"/details/closingDateTime": "2027-05-31T00:00:00Z", "/status": "Active", "/substatus": "Accepted"},
		},
		{
			name:         "Microsoft's edit already observed from its webhook",
			edit:         func(r *partnercenter.Referral) { r.Details.DealValue = &v70 },
			webhookFirst: true,
			wantPatch:    map[string]any{"/details/closingDateTime": "2027-05-31T00:00:00Z", "/status": "Active", "/substatus": "Accepted"},
		},
		{
			name:      "Microsoft changed the same field later: its value wins",
			edit:      func(r *partnercenter.Referral) { r.Details.ClosingDateTime = "2027-06-30T00:00:00Z" },
			wantOpp:   map[string]any{sf.FieldCloseDate: "2027-06-30"},
			wantPatch: map[string]any{"/status": "Active", "/substatus": "Accepted"},
		},
		{
			name: "the referral already holds our change (a redelivered patch that landed)",
			edit: func(r *partnercenter.Referral) {
				r.Details.ClosingDateTime = "2027-05-31T00:00:00Z"
				r.Status, r.Substatus = partnercenter.StatusActive, partnercenter.SubstatusAccepted
			},
		},
		{
			name: "Microsoft closed the referral: nothing more is proposed",
			edit: func(r *partnercenter.Referral) {
				r.Status, r.Substatus = partnercenter.StatusClosed, partnercenter.SubstatusLost
			},
			wantOpp: map[string]any{sf.FieldStageName: "Closed Lost"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, r, _, cmdID := patchUnderWay(t, m)
			fresh := r
			d := *r.Details
			fresh.Details = &d
			c.edit(&fresh)
			var firstOpp map[string]any
			if c.webhookFirst {
				res := m.Observe(&l, m.ObserveReferral("pc-e2", fresh, ver("b", 2)), t0)
				if res.Referral != nil {
					t.Fatalf("an observed snapshot must not send back to Partner Center: %+v", res.Referral)
				}
				if res.Opp != nil {
					firstOpp = res.Opp.Data.Fields
				}
				l = *res.Link
			}
			out := m.Outcome(l, contracts.Outcome{CommandID: cmdID, LinkID: l.ID, System: contracts.PartnerCenter,
				Op: contracts.OpUpdate, Status: contracts.OutcomeFailed, ReferralID: r.ID, Referral: &fresh, Version: ver("b", 2),
				Error: &contracts.Failure{Code: CodePreconditionFailed, Message: "eTag mismatch", HTTPStatus: 412}}, t0)
			if c.webhookFirst {
				if firstOpp[sf.FieldAmount] != 70000.0 || len(firstOpp) != 1 {
					t.Errorf("the webhook's snapshot sent %v to Salesforce, want only the amount", firstOpp)
				}
			}
			var gotOpp map[string]any
			if out.Opp != nil {
				gotOpp = out.Opp.Data.Fields
			}
			if !equalMaps(gotOpp, c.wantOpp) {
				t.Errorf("sent to Salesforce %v, want %v", gotOpp, c.wantOpp)
			}
			if got := patchPaths(out.Referral); !equalMaps(got, c.wantPatch) {
				t.Errorf("proposed again %v, want %v", got, c.wantPatch)
			}
			if out.Referral != nil {
				if out.Referral.Data.BaseETag != "b" || out.Referral.ID == cmdID || out.Link.PC.Pending != out.Referral.ID {
					t.Errorf("the new patch must be decided against the fresh eTag: base %q id %q pending %q",
						out.Referral.Data.BaseETag, out.Referral.ID, out.Link.PC.Pending)
				}
			} else if out.Link.PC.Pending != "" {
				t.Errorf("pending = %q, want none", out.Link.PC.Pending)
			}
			if out.LinkBack != nil || out.Link.LastError != "" {
				t.Errorf("a 412 is not a failure to show: link-back %+v, last error %q", out.LinkBack, out.Link.LastError)
			}
			if out.Decisions[0].Kind != contracts.DecisionConflict {
				t.Errorf("first decision = %+v, want a conflict", out.Decisions[0])
			}
		})
	}
}

// TestSnapshotDuringPendingWriteDoesNotRevert observes the other side while our write to it is under way:
// fields that side did not change must not be sent back over ours.
func TestSnapshotDuringPendingWriteDoesNotRevert(t *testing.T) {
	m := def()
	l, r, _, _ := patchUnderWay(t, m)
	notes := "Microsoft added a note"
	fresh := r
	d := *r.Details
	d.Notes = notes
	fresh.Details = &d
	res := m.Observe(&l, m.ObserveReferral("pc-e2", fresh, ver("b", 2)), t0)
	if res.Opp == nil || len(res.Opp.Data.Fields) != 1 || res.Opp.Data.Fields[sf.FieldDescription] != notes {
		t.Fatalf("want only the note sent to Salesforce, got %+v", res.Opp)
	}
	// Once the write has landed (nothing pending), an unchanged field is not a change either way.
	l = *res.Link
	l.PC.Pending = ""
	again := fresh
	again.Name = "renamed"
	res = m.Observe(&l, m.ObserveReferral("pc-e3", again, ver("c", 3)), t0)
	if res.Opp == nil || res.Opp.Data.Fields[sf.FieldCloseDate] != "2027-01-31" {
		t.Fatalf("with nothing under way, Partner Center's differing value is a change to send: %+v", res.Opp)
	}
}

func equalMaps(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestFailedCreateRetriesOnlyWhenTheRecordChanges: a create Partner Center refused is not retried for our own
// write-backs (✖ status, Audit) coming back, and is retried once the user fixes the record.
func TestFailedCreateRetriesOnlyWhenTheRecordChanges(t *testing.T) {
	m := def()
	o := opp("006P", map[string]any{sf.FieldAmount: -5.0})
	res := m.Observe(nil, m.ObserveOpportunity("e1", o, ver("s1", 0)), t0)
	failed := m.Outcome(*res.Link, contracts.Outcome{CommandID: res.Referral.ID, System: contracts.PartnerCenter, Op: contracts.OpCreate,
		Status: contracts.OutcomeFailed, Error: &contracts.Failure{Code: "invalidRequest", Message: "dealValue must not be negative", Permanent: true}}, t0)
	if failed.Link.State != contracts.LinkFailed {
		t.Fatalf("state = %s", failed.Link.State)
	}
	l := *failed.Link
	// Our ✖ status write comes back: same mapped values.
	o.Fields[sf.FieldSyncStatus] = "✖ invalidRequest: dealValue must not be negative"
	same := m.Observe(&l, m.ObserveOpportunity("e2", o, ver("s2", 1)), t0)
	if same.Referral != nil || same.Decisions[len(same.Decisions)-1].Kind != contracts.DecisionNoChange {
		t.Fatalf("unchanged record must not retry: %+v", same.Decisions)
	}
	l = *same.Link
	o.Fields[sf.FieldAmount] = 500.0
	fixed := m.Observe(&l, m.ObserveOpportunity("e3", o, ver("s3", 2)), t0)
	if fixed.Referral == nil || fixed.Referral.Data.Op != contracts.OpCreate || *fixed.Referral.Data.Create.Details.DealValue != 500 {
		t.Fatalf("fixed record must retry the create: %+v", fixed.Decisions)
	}
	if fixed.Referral.ID == res.Referral.ID {
		t.Errorf("the retry needs its own command id (the failed one may still be in the duplicate window)")
	}
	if fixed.Link.State != contracts.LinkCreatingReferral || fixed.Link.PC.Pending != fixed.Referral.ID {
		t.Errorf("link after retry = %+v", fixed.Link)
	}
}

// TestWriteBacksDoNotClearAPartnerCenterError: an Audit or status write to Salesforce succeeding says nothing
// about the Partner Center refusal; the next successful Partner Center write clears it and shows ✔.
func TestWriteBacksDoNotClearAPartnerCenterError(t *testing.T) {
	m := def()
	l, _ := linked(t, m)
	failed := m.Outcome(l, contracts.Outcome{CommandID: "c1", System: contracts.PartnerCenter, Op: contracts.OpUpdate,
		Status: contracts.OutcomeFailed, Error: &contracts.Failure{Code: "invalidRequest", Message: "bad", Permanent: true}}, t0)
	l = *failed.Link
	audit := m.Outcome(l, contracts.Outcome{CommandID: "c2", System: contracts.Salesforce, Op: contracts.OpUpdate,
		Purpose: "audit", Status: contracts.OutcomeWritten}, t0)
	if audit.Link.LastError == "" {
		t.Fatalf("an Audit write cleared the Partner Center error")
	}
	l = *audit.Link
	ok := m.Outcome(l, contracts.Outcome{CommandID: "c3", System: contracts.PartnerCenter, Op: contracts.OpUpdate,
		Status: contracts.OutcomeWritten}, t0)
	if ok.Link.LastError != "" || ok.LinkBack == nil || ok.LinkBack.Data.Fields[sf.FieldSyncStatus] != "✔" {
		t.Fatalf("a Partner Center write must clear the error and show ✔: %+v %+v", ok.Link.LastError, ok.LinkBack)
	}
}

// TestWrittenUpdateIsTheSidesLatest: the snapshot of cosell's own Salesforce write may never come (change
// events drop cosell's writes), so a written outcome makes what it carried the Opportunity's latest values:
// Microsoft's next change of the same field is sent as a change, not decided as a conflict.
func TestWrittenUpdateIsTheSidesLatest(t *testing.T) {
	m := def()
	l, r := linked(t, m)
	l.SF.Latest = m.FromOpportunity(opp("006X", map[string]any{sf.FieldName: r.Name, sf.FieldAmount: 50000.0, sf.FieldCurrencyIsoCode: "USD",
		sf.FieldCloseDate: "2027-01-31", sf.FieldStageName: "Prospecting", sf.FieldDescription: r.Details.Notes}))
	l.SF.Seen = ver("s1", 1)
	for i, value := range []float64{51000, 52000} {
		v := value
		r.Details.DealValue = &v
		res := m.Observe(&l, m.ObserveReferral(fmt.Sprintf("e%d", i), r, ver(fmt.Sprintf("b%d", i), 5+i)), t0)
		if res.Opp == nil || res.Opp.Data.Fields[sf.FieldAmount] != value || len(res.Decisions) != 1 || res.Decisions[0].Kind != contracts.DecisionApplied {
			t.Fatalf("change %d: want the amount sent and one applied decision, got %+v", i+1, res.Decisions)
		}
		out := m.Outcome(*res.Link, contracts.Outcome{CommandID: res.Opp.ID, LinkID: l.ID, System: contracts.Salesforce,
			Op: contracts.OpUpdate, Purpose: "sync", Status: contracts.OutcomeWritten}, t0)
		l = *out.Link
		if got := l.SF.Latest[mapping.FieldDealValue]; !m.Same(mapping.FieldDealValue, got, value) {
			t.Fatalf("change %d: the Opportunity's latest amount is %v after the write, want %v", i+1, got, value)
		}
	}
}
