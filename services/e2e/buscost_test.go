package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/auditsummary"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// storedBy reads every stream's (and so every KV bucket's) last sequence: what the server stored so far.
func storedBy(t *testing.T, bus *platform.Bus) map[string]uint64 {
	t.Helper()
	ctx := context.Background()
	out := map[string]uint64{}
	names := []string{}
	for _, st := range contracts.Streams() {
		names = append(names, st.Name)
	}
	for _, b := range contracts.Buckets() {
		names = append(names, "KV_"+b)
	}
	for _, n := range names {
		info, err := bus.StreamInfo(ctx, n)
		if err != nil {
			t.Fatalf("stream %s: %v", n, err)
		}
		out[n] = info.State.LastSeq
	}
	return out
}

// deliveredBy reads every durable's deliveries so far (its consumer sequence, redeliveries included).
func deliveredBy(t *testing.T, bus *platform.Bus) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, c := range contracts.Consumers() {
		info, err := bus.ConsumerInfo(context.Background(), c.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", c.Durable, err)
		}
		out[c.Durable] = info.Delivered.Consumer
	}
	return out
}

func delta(before, after map[string]uint64) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range after {
		if v > before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// sentAndWritten reports whether the timeline ends with a change of field sent to target, then written
// by that side's writer (the outcome of the command that carried it).
func sentAndWritten(tl []contracts.Decision, target contracts.System, field string) bool {
	writer := map[contracts.System]string{contracts.Salesforce: contracts.StageSFWriter, contracts.PartnerCenter: contracts.StagePCWriter}[target]
	for i := len(tl) - 1; i > 0; i-- {
		w, d := tl[i], tl[i-1]
		if w.Kind == contracts.DecisionWritten && w.Stage == writer && d.Kind == contracts.DecisionApplied && d.Target == target &&
			slices.Contains(d.Fields, field) && len(d.Changes) > 0 {
			return true
		}
	}
	return false
}

func render(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	var total uint64
	for k, v := range m {
		keys = append(keys, k)
		total += v
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return fmt.Sprintf("%d: %s", total, strings.Join(parts, ", "))
}

// busCostStack starts the stack on change events (startOnChangeEvents: the backstop out of the way, the
// replay id stored at most once an hour), connects a bus to count with, and returns a wait for every
// durable to have caught up.
func busCostStack(t *testing.T) (*stack.Stack, *platform.Bus, func(what string)) {
	s, bus, _ := startOnChangeEvents(t)
	ctx := context.Background()
	return s, bus, func(what string) {
		testkit.Eventually(t, 30*time.Second, what, func() (bool, string) { return s.CaughtUp(ctx) })
	}
}

// TestOneSteadyChangeBusCost counts, from the server's own counters, what one deal-value change made on
// Partner Center costs the bus on its way to Salesforce once the pair is linked (the steady path of
// issue 16): stored publishes per stream and bucket, link writes among them, durable deliveries. The
// counts are deterministic (no timing in them), so a change that adds a write fails here. Salesforce
// change events carry the Opportunity's changes, as in production (cosell's own writes are dropped from
// their header); sf-ingest stores their replay id at most once per COSELL_SF_CDC_CHECKPOINT_INTERVAL (an
// hour here, so none of these changes stores it; 2 s by default), not once per echo. The Audit summary
// goes with the change's Salesforce update: no command of its own. The change's audit record is its outcome
// (the command carries the mapper's decision on to it): no audit message.
func TestOneSteadyChangeBusCost(t *testing.T) {
	s, bus, caughtUp := busCostStack(t)
	ctx := context.Background()
	replayRev := replayRevision(t, bus)
	r, err := s.PC.SellerCreate(stacktest.SellerReferral("Fabrikam steady", 30000))
	if err != nil {
		t.Fatal(err)
	}
	oppID := stacktest.OneOpportunityFor(t, s, r.ID, 30*time.Second)
	caughtUp("the create settled")
	// The first burst's replay id is stored at once (none was), the later ones' within the hour.
	testkit.Eventually(t, 30*time.Second, "the first change events' replay id stored", func() (bool, string) {
		return replayRev() > 0, "none"
	})
	opportunitySnapshots := bustest.Count(t, bus, contracts.StreamObserved, contracts.Subject(contracts.SubjectOpportunityObserved, oppID))

	asserted := 0
	for i, value := range []float64{31000, 32000, 33000} {
		stored, delivered, replayed := storedBy(t, bus), deliveredBy(t, bus), replayRev()
		v := value
		if _, err := s.PC.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 30*time.Second, "amount updated from Partner Center", func() (bool, string) {
			o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
			return o[sf.FieldAmount] == value, fmt.Sprint(o[sf.FieldAmount])
		})
		caughtUp("the change settled")
		// The Audit summary: the Salesforce update of the change carried it, so the write-back the auditor
		// would make for the link (on its own clock in a deployment, called here) has nothing to write.
		linkID := contracts.LinkIDFor(contracts.PartnerCenter, r.ID)
		if err := s.Auditor.WriteSummary(ctx, linkID); err != nil {
			t.Fatal(err)
		}
		caughtUp("the Audit summary considered")
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		if a := fmt.Sprint(o[sf.FieldAudit]); !strings.Contains(a, "applied → "+string(contracts.Salesforce)+" [dealValue]") {
			t.Errorf("change %d: the Opportunity's Audit field does not show the change:\n%s", i+1, a)
		}
		// Its outcome says which text it carried, so the auditor knows it is there without rendering it.
		m, err := bus.LastMsg(ctx, contracts.StreamOutcomes, contracts.Subject(contracts.SubjectOpportunityWritten, linkID))
		if err != nil {
			t.Fatal(err)
		}
		var out contracts.Outcome
		if err := json.Unmarshal(m.Data, &out); err != nil {
			t.Fatal(err)
		}
		if want := auditsummary.CommandID(linkID, fmt.Sprint(o[sf.FieldAudit])); out.AuditSent != want {
			t.Errorf("change %d: the write's outcome says it carried Audit text %q, want %q (the one on the Opportunity)", i+1, out.AuditSent, want)
		}
		cost, got := delta(stored, storedBy(t, bus)), delta(delivered, deliveredBy(t, bus))
		// The checkpoints bucket's watermarks move on the pollers' clocks; the change events' replay id, on
		// the change path, is not stored once per burst.
		if rev := replayRev(); rev != replayed {
			t.Errorf("change %d: sf-ingest stored its replay id (revision %d → %d), want at most once an hour", i+1, replayed, rev)
		}
		delete(cost, "KV_"+contracts.BucketCheckpoints)
		delete(cost, "KV_"+contracts.BucketLeases) // renewed on a clock, not per change
		t.Logf("change %d: stored publishes %s; durable deliveries %s", i+1, render(cost), render(got))
		if n := bustest.Count(t, bus, contracts.StreamObserved, contracts.Subject(contracts.SubjectOpportunityObserved, oppID)); n != opportunitySnapshots {
			// A snapshot of the Opportunity sf-ingest re-read after the create (change events of the
			// records cosell made with it) came in this round: not this change's cost.
			t.Logf("change %d: not counted, %d snapshot(s) of the Opportunity came in", i+1, n-opportunitySnapshots)
			opportunitySnapshots = n
			continue
		}
		asserted++
		want := map[string]uint64{
			// The webhook's notification and the referral it names.
			contracts.StreamObserved: 2,
			// One compare-and-set per decision: the snapshot's (link + outbox) and the outcome's.
			"KV_" + contracts.BucketLinks:   2,
			contracts.StreamRequested:       1,
			contracts.StreamOutcomes:        1,
			"KV_" + contracts.BucketApplied: 1,
			// No audit message: the command carries the mapper's decision, and its outcome, which carries
			// it on with what the write did, is the audit record of the change.
		}
		for k, n := range cost {
			if n > want[k] {
				t.Errorf("change %d: %s stored %d, want at most %d", i+1, k, n, want[k])
			}
		}
		wantDeliveries := map[string]uint64{
			contracts.ConsumerPCIngestNotified: 1, contracts.ConsumerMapperObserved: 1, contracts.ConsumerSFWriter: 1,
			contracts.ConsumerMapperOutcomes: 1, contracts.ConsumerAuditorOutcomes: 1,
		}
		for k, n := range got {
			if n > wantDeliveries[k] {
				t.Errorf("change %d: %s delivered %d, want at most %d", i+1, k, n, wantDeliveries[k])
			}
		}
		if n := sum(cost); n > 7 {
			t.Errorf("change %d: %d stored publishes, want at most 7 (issue 16: 8 with sf-ingest's checkpoint)", i+1, n)
		}
		if n := sum(got); n > 5 {
			t.Errorf("change %d: %d durable deliveries, want at most 5 (issue 16)", i+1, n)
		}
		// The timeline still tells the change: the decision sent (read off the outcome it rode on) and
		// the write sf-writer did.
		tl, err := s.Auditor.Timeline(ctx, linkID)
		if err != nil {
			t.Fatal(err)
		}
		if !sentAndWritten(tl, contracts.Salesforce, "dealValue") {
			t.Errorf("change %d: the timeline does not show the change sent to Salesforce and written: %s", i+1, kindsOf(tl))
		}
		if t.Failed() {
			for _, st := range []string{contracts.StreamObserved, contracts.StreamRequested, contracts.StreamAudit} {
				_ = bus.Read(ctx, st, func(m platform.Stored) error {
					t.Logf("%s %d: %s %s", st, m.Seq, m.Subject, m.Header.Get("ce-id"))
					return nil
				}, platform.FromSeq(stored[st]+1))
			}
		}
	}
	if asserted < 2 {
		t.Errorf("only %d of 3 changes counted: the Opportunity's own snapshots came with the others (an echo of cosell's write?)", asserted)
	}
}

// TestOneNewOpportunityBusCost counts what one Opportunity a seller flags for co-sell costs the links
// bucket on its way to a referral and back (the referral id written to the Opportunity): the link's
// creation, the create's outcome (which also decides on the referral the create returned: pc-writer's
// snapshot of it, stored just before, costs no write of its own), the referral's index and the snapshot
// of the Opportunity that the write-back comes back as; the write-back's outcome changes nothing of the
// link (decide.Inert) and costs no write. Deterministic counts, so a change that adds a write fails here.
func TestOneNewOpportunityBusCost(t *testing.T) {
	s, bus, caughtUp := busCostStack(t)
	caughtUp("the stack started")
	stored := storedBy(t, bus)
	oppID := newOpportunity(t, s, "Fabrikam new deal", 7000)
	testkit.Eventually(t, 30*time.Second, "referral id written back, in step", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldReferralIdentifier] != nil && o[sf.FieldSyncStatus] == "✔", fmt.Sprint(o[sf.FieldReferralIdentifier], o[sf.FieldSyncStatus])
	})
	caughtUp("the create settled")
	if n := len(stacktest.ReferralsFor(s, oppID)); n != 1 {
		t.Fatalf("%d referrals for %s, want 1", n, oppID)
	}
	cost := delta(stored, storedBy(t, bus))
	t.Logf("stored publishes %s", render(cost))
	want := map[string]uint64{
		"KV_" + contracts.BucketLinks: 4,
		contracts.StreamRequested:     2, // the referral's create, the write-back of its id
	}
	for k, n := range want {
		if cost[k] > n {
			t.Errorf("%s stored %d, want at most %d", k, cost[k], n)
		}
	}
	if t.Failed() {
		logStored(t, bus, stored)
		return
	}
	// A seller's change of the linked Opportunity: its snapshot's decision and the patch's outcome, which
	// also decides on the referral the patch returned (pc-writer's snapshot of it costs no write).
	stored = storedBy(t, bus)
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldAmount: 7500.0}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the deal value patched", func() (bool, string) {
		rs := stacktest.ReferralsFor(s, oppID)
		if len(rs) != 1 || rs[0].Details == nil || rs[0].Details.DealValue == nil {
			return false, fmt.Sprint(len(rs))
		}
		return *rs[0].Details.DealValue == 7500, fmt.Sprint(*rs[0].Details.DealValue)
	})
	caughtUp("the change settled")
	cost = delta(stored, storedBy(t, bus))
	t.Logf("a change: stored publishes %s", render(cost))
	if n := cost["KV_"+contracts.BucketLinks]; n > 2 {
		t.Errorf("a change of the Opportunity stored %d link writes, want at most 2", n)
		logStored(t, bus, stored)
	}
}

// logStored logs what the audit stream, the observed stream and the links bucket stored since stored
// (storedBy's counts), for a failed cost's reader.
func logStored(t *testing.T, bus *platform.Bus, stored map[string]uint64) {
	t.Helper()
	for _, stream := range []string{contracts.StreamAudit, contracts.StreamObserved, "KV_" + contracts.BucketLinks} {
		_ = bus.Read(context.Background(), stream, func(m platform.Stored) error {
			t.Logf("%s %d: %s %.400s", stream, m.Seq, m.Subject, m.Data)
			return nil
		}, platform.FromSeq(stored[stream]+1))
	}
}
