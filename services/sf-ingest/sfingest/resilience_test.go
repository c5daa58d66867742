package sfingest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/platform/natsembed"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// amounts waits until the newest snapshot of every Opportunity in want holds its Amount, then checks that
// no version of any Opportunity was published twice (nothing repeated).
func (f *cdcFixture) amounts(t *testing.T, what string, want map[string]float64) {
	t.Helper()
	testkit.EventuallyTrue(t, 30*time.Second, what, func() bool {
		s, err := f.readSnapshots()
		if err != nil {
			return false // NATS still away
		}
		for id, amount := range want {
			list := s[id]
			if len(list) == 0 || list[len(list)-1].Opportunity.Fields[sf.FieldAmount] != amount {
				return false
			}
		}
		return true
	})
	f.uniqueSnapshots(t)
}

// opportunities creates n synced Opportunities named prefix 0..n-1 and waits for their snapshots; it
// returns their ids and the Amount each holds (the fixture's).
func (f *cdcFixture) opportunities(t *testing.T, prefix string, n int) ([]string, map[string]float64) {
	t.Helper()
	want := map[string]float64{}
	var opps []string
	for i := range n {
		id := f.syncedOpportunity(t, fmt.Sprintf("%s %d", prefix, i))
		opps = append(opps, id)
		want[id] = 1000 // the fixture's Amount
	}
	f.amounts(t, fmt.Sprintf("%d snapshots", n), want)
	return opps, want
}

// TestCDCInvalidReplayIDIsHealedByREST: a stored replay id the org does not know (not one past retention:
// another org's, or damaged) is refused by Salesforce; sf-ingest catches up by REST, follows from LATEST
// and stores a valid replay id in its place.
func TestCDCInvalidReplayIDIsHealedByREST(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	missed := f.syncedOpportunity(t, "Missed")
	bad := []byte("not a replay id of this org")
	if _, err := f.in.Checkpoints.Put(t.Context(), ReplayKey(sfemu.AllChangeEvents), bad); err != nil {
		t.Fatal(err)
	}
	c := f.subscriber(t)
	run(t, c)
	f.waitSnapshot(t, missed, "the REST catch-up", func(o contracts.OpportunityObserved) bool { return o.Via == "poll" })
	testkit.EventuallyTrue(t, 15*time.Second, "the stream open from LATEST", func() bool { return c.Stats().CatchUps == 2 })
	after := f.syncedOpportunity(t, "After")
	f.waitSnapshot(t, after, "a change after the catch-up", func(o contracts.OpportunityObserved) bool { return o.Via == "cdc" })
	e, err := f.in.Checkpoints.Get(t.Context(), ReplayKey(sfemu.AllChangeEvents))
	if err != nil || string(e.Value()) == string(bad) {
		t.Fatalf("stored replay id after the heal: %v %q", err, e.Value())
	}
}

// TestCDCLeaderChangeResumesFromTheStoredReplayID: of three replicas one subscribes; when it stops (a
// rolling update: its lease released), changes made meanwhile reach the next leader from the replay id
// the first one stored: nothing lost, nothing published twice, no REST catch-up, one more Subscribe.
func TestCDCLeaderChangeResumesFromTheStoredReplayID(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	type replica struct {
		c      *CDC
		cancel context.CancelFunc
	}
	var replicas []replica
	var wg sync.WaitGroup
	for range 3 {
		c := f.subscriber(t)
		ctx, cancel := context.WithCancel(context.Background())
		replicas = append(replicas, replica{c, cancel})
		wg.Add(1)
		go func() { defer wg.Done(); _ = f.bus.RunAsLeader(ctx, "sf-ingest", c.Run) }()
	}
	t.Cleanup(func() {
		for _, r := range replicas {
			r.cancel()
		}
		wg.Wait()
	})
	f.waitStored(t)
	opps, want := f.opportunities(t, "Leader", 3)
	leader := -1
	for i, r := range replicas {
		if r.c.Stats().Events > 0 {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no replica handled the events")
	}
	replicas[leader].cancel()
	// Mid-stream, while no replica subscribes: changes and a create.
	for i, id := range opps {
		if err := f.emu.Update("Opportunity", id, map[string]any{"Amount": 2000 + i}); err != nil {
			t.Fatal(err)
		}
		want[id] = float64(2000 + i)
	}
	want[f.syncedOpportunity(t, "Leader new")] = 1000
	f.amounts(t, "the changes made during the leader change", want)
	for i, r := range replicas {
		if i != leader && r.c.Stats().Events > 0 && r.c.Stats().CatchUps != 0 {
			t.Fatalf("the new leader made %d REST catch-ups, want none: it resumes from the stored replay id", r.c.Stats().CatchUps)
		}
	}
	if n := f.emu.Counts()["pubsub.subscribe"]; n != 2 {
		t.Fatalf("%d Subscribe streams, want 2 (the first leader's, the next one's)", n)
	}
}

// TestCDCResumesAfterANATSOutage: the nats-server goes away (sf-ingest cannot publish or store a replay
// id) while Opportunities change, and comes back on the same store and port; the subscription resumes
// from the stored replay id: every change arrives, none twice, no REST catch-up.
func TestCDCResumesAfterANATSOutage(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	dir := t.TempDir()
	ns, err := natsembed.Start(dir, "127.0.0.1:-1", testkit.Log())
	if err != nil {
		t.Fatal(err)
	}
	addr := ns.Addr().(*net.TCPAddr)
	var mu sync.Mutex
	t.Cleanup(func() { mu.Lock(); defer mu.Unlock(); ns.Shutdown(); ns.WaitForShutdown() })
	cfg := bustest.Config(3, 5*time.Second)
	cfg.URL = ns.ClientURL()
	bus, err := platform.Connect(t.Context(), cfg, contracts.StageSFIngest, testkit.Log(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	if err := bus.Provision(t.Context()); err != nil {
		t.Fatal(err)
	}
	cps, err := bus.KV(t.Context(), contracts.BucketCheckpoints)
	if err != nil {
		t.Fatal(err)
	}
	f.bus, f.in.Bus, f.in.Checkpoints = bus, bus, cps // over TCP, so the connection sees the server go

	c := f.subscriber(t)
	run(t, c)
	f.waitStored(t)
	opps, want := f.opportunities(t, "NATS", 3)
	catchUps := c.Stats().CatchUps // the first start's: no replay id stored yet

	mu.Lock()
	ns.Shutdown()
	ns.WaitForShutdown()
	for i, id := range opps {
		if err := f.emu.Update("Opportunity", id, map[string]any{"Amount": 3000 + i}); err != nil {
			t.Fatal(err)
		}
		want[id] = float64(3000 + i)
	}
	ns, err = natsembed.Start(dir, fmt.Sprintf("127.0.0.1:%d", addr.Port), testkit.Log())
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	f.amounts(t, "the changes made while NATS was away", want)
	if n := c.Stats().CatchUps; n != catchUps {
		t.Fatalf("%d REST catch-ups after the NATS outage, want none: it resumes from the stored replay id", n-catchUps)
	}
}
