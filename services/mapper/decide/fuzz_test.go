package decide

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/mapping"
)

// fuzzMapping varies the default mapping: each field's directions and owner, and the stage names.
func fuzzMapping(dirs, owners uint64, hold, active string) Decider {
	m := def()
	for i := range m.Fields {
		d := (dirs >> (2 * (i % 32))) & 3
		if d == 1 && m.Fields[i].Kind != mapping.KindStatus {
			m.Fields[i].ToPC = mapping.Never
		}
		if d == 2 {
			m.Fields[i].ToSF = mapping.Never
		}
		m.Fields[i].Owner = []mapping.Owner{mapping.OwnerNewest, mapping.OwnerPC, mapping.OwnerSF, mapping.OwnerReview}[(owners>>(2*(i%32)))&3]
	}
	if hold != "" {
		m.Stages.Hold = hold
	}
	if active != "" {
		m.Stages.Active = active
	}
	return m
}

func hasWrite(r Result) bool { return r.Referral != nil || r.Opp != nil }

// FuzzObserve feeds random referral and Opportunity snapshots through random mappings: a PC-started link
// is created, completed, both sides are observed, and then each side is observed again unchanged (a new
// version with the same values, as a poll re-read or a touch of an unmapped field gives). The mapper must
// never panic, and never write anything for the unchanged snapshots.
func FuzzObserve(f *testing.F) {
	f.Add([]byte(`{"name":"Contoso","status":"New","substatus":"Pending","customerProfile":{"name":"C","address":{"country":"US"}},"details":{"dealValue":5,"currency":"USD","closingDateTime":"2027-01-01T00:00:00Z","notes":"n"}}`),
		[]byte(`{"Name":"Contoso","Amount":7,"StageName":"Qualification","Description":"m","How_can_Microsoft_help__c":"General or other"}`),
		uint64(0), uint64(0), "", "", uint8(0))
	f.Add([]byte(`{"name":"x","status":"Active","substatus":"Accepted","details":{"requirements":{"solutions":[{"id":"S1"},{"id":"s1"}]}},"team":[{"email":"A@x"}]}`),
		[]byte(`{"Name":"y","StageName":"Prospecting","IsClosed":true,"Amount":"NaN"}`),
		uint64(0x5555), uint64(0xffff), "Prospecting", "Prospecting", uint8(3))
	f.Fuzz(func(t *testing.T, refJSON, oppJSON []byte, dirs, owners uint64, hold, active string, solutions uint8) {
		m := fuzzMapping(dirs, owners, hold, active)
		var r partnercenter.Referral
		_ = json.Unmarshal(refJSON, &r)
		r.ID = "r1"
		r.ExternalReferenceID = ""
		fields := map[string]any{}
		_ = json.Unmarshal(oppJSON, &fields)
		o := contracts.Opportunity{ID: "006X", Fields: fields}
		for i := 0; i < int(solutions%4); i++ {
			o.Solutions = append(o.Solutions, contracts.Solution{SolutionID: fmt.Sprintf("SOL-%d", i%2)})
		}
		v := func(n int) contracts.Version {
			return contracts.Version{Tag: fmt.Sprint(n), At: t0.Add(time.Duration(n) * time.Minute)}
		}
		res := m.Observe(nil, m.ObserveReferral("pc-1", r, v(1)), t0)
		if res.Link == nil {
			return // ignored (closed referral)
		}
		l := *res.Link
		if res.Opp != nil {
			out := m.Outcome(l, contracts.Outcome{CommandID: res.Opp.ID, LinkID: l.ID, System: contracts.Salesforce,
				Op: res.Opp.Data.Op, Status: contracts.OutcomeWritten, Created: true, OpportunityID: "006X"}, t0)
			l = *out.Link
		}
		res = m.Observe(&l, m.ObserveOpportunity("sf-2", o, v(2)), t0)
		if res.Link != nil {
			l = *res.Link
		}
		again := m.Observe(&l, m.ObserveOpportunity("sf-3", o, v(3)), t0)
		if hasWrite(again) {
			t.Fatalf("unchanged Opportunity wrote: %+v %+v\ndecisions %+v", again.Referral, again.Opp, again.Decisions)
		}
		if again.Link != nil {
			l = *again.Link
		}
		againPC := m.Observe(&l, m.ObserveReferral("pc-4", r, v(4)), t0)
		if hasWrite(againPC) {
			t.Fatalf("unchanged referral wrote: %+v %+v\ndecisions %+v", againPC.Referral, againPC.Opp, againPC.Decisions)
		}
	})
}
