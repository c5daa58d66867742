package decide

import (
	"encoding/json"
	"testing"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/mapping"
)

// TestDecisionsLeaveTheirLinkAlone: a decision shares the maps of the link it is given (cloneLink copies
// none), and the mapper's cache hands that link to the next decisions, so no decision may change a map of
// it in place. Each step below reaches one of the places a decision changes a map (the agreed values, a
// side's in-flight and latest values, a parked review), and each must leave the link it was given as it
// was.
func TestDecisionsLeaveTheirLinkAlone(t *testing.T) {
	t.Run("changes both ways and their outcomes", func(t *testing.T) {
		m := def()
		l, r := linked(t, m)
		r.Status, r.Substatus = partnercenter.StatusActive, partnercenter.SubstatusAccepted
		res := observeAlone(t, m, "accepted in Partner Center", l, m.ObserveReferral("pc-accept", r, ver("a2", 1)))
		if res.Opp == nil {
			t.Fatalf("accepting must update the Opportunity: %v", kinds(res.Decisions))
		}
		l = *outcomeAlone(t, m, "its write done", *res.Link, contracts.Outcome{CommandID: res.Opp.ID, LinkID: l.ID,
			System: contracts.Salesforce, Op: contracts.OpUpdate, Status: contracts.OutcomeWritten}).Link
		l = *observeAlone(t, m, "our write seen", l, m.ObserveOpportunity("sf-1", mirror(r, "Qualification", nil), ver("s1", 2))).Link
		v := 75000.0
		r.Details.DealValue = &v
		res = observeAlone(t, m, "a Partner Center change", l, m.ObserveReferral("pc-3", r, ver("a3", 3)))
		if res.Opp == nil {
			t.Fatalf("the change must be sent: %v", kinds(res.Decisions))
		}
		l = *res.Link
		v2 := 76000.0
		r.Details.DealValue = &v2
		if again := observeAlone(t, m, "another change while the first is in flight", l, m.ObserveReferral("pc-3b", r, ver("a3b", 4))); again.Opp == nil {
			t.Fatalf("the second change must be sent: %v", kinds(again.Decisions))
		}
		r.Details.DealValue = &v
		l = *observeAlone(t, m, "a read before our write landed", l,
			m.ObserveOpportunity("sf-4", mirror(r, "Qualification", map[string]any{sf.FieldAmount: 50000.0, "NextStep": "x"}), ver("s4", 4))).Link
		after := observeAlone(t, m, "our write shows with an edit", l,
			m.ObserveOpportunity("sf-5", mirror(r, "Qualification", map[string]any{sf.FieldAmount: 75000.0, sf.FieldDescription: "edited"}), ver("s5", 5)))
		if after.Referral == nil || len(after.Link.SF.InFlight) != 0 {
			t.Fatalf("the edit must be sent and our write no longer in flight: %+v, in flight %v", after.Referral, after.Link.SF.InFlight)
		}
		outcomeAlone(t, m, "the patch done", *after.Link, contracts.Outcome{CommandID: after.Referral.ID, LinkID: l.ID,
			System: contracts.PartnerCenter, Op: contracts.OpUpdate, Status: contracts.OutcomeWritten})
	})
	t.Run("a conflict parked for review and settled", func(t *testing.T) {
		m := withOwner(withOwner(def(), mapping.FieldDealValue, mapping.OwnerReview), mapping.FieldNotes, mapping.OwnerReview)
		l, r := activeLink(t, m)
		l.PC.Latest = with(l.PC.Latest, mapping.FieldDealValue, any(222.0))
		l.PC.Seen = ver("pc5", 5)
		o := mirror(r, "Qualification", map[string]any{sf.FieldAmount: 111.0})
		parked := observeAlone(t, m, "both changed", l, m.ObserveOpportunity("sf-9", o, ver("s9", 9)))
		if len(parked.Link.Review) != 1 {
			t.Fatalf("want the conflict parked: %v", kinds(parked.Decisions))
		}
		l = *parked.Link
		l.PC.Latest = with(l.PC.Latest, mapping.FieldNotes, any("Microsoft's note"))
		l.PC.Seen = ver("pc10", 10)
		notes := mirror(r, "Qualification", map[string]any{sf.FieldAmount: 111.0, sf.FieldDescription: "our note"})
		if two := observeAlone(t, m, "a second conflict parked", l, m.ObserveOpportunity("sf-10", notes, ver("s10", 10))); len(two.Link.Review) != 2 {
			t.Fatalf("want both conflicts parked: %v, review %v", kinds(two.Decisions), two.Link.Review)
		}
		edited := mirror(r, "Qualification", map[string]any{sf.FieldAmount: 150.0})
		if res := observeAlone(t, m, "a person's edit settles it", *parked.Link, m.ObserveOpportunity("sf-11", edited, ver("s11", 11))); len(res.Link.Review) != 0 {
			t.Fatalf("the edit must settle the conflict: %v", kinds(res.Decisions))
		}
		v := 111.0
		r.Details.DealValue = &v
		if res := observeAlone(t, m, "both agree now", *parked.Link, m.ObserveReferral("pc-12", r, ver("pc12", 12))); len(res.Link.Review) != 0 {
			t.Fatalf("agreement must settle the conflict: %v", kinds(res.Decisions))
		}
	})
	t.Run("both sides changed to the same value", func(t *testing.T) {
		m := def()
		l, r := activeLink(t, m)
		l.PC.Latest = with(l.PC.Latest, mapping.FieldDealValue, any(222.0))
		l.PC.Seen = ver("pc5", 5)
		res := observeAlone(t, m, "the same value", l, m.ObserveOpportunity("sf-9", mirror(r, "Qualification", map[string]any{sf.FieldAmount: 222.0}), ver("s9", 9)))
		if res.Link.Synced[mapping.FieldDealValue] != 222.0 || res.Referral != nil {
			t.Fatalf("both agree: nothing to write, the value agreed: %v %v", res.Link.Synced, kinds(res.Decisions))
		}
	})
}

// observeAlone decides on o for l and fails t when the decision changed l.
func observeAlone(t *testing.T, m Decider, what string, l contracts.Link, o Observation) Result {
	t.Helper()
	before := linkJSON(t, l)
	res := m.Observe(&l, o, t0)
	if after := linkJSON(t, l); after != before {
		t.Errorf("%s: the decision changed the link it was given:\nbefore %s\nafter  %s", what, before, after)
	}
	if res.Link == nil {
		t.Fatalf("%s: no link decided (%v)", what, kinds(res.Decisions))
	}
	return res
}

// outcomeAlone folds out into l and fails t when the decision changed l.
func outcomeAlone(t *testing.T, m Decider, what string, l contracts.Link, out contracts.Outcome) Result {
	t.Helper()
	before := linkJSON(t, l)
	res := m.Outcome(l, out, t0)
	if after := linkJSON(t, l); after != before {
		t.Errorf("%s: the outcome changed the link it was given:\nbefore %s\nafter  %s", what, before, after)
	}
	if res.Link == nil {
		t.Fatalf("%s: no link decided (%v)", what, kinds(res.Decisions))
	}
	return res
}

// linkJSON is l as encoding/json writes it (map keys sorted), to compare a link before and after.
func linkJSON(t *testing.T, l contracts.Link) string {
	t.Helper()
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
