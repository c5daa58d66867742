package pcapi

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// TestRateIsSharedByReplicas: three replicas of a stage on their own connections to one server pace at a
// third of its rate each (a replica of another stage is not counted); one that stops hands its share back at once, one that dies (no
// goodbye) after it is no longer heard, and a replica that starts takes its share from the others.
func TestRateIsSharedByReplicas(t *testing.T) {
	ns := bustest.Server(t)
	type replica struct {
		bus    *platform.Bus
		lim    *TenantLimiter
		share  *RateShare
		cancel context.CancelFunc
	}
	startAs := func(stage string) *replica {
		bus := bustest.Bus(t, ns, bustest.Config(5, 5*time.Second), stage, nil)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		lim := NewTenantLimiter(30, 6)
		s, err := NewRateShare(ctx, bus, lim, 30, 6, testkit.Log())
		if err != nil {
			t.Fatal(err)
		}
		s.renewEvery, s.aliveWithin = 100*time.Millisecond, time.Second
		go s.Run(ctx)
		return &replica{bus: bus, lim: lim, share: s, cancel: cancel}
	}
	start := func() *replica { return startAs(contracts.StagePCWriter) }
	paced := func(what string, want float64, rs ...*replica) {
		t.Helper()
		testkit.Eventually(t, 20*time.Second, what, func() (bool, string) {
			got := ""
			ok := true
			for _, r := range rs {
				got += fmt.Sprintf(" %.1f/s (%d replicas)", r.lim.Rate(), r.share.Replicas())
				ok = ok && r.lim.Rate() == want
			}
			return ok, got
		})
	}
	a, b, c := start(), start(), start()
	paced("three replicas pace at 10/s each", 10, a, b, c)
	// Another stage's replicas share their own rate, not this one's (pc-ingest's reads, pc-writer's writes).
	reader := startAs(contracts.StagePCIngest)
	paced("the one pc-ingest replica at its whole rate", 30, reader)
	paced("the pc-writer replicas still at a third each", 10, a, b, c)

	c.cancel() // an orderly stop withdraws its presence
	paced("two pace at 15/s each", 15, a, b)

	b.bus.Abort() // dies: no goodbye; its share comes back once it is no longer heard
	b.cancel()
	paced("the survivor paces at the whole rate", 30, a)

	d := start()
	paced("a new replica and the survivor pace at 15/s each", 15, a, d)
}
