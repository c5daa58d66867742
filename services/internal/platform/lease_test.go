package platform

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// TestRunAsLeaderRunsOnePoller starts three replicas of a poller: only one runs at a time; an orderly stop
// hands the lease over at once, and a replica that dies without releasing it is replaced once the lease
// expires.
func TestRunAsLeaderRunsOnePoller(t *testing.T) {
	ns := startServer(t, "")
	buses := []*Bus{
		newTestBus(t, ns, testBusConfig(), "sf-ingest", nil),
		newTestBus(t, ns, testBusConfig(), "sf-ingest", nil),
		newTestBus(t, ns, testBusConfig(), "sf-ingest", nil),
	}
	var running, most atomic.Int32
	var mu sync.Mutex
	leader := -1
	poller := func(i int) func(context.Context) error {
		return func(ctx context.Context) error {
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			mu.Lock()
			leader = i
			mu.Unlock()
			<-ctx.Done()
			running.Add(-1)
			return nil
		}
	}
	current := func() int { mu.Lock(); defer mu.Unlock(); return leader }
	stops := make([]context.CancelFunc, len(buses))
	done := make([]chan error, len(buses))
	for i, b := range buses {
		ctx, stop := context.WithCancel(context.Background())
		stops[i], done[i] = stop, make(chan error, 1)
		defer stop()
		go func() { done[i] <- b.RunAsLeader(ctx, "poller", poller(i)) }()
	}
	testkit.EventuallyNil(t, 10*time.Second, "condition", func() error {
		if running.Load() != 1 {
			return errorf("%d pollers running", running.Load())
		}
		return nil
	})
	kv, err := buses[0].KV(context.Background(), contracts.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), "poller")
	if err != nil {
		t.Fatal(err)
	}
	// Through a renewal the standbys stay standbys.
	testkit.EventuallyNil(t, 3*contracts.LeaseTTL, "condition", func() error {
		cur, err := kv.Get(context.Background(), "poller")
		if err != nil {
			return err
		}
		if cur.Revision() < e.Revision()+1 {
			return errorf("renewed %d times", cur.Revision()-e.Revision())
		}
		return nil
	})
	first := current()
	stops[first]()
	if err := <-done[first]; err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyNil(t, contracts.LeaseTTL, "condition", func() error {
		if c := current(); c == first || running.Load() != 1 {
			return errorf("leader %d, %d running", c, running.Load())
		}
		return nil
	})
	// The second leader dies without releasing: its connection is cut, as a killed pod's would be.
	second := current()
	buses[second].Abort()
	testkit.EventuallyNil(t, 3*contracts.LeaseTTL, "condition", func() error {
		if c := current(); c == second || c == first {
			return errorf("leader still %d", c)
		}
		return nil
	})
	if most.Load() > 1 {
		t.Fatalf("%d pollers ran at once", most.Load())
	}
}
