package mapper

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// BenchmarkHandleObserved measures one decision on a referral's snapshot as the stage makes it, against an
// embedded server: the link's read, the decision, the link's compare-and-set with its outbox and the
// outbox's publish. Each of 100 referrals is seen first (a create) and then changed (an update), so the
// figure mixes both as a backlog does; run with -cpuprofile to see where a decision's CPU goes.
func BenchmarkHandleObserved(b *testing.B) {
	ns := bustest.Server(b)
	bus := bustest.Bus(b, ns, bustest.Config(8, 30*time.Second), contracts.StageMapper, nil)
	svc := mapperOn(b, bus, time.Now().UTC())
	ctx := context.Background()
	const links = 100
	events := make([]platform.Event, 0, b.N)
	for i := range b.N {
		events = append(events, referralSeen(b, fmt.Sprintf("R-bench-%03d", i%links), 1+i/links))
	}
	b.ResetTimer()
	for _, e := range events {
		if err := svc.HandleObserved(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBacklog measures the mapper stage's loop on a backlog: 500 new referrals' snapshots are stored
// before it starts, then it runs as the stage does (its consumer loop, COSELL_MAPPER_CONCURRENCY's default)
// until every referral's create command is stored. It reports referrals/s (the first decision's start to
// the last command stored) and the decision's time per
// referral, p50 and p99, from the handler's start to the command stored (the stream's time), the part of
// the bench's "fetched by the mapper → command stored" hop the mapper's own round trips make.
func BenchmarkBacklog(b *testing.B) {
	const backlog = 500
	for range b.N {
		ns := bustest.Server(b)
		bus := bustest.Bus(b, ns, bustest.Config(8, 30*time.Second), contracts.StageMapper, nil)
		svc := mapperOn(b, bus, time.Now().UTC())
		svc.Consume.Concurrency = stageDefault(b, "Concurrent")
		ctx, cancel := context.WithCancel(context.Background())
		for i := range backlog {
			e := referralSeen(b, fmt.Sprintf("R-backlog-%03d", i), 1)
			if _, err := bus.Publish(ctx, contracts.Subject(contracts.SubjectReferralObserved, e.Subject()), e); err != nil {
				b.Fatal(err)
			}
		}
		var mu sync.Mutex
		began := map[string]time.Time{}
		handle := svc.HandleObserved
		done := make(chan error, 1)
		go func() {
			done <- bus.Consume(ctx, contracts.ConsumerMapperObserved, func(ctx context.Context, e platform.Event) error {
				mu.Lock()
				began[contracts.LinkIDFor(contracts.PartnerCenter, e.Subject())] = time.Now()
				mu.Unlock()
				return handle(ctx, e)
			}, svc.Consume)
		}()
		testkit.Eventually(b, 2*time.Minute, "every create command stored", func() (bool, string) {
			n := bustest.Count(b, bus, contracts.StreamRequested, contracts.SubjectOpportunityRequested+".>")
			return n >= backlog, fmt.Sprintf("%d of %d", n, backlog)
		})
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		var took []time.Duration
		var first, last time.Time
		err := bus.Read(context.Background(), contracts.StreamRequested, func(m platform.Stored) error {
			mu.Lock()
			defer mu.Unlock()
			at := began[lastToken(m.Subject)]
			if first.IsZero() || at.Before(first) {
				first = at
			}
			last = m.Time
			took = append(took, m.Time.Sub(at))
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		slices.Sort(took)
		b.ReportMetric(float64(backlog)/last.Sub(first).Seconds(), "referrals/s")
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-p50")
		b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "ms-p99")
	}
}

// stageDefault is the default of StageConfig's integer setting field, as the stage runs without env.
func stageDefault(t testing.TB, field string) int {
	f, ok := reflect.TypeFor[StageConfig]().FieldByName(field)
	if !ok {
		t.Fatalf("StageConfig has no field %s", field)
	}
	n, err := strconv.Atoi(f.Tag.Get("default"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
