package mapper

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// referralSeen is the observed event of a Microsoft seller's referral at version n.
func referralSeen(t testing.TB, id string, n int) platform.Event {
	t.Helper()
	v := 1000.0 * float64(n)
	at := time.Date(2026, 11, 1, 12, 0, n, 0, time.UTC)
	r := pc.Referral{ID: id, Name: "Outbox " + id, Status: pc.StatusNew, ETag: fmt.Sprintf("e%d", n),
		UpdatedDateTime: at.Format(time.RFC3339Nano),
		CustomerProfile: &pc.CustomerProfile{Name: "Outbox Customer", Address: &pc.Address{City: "Redmond", PostalCode: "98052", Country: "US"}},
		Consent:         &pc.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true},
		Details:         &pc.Details{DealValue: &v, Currency: "USD", ClosingDateTime: "2027-02-15T00:00:00Z"}}
	ver := contracts.ReferralVersion(r)
	e, err := platform.NewEvent(contracts.ReferralObservedID(id, ver), contracts.TypeReferralObserved, contracts.StagePCIngest, id,
		contracts.ReferralObserved{Referral: r, Version: ver, ObservedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// mapperOn is a mapper on bus with a clock of its own, as a process that just started (nothing remembered).
func mapperOn(t testing.TB, bus *platform.Bus, now time.Time) *Service {
	t.Helper()
	m, err := mapping.Load(mapping.Config{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(context.Background(), bus, m, testkit.Log())
	if err != nil {
		t.Fatal(err)
	}
	svc.Now = func() time.Time { return now }
	return svc
}

// outboxOnBus counts what the link's decisions put on the bus: its commands and its audit entries. Every
// command must carry the decision it carries out (its outcome is that decision's audit record).
func outboxOnBus(t *testing.T, bus *platform.Bus, linkID string) (commands, decisions int) {
	t.Helper()
	subject := contracts.Subject(contracts.SubjectOpportunityRequested, linkID)
	err := bus.Read(context.Background(), contracts.StreamRequested, func(m platform.Stored) error {
		var c contracts.OpportunityCommand
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return err
		}
		if c.Decision == nil || c.Decision.Kind != contracts.DecisionCreated || c.Decision.Cause != c.Cause {
			t.Errorf("command %s carries decision %+v; want the create's, caused by %s", m.Header.Get("ce-id"), c.Decision, c.Cause)
		}
		return nil
	}, platform.Subjects(subject))
	if err != nil {
		t.Fatal(err)
	}
	return bustest.Count(t, bus, contracts.StreamRequested, subject),
		bustest.Count(t, bus, contracts.StreamAudit, contracts.Subject(contracts.SubjectAudit, linkID))
}

// crashingPair is two mapper connections to one server: lost, the one a test cuts (the process dies), and
// bus, the one the process started after it uses.
func crashingPair(t *testing.T) (lost, bus *platform.Bus) {
	t.Helper()
	ns := bustest.Server(t)
	cfg := bustest.Config(8, 2*time.Second)
	return bustest.Bus(t, ns, cfg, contracts.StageMapper, nil), bustest.Bus(t, ns, cfg, contracts.StageMapper, nil)
}

// TestCrashBetweenStoreAndPublish stops the mapper right after it stored a decision's link and outbox and
// before it published them (its connection gone, the triggering message not acked): the redelivery, handled
// by a mapper that remembers nothing, publishes them, once, whether it comes at once (the copies the
// server would drop) or after the duplicate window (the stream is asked).
func TestCrashBetweenStoreAndPublish(t *testing.T) {
	for _, later := range []time.Duration{time.Second, 2 * time.Hour} {
		t.Run(fmt.Sprintf("redelivered %s later", later), func(t *testing.T) {
			lost, bus := crashingPair(t)
			ctx := context.Background()
			now := time.Now().UTC()
			first := mapperOn(t, lost, now)
			first.AfterStore = func(string) { lost.Abort() } // the process dies: its connection is gone
			e := referralSeen(t, "R-crash", 1)
			linkID := contracts.LinkIDFor(contracts.PartnerCenter, "R-crash")
			if err := first.HandleObserved(ctx, e); err == nil {
				t.Fatal("the handling whose publish was cut reported success (its trigger would be acked)")
			}
			if c, d := outboxOnBus(t, bus, linkID); c != 0 || d != 0 {
				t.Fatalf("before the redelivery: %d commands, %d decisions on the bus; want none (the crash came before the publish)", c, d)
			}
			again := mapperOn(t, bus, now.Add(later))
			st, err := again.get(ctx, linkID)
			if err != nil || st == nil || len(st.Outbox) == 0 {
				t.Fatalf("link after the crash: %+v, %v; want it stored with its outbox", st, err)
			}
			if err := again.HandleObserved(ctx, e); err != nil {
				t.Fatal(err)
			}
			if c, d := outboxOnBus(t, bus, linkID); c != 1 || d != 1 {
				t.Errorf("after the redelivery: %d commands, %d decisions; want the create once (carrying its decision) and the redelivery's no-change", c, d)
			}
		})
	}
}

// TestPublishedOutboxNotPublishedAgain: a decision's outbox, published and acked, stays in the link record
// until the next decision replaces it. A mapper that does not know it was published (a restart, another
// replica) and handles the link's next change after the duplicate window (where the server would store a
// copy again) finds it on the stream and publishes nothing twice; inside the window its copies are dropped.
func TestPublishedOutboxNotPublishedAgain(t *testing.T) {
	cfg := bustest.Config(8, 2*time.Second)
	cfg.DuplicateWindow = time.Second
	bus := bustest.Start(t, cfg, contracts.StageMapper, nil)
	ctx := context.Background()
	now := time.Now().UTC()
	linkID := contracts.LinkIDFor(contracts.PartnerCenter, "R-kept")
	if err := mapperOn(t, bus, now).HandleObserved(ctx, referralSeen(t, "R-kept", 1)); err != nil {
		t.Fatal(err)
	}
	c0, d0 := outboxOnBus(t, bus, linkID)
	if c0 != 1 || d0 != 0 {
		t.Fatalf("first decision: %d commands, %d decisions; want the create, carrying its decision, and no audit message", c0, d0)
	}
	// Wait out the server's duplicate window: a copy published now would be stored.
	probe := 0
	testkit.Eventually(t, 30*time.Second, "the duplicate window passed", func() (bool, string) {
		e, err := platform.NewEvent("probe/window", contracts.TypeDecision, contracts.StageMapper, "probe", contracts.Decision{LinkID: "probe"})
		if err != nil {
			return false, err.Error()
		}
		dup, err := bus.Publish(ctx, contracts.Subject(contracts.SubjectAudit, "probe"), e)
		if err != nil {
			return false, err.Error()
		}
		probe++
		return !dup && probe > 1, fmt.Sprintf("%d probes", probe)
	})
	later := mapperOn(t, bus, now.Add(time.Hour))
	if err := later.HandleObserved(ctx, referralSeen(t, "R-kept", 2)); err != nil {
		t.Fatal(err)
	}
	c1, d1 := outboxOnBus(t, bus, linkID)
	if c1 != c0 || d1 != d0+1 {
		t.Errorf("next decision past the window: %d commands, %d decisions; want %d and %d (the stored outbox found published, only the new decision)", c1, d1, c0, d0+1)
	}
	st, err := mapperOn(t, bus, now).get(ctx, linkID) // as the bucket holds it (the cache holds no published outbox)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Outbox) != 1 || st.Outbox[0].Type != contracts.TypeDecision {
		t.Errorf("the record's outbox is %d items; want the new decision's one, replacing the old", len(st.Outbox))
	}
}

// TestCrashBetweenStoreAndIndex stops the mapper right after it stored the link an outcome completed (the
// Opportunity sf-writer created for a referral) and before it made the Opportunity's index: the
// redelivered outcome, handled by a mapper that remembers nothing, makes the index, although its own
// decision names none (the link already holds the Opportunity id). Without it the Opportunity's later
// changes would find no link by its id.
func TestCrashBetweenStoreAndIndex(t *testing.T) {
	lost, bus := crashingPair(t)
	ctx := context.Background()
	now := time.Now().UTC()
	linkID := contracts.LinkIDFor(contracts.PartnerCenter, "R-index")
	if err := mapperOn(t, bus, now).HandleObserved(ctx, referralSeen(t, "R-index", 1)); err != nil {
		t.Fatal(err)
	}
	out, err := platform.NewEvent("outcome/R-index", contracts.TypeOpportunityWritten, contracts.StageSFWriter, linkID, contracts.Outcome{
		CommandID: "cmd/R-index", LinkID: linkID, System: contracts.Salesforce, Op: contracts.OpCreate, Status: "written",
		Created: true, OpportunityID: "006INDEX", At: now})
	if err != nil {
		t.Fatal(err)
	}
	first := mapperOn(t, lost, now)
	first.AfterStore = func(string) { lost.Abort() } // the process dies: its connection is gone
	if err := first.HandleOutcome(ctx, out); err == nil {
		t.Fatal("the handling cut before its index reported success (its trigger would be acked)")
	}
	kv, err := bus.KV(ctx, contracts.BucketLinks)
	if err != nil {
		t.Fatal(err)
	}
	key := contracts.IndexKey(contracts.Salesforce, "006INDEX")
	if _, err := kv.Get(ctx, key); err == nil {
		t.Fatal("the index exists before the redelivery; the crash came too late to test anything")
	}
	if st, err := mapperOn(t, bus, now).get(ctx, linkID); err != nil || st == nil || st.OpportunityID != "006INDEX" {
		t.Fatalf("link after the crash: %+v, %v; want it stored with the Opportunity", st, err)
	}
	if err := mapperOn(t, bus, now.Add(time.Second)).HandleOutcome(ctx, out); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil || string(e.Value()) != linkID {
		t.Fatalf("index %s after the redelivery: %v; want it to name %s", key, err, linkID)
	}
}
