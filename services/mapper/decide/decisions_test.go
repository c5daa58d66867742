package decide

import (
	"testing"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/mapping"
)

// mirror is the Opportunity that holds exactly the referral's values (what cosell created), in stage.
func mirror(r partnercenter.Referral, stage string, over map[string]any) contracts.Opportunity {
	f := map[string]any{
		sf.FieldName: r.Name, sf.FieldAmount: *r.Details.DealValue, sf.FieldCurrencyIsoCode: r.Details.Currency,
		sf.FieldCloseDate: r.Details.ClosingDateTime[:10], sf.FieldStageName: stage, sf.FieldDescription: r.Details.Notes,
		sf.FieldReferralIdentifier: r.ID, "Account.Name": r.CustomerProfile.Name, sf.FieldSyncWithPartnerCenter: true,
	}
	for k, v := range over {
		f[k] = v
	}
	return contracts.Opportunity{ID: "006X", Fields: f}
}

// activeLink is a linked pair both sides of which are active and agree, with both sides observed.
func activeLink(t *testing.T, m Decider) (contracts.Link, partnercenter.Referral) {
	t.Helper()
	l, r := linked(t, m)
	r.Status, r.Substatus = partnercenter.StatusActive, partnercenter.SubstatusAccepted
	res := m.Observe(&l, m.ObserveReferral("pc-accept", r, ver("a2", 1)), t0)
	if res.Opp == nil || res.Opp.Data.Fields[sf.FieldStageName] != "Qualification" {
		t.Fatalf("accepting must move the stage: %+v", res.Decisions)
	}
	l = *res.Link
	// The write lands and is observed.
	l = *m.Outcome(l, contracts.Outcome{CommandID: res.Opp.ID, LinkID: l.ID, System: contracts.Salesforce, Op: contracts.OpUpdate, Status: contracts.OutcomeWritten}, t0).Link
	echo := m.Observe(&l, m.ObserveOpportunity("sf-1", mirror(r, "Qualification", nil), ver("s1", 2)), t0)
	if echo.Opp != nil || echo.Referral != nil || echo.Decisions[0].Kind != contracts.DecisionEcho {
		t.Fatalf("our own write must be an echo: %+v", echo.Decisions)
	}
	return *echo.Link, r
}

func withOwner(m Decider, field string, o mapping.Owner) Decider {
	for i := range m.Fields {
		if m.Fields[i].Name == field {
			m.Fields[i].Owner = o
		}
	}
	return m
}

func kinds(ds []contracts.Decision) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Kind)
	}
	return out
}

// TestOwnership makes both sides change the deal value since the last sync (Partner Center's change held
// back, then a later Salesforce edit) and checks each owner rule.
func TestOwnership(t *testing.T) {
	cases := []struct {
		owner  mapping.Owner
		toPC   any // dealValue patched into Partner Center
		toSF   any // Amount written back to Salesforce
		parked bool
	}{
		{mapping.OwnerNewest, 111.0, nil, false}, // Salesforce's edit (minute 9) is newer than Partner Center's (minute 5)
		{mapping.OwnerSF, 111.0, nil, false},
		{mapping.OwnerPC, nil, 222.0, false}, // Partner Center wins and Salesforce gets its value back
		{mapping.OwnerReview, nil, nil, true},
	}
	for _, c := range cases {
		t.Run(string(c.owner), func(t *testing.T) {
			m := withOwner(def(), mapping.FieldDealValue, c.owner)
			l, r := activeLink(t, m)
			// Partner Center changed the value at minute 5; it was seen but not sent (e.g. lost a race).
			l.PC.Latest[mapping.FieldDealValue] = 222.0
			l.PC.Seen = ver("pc5", 5)
			o := mirror(r, "Qualification", map[string]any{sf.FieldAmount: 111.0})
			res := m.Observe(&l, m.ObserveOpportunity("sf-9", o, ver("s9", 9)), t0)
			var toPC, toSF any
			if res.Referral != nil {
				for _, op := range res.Referral.Data.Patch {
					if op.Path == "/details/dealValue" {
						toPC = op.Value
					}
				}
			}
			if res.Opp != nil {
				toSF = res.Opp.Data.Fields[sf.FieldAmount]
			}
			if toPC != c.toPC || toSF != c.toSF {
				t.Fatalf("sent to PC %v, to SF %v; want %v, %v (decisions %+v)", toPC, toSF, c.toPC, c.toSF, res.Decisions)
			}
			if res.Decisions[0].Kind != contracts.DecisionConflict || res.Decisions[0].Fields[0] != mapping.FieldDealValue {
				t.Fatalf("a conflict must be audited first: %+v", res.Decisions)
			}
			_, parked := res.Link.Review[mapping.FieldDealValue]
			if parked != c.parked {
				t.Fatalf("parked = %v, want %v (review %+v)", parked, c.parked, res.Link.Review)
			}
			if !c.parked {
				return
			}
			// Parked: the same snapshot again writes nothing; a person's new edit settles it.
			l = *res.Link
			again := m.Observe(&l, m.ObserveOpportunity("sf-10", o, ver("s10", 10)), t0)
			if again.Referral != nil || again.Opp != nil {
				t.Fatalf("a parked conflict must write nothing: %+v", again)
			}
			l = *again.Link
			o.Fields[sf.FieldAmount] = 150.0
			settled := m.Observe(&l, m.ObserveOpportunity("sf-11", o, ver("s11", 11)), t0)
			if settled.Referral == nil || settled.Referral.Data.Patch[0].Value != 150.0 || len(settled.Link.Review) != 0 {
				t.Fatalf("an edit after parking settles it: %+v %+v", settled.Referral, settled.Decisions)
			}
		})
	}
}

