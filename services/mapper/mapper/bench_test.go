package mapper

import (
	"context"
	"encoding/json"
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

// BenchmarkSteadyChange measures what the mapper does for one change of a linked referral at steady
// rate, the bench's 500/s path: the referral's snapshot (decided into an Opportunity update, its link
// stored with the command, the command published) and then sf-writer's outcome of that command (folded
// into the link). 100 referrals are created and linked first; each op changes one of them, in turn. Run
// with -benchmem and -memprofile: under the stage's soft memory limit, bytes allocated per decision are
// most of the collector's work.
func BenchmarkSteadyChange(b *testing.B) {
	ns := bustest.Server(b)
	bus := bustest.Bus(b, ns, bustest.Config(8, 30*time.Second), contracts.StageMapper, nil)
	svc := mapperOn(b, bus, time.Now().UTC())
	ctx := context.Background()
	var last OutboxItem // the Opportunity command the last decision stored
	svc.AfterStore = func(linkID string) {
		for _, it := range svc.Cache.get(linkID).Outbox {
			if it.Type == contracts.TypeOpportunityRequested {
				last = it
			}
		}
	}
	written := func(id string) platform.Event {
		b.Helper()
		var cmd contracts.OpportunityCommand
		if err := json.Unmarshal(last.Data, &cmd); err != nil {
			b.Fatal(err)
		}
		out := contracts.Outcome{CommandID: last.ID, LinkID: cmd.LinkID, System: contracts.Salesforce, Op: cmd.Op,
			Purpose: cmd.Purpose, Status: contracts.OutcomeWritten, ReferralID: cmd.ReferralID, OpportunityID: cmd.OpportunityID,
			Decision: cmd.Decision, CauseVersion: cmd.CauseVersion, AuditSent: cmd.AuditSent, At: time.Now().UTC()}
		if cmd.Op == contracts.OpCreate {
			out.Created, out.OpportunityID = true, "006"+id
		}
		e, err := platform.NewEvent(contracts.EventID("outcome", last.ID, out.Status), contracts.TypeOpportunityWritten,
			contracts.StageSFWriter, cmd.LinkID, out)
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	change := func(id string, n int) {
		b.Helper()
		last = OutboxItem{}
		if err := svc.HandleObserved(ctx, referralSeen(b, id, n)); err != nil {
			b.Fatal(err)
		}
		if last.ID == "" {
			b.Fatalf("referral %s version %d: no Opportunity command", id, n)
		}
	}
	const links = 100
	for i := range links {
		id := fmt.Sprintf("R-steady-%03d", i)
		change(id, 1)
		if err := svc.HandleOutcome(ctx, written(id)); err != nil {
			b.Fatal(err)
		}
	}
	events := make([]platform.Event, 0, b.N)
	for i := range b.N {
		events = append(events, referralSeen(b, fmt.Sprintf("R-steady-%03d", i%links), 2+i/links))
	}
	b.ResetTimer()
	for i, e := range events {
		last = OutboxItem{}
		if err := svc.HandleObserved(ctx, e); err != nil {
			b.Fatal(err)
		}
		if last.ID == "" {
			b.Fatalf("change %d: no Opportunity command", i)
		}
		b.StopTimer()
		out := written(e.Subject())
		b.StartTimer()
		if err := svc.HandleOutcome(ctx, out); err != nil {
			b.Fatal(err)
		}
	}
}
