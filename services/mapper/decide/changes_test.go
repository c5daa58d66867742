package decide

import (
	"reflect"
	"testing"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/mapping"
)

// TestDecisionsCarryBeforeAndAfter: what the timeline shows as before → after. A change sent carries the
// agreed value before and the new one from its side; a conflict carries both sides' edits.
func TestDecisionsCarryBeforeAndAfter(t *testing.T) {
	m := def()
	l, r := activeLink(t, m)
	before := l.Synced[mapping.FieldDealValue]
	o := mirror(r, "Qualification", map[string]any{sf.FieldAmount: 111.0})
	res := m.Observe(&l, m.ObserveOpportunity("sf-9", o, ver("s9", 9)), t0)
	var applied *contracts.Decision
	for i, d := range res.Decisions {
		if d.Kind == contracts.DecisionApplied {
			applied = &res.Decisions[i]
		}
	}
	want := []contracts.FieldChange{{Field: mapping.FieldDealValue, Before: before, After: 111.0, From: contracts.Salesforce}}
	if applied == nil || !reflect.DeepEqual(applied.Changes, want) {
		t.Fatalf("applied decision changes: %+v, want %+v (decisions %+v)", applied, want, res.Decisions)
	}

	// Both sides changed the deal value: the conflict names each side's edit.
	l, r = activeLink(t, m)
	base := l.Synced[mapping.FieldDealValue]
	l.PC.Latest[mapping.FieldDealValue] = 222.0
	l.PC.Seen = ver("pc5", 5)
	res = m.Observe(&l, m.ObserveOpportunity("sf-9", mirror(r, "Qualification", map[string]any{sf.FieldAmount: 111.0}), ver("s9", 9)), t0)
	c := res.Decisions[0]
	want = []contracts.FieldChange{
		{Field: mapping.FieldDealValue, Before: base, After: 111.0, From: contracts.Salesforce},
		{Field: mapping.FieldDealValue, Before: base, After: 222.0, From: contracts.PartnerCenter},
	}
	if c.Kind != contracts.DecisionConflict || !reflect.DeepEqual(c.Changes, want) {
		t.Fatalf("conflict changes: %+v, want %+v", c, want)
	}
}