// TestParkedConflictSettledByAgreement: both sides end up with the same value, and nothing is written.
func TestParkedConflictSettledByAgreement(t *testing.T) {
	m := withOwner(def(), mapping.FieldDealValue, mapping.OwnerReview)
	l, r := activeLink(t, m)
	l.PC.Latest[mapping.FieldDealValue] = 222.0
	l.PC.Seen = ver("pc5", 5)
	res := m.Observe(&l, m.ObserveOpportunity("sf-9", mirror(r, "Qualification", map[string]any{sf.FieldAmount: 111.0}), ver("s9", 9)), t0)
	l = *res.Link
	v := 111.0
	r.Details.DealValue = &v
	res = m.Observe(&l, m.ObserveReferral("pc-12", r, ver("pc12", 12)), t0)
	if res.Opp != nil || res.Referral != nil || len(res.Link.Review) != 0 || res.Link.Synced[mapping.FieldDealValue] != 111.0 {
		t.Fatalf("agreement settles without writing: %+v review %+v", res.Decisions, res.Link.Review)
	}
}

// TestOneWayFieldIsNoConflict: a field that only travels to Partner Center is not a conflict when
// Partner Center holds another value.
func TestOneWayFieldIsNoConflict(t *testing.T) {
	l, r := activeLink(t, def())
	m := def()
	for i := range m.Fields {
		if m.Fields[i].Name == mapping.FieldNotes {
			m.Fields[i].ToSF = mapping.Never
		}
	}
	l.PC.Latest[mapping.FieldNotes] = "Microsoft's own note"
	res := m.Observe(&l, m.ObserveOpportunity("sf-9", mirror(r, "Qualification", map[string]any{sf.FieldDescription: "ours"}), ver("s9", 9)), t0)
	if res.Referral == nil || res.Decisions[0].Kind != contracts.DecisionApplied {
		t.Fatalf("want the note sent without a conflict: %v", kinds(res.Decisions))
	}
}

// TestRealEditRightAfterOurWrite: the snapshot that shows our write plus a user's edit is not an echo, and
// a snapshot taken before our write landed does not send the old value back.
func TestRealEditRightAfterOurWrite(t *testing.T) {
	m := def()
	l, r := activeLink(t, m)
	v := 75000.0
	r.Details.DealValue = &v
	res := m.Observe(&l, m.ObserveReferral("pc-3", r, ver("a3", 3)), t0)
	if res.Opp == nil || res.Opp.Data.Fields[sf.FieldAmount] != 75000.0 {
		t.Fatalf("want the amount sent: %+v", res.Decisions)
	}
	l = *res.Link
	// A poll read the Opportunity just before our write landed: the old amount is not a change.
	before := m.Observe(&l, m.ObserveOpportunity("sf-4", mirror(r, "Qualification", map[string]any{sf.FieldAmount: 50000.0, "NextStep": "x"}), ver("s4", 4)), t0)
	if before.Referral != nil {
		t.Fatalf("a snapshot older than our write must not revert Partner Center: %+v", before.Referral)
	}
	l = *before.Link
	// Our write shows, together with the same user's edit of the notes.
	after := m.Observe(&l, m.ObserveOpportunity("sf-5", mirror(r, "Qualification", map[string]any{sf.FieldAmount: 75000.0, sf.FieldDescription: "edited right after"}), ver("s5", 5)), t0)
	if after.Referral == nil || len(after.Referral.Data.Patch) != 1 || after.Referral.Data.Patch[0].Path != "/details/notes" {
		t.Fatalf("the edit must be sent, and only it: %+v %v", after.Referral, kinds(after.Decisions))
	}
	for _, d := range after.Decisions {
		if d.Kind == contracts.DecisionEcho {
			t.Fatalf("a real edit was taken for an echo: %+v", after.Decisions)
		}
	}
}

