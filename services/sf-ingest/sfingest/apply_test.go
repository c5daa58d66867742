package sfingest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// follower is a CDC subscriber with the count of events it has fully handled (its replay id stored).
type follower struct {
	c       *CDC
	mu      sync.Mutex
	handled int
}

func (w *follower) done() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.handled
}

func follow(c *CDC) *follower {
	w := &follower{c: c}
	c.AfterBurst = func(s CDCStats) {
		w.mu.Lock()
		w.handled = s.Events
		w.mu.Unlock()
	}
	return w
}

// latest reads the newest snapshot of every record on a bus's observed stream.
func latest(t *testing.T, bus *platform.Bus) map[string]contracts.OpportunityObserved {
	t.Helper()
	out := map[string]contracts.OpportunityObserved{}
	err := bus.Read(context.Background(), contracts.StreamObserved, func(m platform.Stored) error {
		e, err := m.Event()
		if err != nil {
			return err
		}
		obs, err := platform.DataAs[contracts.OpportunityObserved](e)
		if err != nil {
			return err
		}
		out[obs.Opportunity.ID] = obs
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func content(o contracts.Opportunity) string {
	b, _ := json.Marshal(o)
	return string(b)
}

// TestCDCSnapshotsBuiltFromEventsMatchRESTReads is the property the change-event path rests on: random
// sequences of a seller's edits (fields set and nulled, Microsoft Solutions, team members and contact roles
// added, changed and removed, another Account, another owner, an Account renamed, cosell's own writes) are
// followed by two subscribers of the same org over gRPC: the one under test, which builds snapshots from the
// events where they carry the change, and an oracle on a bus of its own that reads every change by REST,
// as sf-ingest did before. After each edit both hold the same snapshot of every record (same content), and
// each snapshot the builder published has the id the oracle's REST read gave that state; a trickle of
// plain field and solution edits costs the builder no REST call.
func TestCDCSnapshotsBuiltFromEventsMatchRESTReads(t *testing.T) {
	t.Parallel()
	t.Run("every record in memory", func(t *testing.T) { buildMatchesREST(t, 0) })
	// One record in memory: the others come from the stream's last snapshot, or by REST when that may
	// lack an own write the builder took in.
	t.Run("one record in memory", func(t *testing.T) { buildMatchesREST(t, 1) })
}

func buildMatchesREST(t *testing.T, cache int) {
	f := newCDCFixture(t)
	extra := append(mapping.Default().SalesforceFields(), "Owner.Email") // the snapshot follows the owner too
	f.in.Extra = extra
	obus := bustest.Start(t, bustest.Config(3, 5*time.Second), contracts.StageSFIngest, nil)
	ocps, err := obus.KV(context.Background(), contracts.BucketCheckpoints)
	if err != nil {
		t.Fatal(err)
	}
	oracleIn := &Ingest{Bus: obus, SF: f.in.SF, Checkpoints: ocps, Config: f.in.Config, Log: f.in.Log, Extra: extra}

	users := []string{f.emu.IntegrationUserID()}
	for i := range 2 {
		users = append(users, f.insert(t, "User", map[string]any{"FirstName": fmt.Sprint("U", i), "LastName": "Seller",
			"Email": fmt.Sprintf("u%d@example.com", i), "Username": fmt.Sprintf("u%d@example.com", i)}))
	}
	var contacts []string
	for i := range 2 {
		contacts = append(contacts, f.insert(t, "Contact", map[string]any{"FirstName": fmt.Sprint("C", i), "LastName": "Buyer",
			"Email": fmt.Sprintf("c%d@example.com", i)}))
	}
	accounts := []string{f.insert(t, "Account", map[string]any{"Name": "Other AG", "BillingCity": "Basel"})}
	var opps []string
	for i := range 3 {
		opps = append(opps, f.syncedOpportunity(t, fmt.Sprint("Prop ", i)))
	}

	builder := follow(f.subscriber(t))
	builder.c.Config.Cache = cache
	oracleFix := &cdcFixture{fixture: &fixture{emu: f.emu, in: oracleIn, bus: obus}, pubsubURL: f.pubsubURL}
	oc := oracleFix.subscriber(t)
	oc.readAll = true
	oracle := follow(oc)
	run(t, builder.c)
	run(t, oracle.c)
	f.waitStored(t)
	oracleFix.waitStored(t)
	base := f.emu.ChangeEventCount()
	for _, w := range []*follower{builder, oracle} {
		w.mu.Lock()
		w.handled = 0
		w.c.mu.Lock()
		w.c.stats.Events = 0
		w.c.mu.Unlock()
		w.mu.Unlock()
	}

	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("COSELL_TEST_SEED"), 10, 64); err == nil {
		seed = s // to repeat a failed run
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	children := map[string][]string{} // object -> ids alive
	update := func(obj, id string, fields map[string]any) {
		if err := f.emu.Update(obj, id, fields); err != nil {
			t.Fatalf("update %s %s %v: %v", obj, id, fields, err)
		}
	}
	remove := func(obj string) bool {
		ids := children[obj]
		if len(ids) == 0 {
			return false
		}
		i := rng.IntN(len(ids))
		if err := f.emu.Delete(obj, ids[i]); err != nil {
			t.Fatal(err)
		}
		children[obj] = append(ids[:i:i], ids[i+1:]...)
		return true
	}
	stages := []string{"Prospecting", "Qualification", "Needs Analysis", "Closed Won", "Closed Lost"}
	type edit struct {
		name  string
		plain bool // the events carry it: no REST call
		do    func(opp string) bool
	}
	edits := []edit{
		{"amount", true, func(o string) bool {
			update("Opportunity", o, map[string]any{"Amount": float64(rng.IntN(9000) + 1)})
			return true
		}},
		{"amount nulled", true, func(o string) bool { update("Opportunity", o, map[string]any{"Amount": nil}); return true }},
		{"description", true, func(o string) bool {
			update("Opportunity", o, map[string]any{"Description": fmt.Sprint("note ", rng.IntN(100))})
			return true
		}},
		{"description nulled", true, func(o string) bool { update("Opportunity", o, map[string]any{"Description": nil}); return true }},
		{"stage", true, func(o string) bool { update("Opportunity", o, map[string]any{"StageName": pick(stages)}); return true }},
		{"close date and name", true, func(o string) bool {
			update("Opportunity", o, map[string]any{"CloseDate": fmt.Sprintf("2027-%02d-1%d", rng.IntN(9)+1, rng.IntN(9)), "Name": fmt.Sprint("Deal ", rng.IntN(50))})
			return true
		}},
		{"next step (no snapshot shows it)", true, func(o string) bool {
			update("Opportunity", o, map[string]any{"NextStep": fmt.Sprint("call ", rng.IntN(100))})
			return true
		}},
		{"solution added", true, func(o string) bool {
			children[sf.ObjectMicrosoftSolution] = append(children[sf.ObjectMicrosoftSolution], f.insert(t, sf.ObjectMicrosoftSolution,
				map[string]any{"Opportunity__c": o, "Solution_Id__c": fmt.Sprint("SOL-", rng.IntN(99)), "Name": fmt.Sprint("Azure ", rng.IntN(9))}))
			return true
		}},
		{"solution renamed", true, func(string) bool {
			ids := children[sf.ObjectMicrosoftSolution]
			if len(ids) == 0 {
				return false
			}
			update(sf.ObjectMicrosoftSolution, pick(ids), map[string]any{"Name": fmt.Sprint("Renamed ", rng.IntN(99))})
			return true
		}},
		{"solution removed", true, func(string) bool { return remove(sf.ObjectMicrosoftSolution) }},
		{"team member added", false, func(o string) bool {
			children[sf.ObjectOpportunityTeamMember] = append(children[sf.ObjectOpportunityTeamMember], f.insert(t, sf.ObjectOpportunityTeamMember,
				map[string]any{"OpportunityId": o, "UserId": pick(users), "TeamMemberRole": "Sales Rep"}))
			return true
		}},
		{"team member's role", false, func(string) bool {
			ids := children[sf.ObjectOpportunityTeamMember]
			if len(ids) == 0 {
				return false
			}
			update(sf.ObjectOpportunityTeamMember, pick(ids), map[string]any{"TeamMemberRole": pick([]string{"Sales Manager", "Account Manager", "Sales Rep"})})
			return true
		}},
		{"team member removed", false, func(string) bool { return remove(sf.ObjectOpportunityTeamMember) }},
		{"contact role added", false, func(o string) bool {
			children[sf.ObjectOpportunityContactRole] = append(children[sf.ObjectOpportunityContactRole], f.insert(t, sf.ObjectOpportunityContactRole,
				map[string]any{"OpportunityId": o, "ContactId": pick(contacts), "Role": "Decision Maker"}))
			return true
		}},
		{"contact role changed", false, func(string) bool {
			ids := children[sf.ObjectOpportunityContactRole]
			if len(ids) == 0 {
				return false
			}
			update(sf.ObjectOpportunityContactRole, pick(ids), map[string]any{"Role": pick([]string{"Evaluator", "Influencer"}), "IsPrimary": rng.IntN(2) == 0})
			return true
		}},
		{"contact role removed", false, func(string) bool { return remove(sf.ObjectOpportunityContactRole) }},
		{"contact's email", false, func(string) bool {
			update("Contact", pick(contacts), map[string]any{"Email": fmt.Sprintf("c%d@changed.example", rng.IntN(99))})
			return true
		}},
		{"another account", false, func(o string) bool {
			acc := pick(append(accounts, str(latest(t, f.bus)[o].Opportunity.Fields[sf.FieldAccountID])))
			update("Opportunity", o, map[string]any{"AccountId": acc})
			return true
		}},
		{"account renamed", false, func(o string) bool {
			update("Account", str(latest(t, f.bus)[o].Opportunity.Fields[sf.FieldAccountID]), map[string]any{"Name": fmt.Sprint("Renamed ", rng.IntN(99), " AG")})
			return true
		}},
		{"another owner", false, func(o string) bool { update("Opportunity", o, map[string]any{"OwnerId": pick(users)}); return true }},
		{"cosell's write-back (dropped from the header)", true, func(o string) bool {
			ownWrite(t, f.in.SF, "Opportunity", o, map[string]any{sf.FieldReferralLink: fmt.Sprint("https://partner.microsoft.com/r/", rng.IntN(99)),
				sf.FieldSyncStatus: "✔ in step"})
			return true
		}},
		{"cosell's own write", true, func(o string) bool {
			ownWrite(t, f.in.SF, "Opportunity", o, map[string]any{"Amount": float64(rng.IntN(9000) + 1), sf.FieldSyncStatus: "✔ in step"})
			return true
		}},
	}

	plainReads, plainEdits := 0, 0
	for step := range 60 {
		e := edits[rng.IntN(len(edits))]
		opp := pick(opps)
		before := latest(t, f.bus)
		reads := builder.c.Stats().Reads
		if !e.do(opp) {
			continue
		}
		t.Logf("step %d: %s of %s", step, e.name, opp)
		want := f.emu.ChangeEventCount() - base
		testkit.EventuallyTrue(t, 15*time.Second, fmt.Sprintf("step %d (%s): both subscribers handled %d events", step, e.name, want), func() bool {
			return builder.done() >= want && oracle.done() >= want
		})
		if e.plain && cache == 0 {
			plainEdits++
			plainReads += builder.c.Stats().Reads - reads
			if n := builder.c.Stats().Reads - reads; n != 0 {
				t.Errorf("step %d (%s of %s): %d REST reads, want none", step, e.name, opp, n)
			}
		}
		got, oracleGot := latest(t, f.bus), latest(t, obus)
		for _, id := range opps {
			b, o := got[id], oracleGot[id]
			if content(b.Opportunity) != content(o.Opportunity) {
				t.Fatalf("step %d (%s of %s): %s built\n%s\nREST read\n%s", step, e.name, opp, id, content(b.Opportunity), content(o.Opportunity))
			}
			if b.Version.Tag != before[id].Version.Tag && b.Version.Tag != o.Version.Tag {
				t.Fatalf("step %d (%s of %s): %s built version %s, REST read %s (the same state, another event id)", step, e.name, opp, id,
					b.Version.Tag, o.Version.Tag)
			}
		}
	}
	st, ost := builder.c.Stats(), oracle.c.Stats()
	t.Logf("builder %+v; oracle %+v; plain edits %d, their reads %d", st, ost, plainEdits, plainReads)
	if st.Built == 0 || st.Reads >= ost.Reads || cache == 1 && st.StreamReads == 0 {
		t.Fatalf("built %d snapshots with %d reads, the oracle read %d times: the events built nothing", st.Built, st.Reads, ost.Reads)
	}
}