// TestHoldStageHoldsChangesAndReleasesThem: edits made while in hold wait; leaving hold sends all of them
// with the acceptance, even when a write to Salesforce is under way.
func TestHoldStageHoldsChangesAndReleasesThem(t *testing.T) {
	m := def()
	l, r := linked(t, m)
	held := mirror(r, "Prospecting", map[string]any{sf.FieldAmount: 64000.0, sf.FieldDescription: "held note"})
	res := m.Observe(&l, m.ObserveOpportunity("sf-1", held, ver("s1", 1)), t0)
	if res.Referral != nil || res.Decisions[len(res.Decisions)-1].Kind != contracts.DecisionHeld {
		t.Fatalf("hold must hold: %v", kinds(res.Decisions))
	}
	l = *res.Link
	// Partner Center changes the close date meanwhile: it goes to Salesforce (hold only holds Salesforce's edits).
	r.Details.ClosingDateTime = "2027-06-30T00:00:00Z"
	res = m.Observe(&l, m.ObserveReferral("pc-2", r, ver("a2", 2)), t0)
	if res.Opp == nil || res.Opp.Data.Fields[sf.FieldCloseDate] != "2027-06-30" {
		t.Fatalf("Partner Center's change must reach Salesforce: %+v", res.Decisions)
	}
	l = *res.Link
	// The seller accepts (leaves hold) while our close-date write is still under way.
	accepted := mirror(r, "Qualification", map[string]any{sf.FieldAmount: 64000.0, sf.FieldDescription: "held note"})
	res = m.Observe(&l, m.ObserveOpportunity("sf-3", accepted, ver("s3", 3)), t0)
	if res.Referral == nil {
		t.Fatalf("leaving hold must send: %v", kinds(res.Decisions))
	}
	got := map[string]any{}
	for _, op := range res.Referral.Data.Patch {
		got[op.Path] = op.Value
	}
	if got["/status"] != "Active" || got["/details/dealValue"] != 64000.0 || got["/details/notes"] != "held note" || len(got) != 4 {
		t.Fatalf("patch = %v, want acceptance plus both held changes", got)
	}
}

// TestClosedReferralHoldsChanges: a closed referral takes nothing more; the change stays visible as held.
func TestClosedReferralHoldsChanges(t *testing.T) {
	m := def()
	l, r := activeLink(t, m)
	r.Status, r.Substatus = partnercenter.StatusClosed, partnercenter.SubstatusExpired
	res := m.Observe(&l, m.ObserveReferral("pc-3", r, ver("a3", 3)), t0)
	if res.Opp == nil || res.Opp.Data.Fields[sf.FieldStageName] != "Closed Lost" {
		t.Fatalf("an expired referral closes the Opportunity: %+v", res.Decisions)
	}
	l = *res.Link
	o := mirror(r, "Closed Lost", map[string]any{sf.FieldAmount: 1.0, sf.FieldIsClosed: true})
	res = m.Observe(&l, m.ObserveOpportunity("sf-4", o, ver("s4", 4)), t0)
	if res.Referral != nil || res.Decisions[len(res.Decisions)-1].Kind != contracts.DecisionHeld {
		t.Fatalf("closed referral must hold: %v", kinds(res.Decisions))
	}
}

// TestSolutionsAndTeamTravel: a new Microsoft Solution and a new team member reach Partner Center; a
// solution added in Partner Center reaches Salesforce as the full list of records.
func TestSolutionsAndTeamTravel(t *testing.T) {
	m := def()
	l, r := activeLink(t, m)
	o := mirror(r, "Qualification", nil)
	o.Solutions = []contracts.Solution{{SolutionID: "SOL-1", Name: "One"}}
	o.TeamMembers = []contracts.TeamMember{{UserID: "005A", Email: "ann@partner.example", FirstName: "Ann"}}
	res := m.Observe(&l, m.ObserveOpportunity("sf-3", o, ver("s3", 3)), t0)
	if res.Referral == nil || len(res.Referral.Data.Patch) != 2 {
		t.Fatalf("want solutions and team patched: %+v", res.Referral)
	}
	l = *res.Link
	r.Details.Requirements = &partnercenter.Requirements{Solutions: []partnercenter.Solution{{ID: "SOL-1", Name: "One"}, {ID: "SOL-2", Name: "Two"}}}
	res = m.Observe(&l, m.ObserveReferral("pc-4", r, ver("a4", 4)), t0)
	if res.Opp == nil || !res.Opp.Data.SetSolutions || len(res.Opp.Data.Solutions) != 2 || res.Opp.Data.Solutions[1].SolutionID != "SOL-2" {
		t.Fatalf("want the full solution list sent to Salesforce: %+v", res.Opp)
	}
	if len(res.Opp.Data.Fields) != 0 {
		t.Fatalf("only the solutions changed: %v", res.Opp.Data.Fields)
	}
}
