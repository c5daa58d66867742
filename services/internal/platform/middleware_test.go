package platform

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

func TestChainAppliesEachMiddlewareOnceInOrder(t *testing.T) {
	t.Parallel()
	var calls []string
	mw := func(name string) middleware {
		return func(next step) step {
			return func(ctx context.Context, ds []*delivery) {
				calls = append(calls, name+" in")
				next(ctx, ds)
				calls = append(calls, name+" out")
			}
		}
	}
	h := chain(func(context.Context, []*delivery) { calls = append(calls, "handler") }, mw("a"), mw("b"), mw("c"))
	h(context.Background(), nil)
	want := []string{"a in", "b in", "c in", "handler", "c out", "b out", "a out"}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
}

func TestConsumeRecoversFromHandlerPanics(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, m)
	spec := writerSpec(t)
	publishCommand(t, b, "boom")
	var calls atomic.Int32
	runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		if calls.Add(1) == 1 {
			panic("nil map in handler")
		}
		return nil
	}, fastOpts())
	expectLag(t, b, spec, 0, 0)
	if calls.Load() != 2 {
		t.Errorf("handler called %d times, want a retry after the panic and then success", calls.Load())
	}
	for outcome, want := range map[string]float64{OutcomeRetry: 1, OutcomeAck: 1, OutcomeDeadLetter: 0} {
		if got := counter(t, m.Handled.WithLabelValues(testStage, spec.Durable, outcome)); got != want {
			t.Errorf("%s counter = %v, want %v", outcome, got, want)
		}
	}
}

func TestConsumeBatchRecoversFromHandlerPanics(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, m)
	spec := writerSpec(t)
	publishCommand(t, b, "p1")
	publishCommand(t, b, "p2")
	var calls atomic.Int32
	opts := fastOpts()
	opts.Batch = 10
	runConsumeBatch(t, b, spec, func(ctx context.Context, events []Event) []error {
		if calls.Add(1) == 1 {
			panic("index out of range")
		}
		return make([]error, len(events))
	}, opts)
	expectLag(t, b, spec, 0, 0)
	if got := counter(t, m.Handled.WithLabelValues(testStage, spec.Durable, OutcomeAck)); got != 2 {
		t.Errorf("ack counter = %v, want both events acked after the panic", got)
	}
	if got := counter(t, m.Handled.WithLabelValues(testStage, spec.Durable, OutcomeRetry)); got < 1 {
		t.Errorf("retry counter = %v, want the panicked batch retried", got)
	}
}

func TestConsumeBatchParksUndecodableMessagesAndHandlesTheRest(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, m)
	spec := writerSpec(t)
	publishCommand(t, b, "good1")
	junk := contracts.Subject(contracts.SubjectReferralRequested, "junk")
	if _, err := b.js.PublishMsg(context.Background(), &nats.Msg{Subject: junk, Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	publishCommand(t, b, "good2")
	var mu sync.Mutex
	var seen []string
	opts := fastOpts()
	opts.Batch = 10
	runConsumeBatch(t, b, spec, func(ctx context.Context, events []Event) []error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			seen = append(seen, e.Subject())
		}
		return make([]error, len(events))
	}, opts)
	_, dl := deadLetterFor(t, b, junk)
	if !strings.Contains(dl.Reason, "ce-specversion") || dl.Deliveries != 1 {
		t.Errorf("dead letter = %+v, want the decoder's reason on the first delivery", dl)
	}
	expectLag(t, b, spec, 0, 0)
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(seen)
	if !slices.Equal(seen, []string{"good1", "good2"}) {
		t.Errorf("handler saw %v, want the two decodable events only", seen)
	}
	if got := counter(t, m.Handled.WithLabelValues(testStage, spec.Durable, OutcomeDeadLetter)); got != 1 {
		t.Errorf("dead_letter counter = %v, want 1", got)
	}
}

// TestConsumeRetriesWhenTheDeadLetterCannotBeParked takes the dead-letter stream away: a permanent failure
// must then be retried, never terminated unparked, and be parked once the stream is back.
func TestConsumeRetriesWhenTheDeadLetterCannotBeParked(t *testing.T) {
	t.Parallel()
	cfg := testBusConfig()
	cfg.MaxDeliver = 100
	m := NewMetrics(nil)
	b := newTestBus(t, startServer(t, ""), cfg, testStage, m)
	spec := writerSpec(t)
	ctx := context.Background()
	if err := b.js.DeleteStream(ctx, contracts.StreamDeadLetter); err != nil {
		t.Fatal(err)
	}
	subject, _ := publishCommand(t, b, "unparkable")
	var calls atomic.Int32
	opts := fastOpts()
	opts.BackoffBase, opts.BackoffMax = 50*time.Millisecond, 50*time.Millisecond
	runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		calls.Add(1)
		return Permanent(errors.New("referral unparkable: invalid dealValue"))
	}, opts)
	testkit.EventuallyNil(t, 5*time.Second, "condition", func() error {
		if calls.Load() < 2 {
			return errorf("%d deliveries", calls.Load())
		}
		return nil
	})
	if got := counter(t, m.Handled.WithLabelValues(testStage, spec.Durable, OutcomeDeadLetter)); got != 0 {
		t.Fatalf("dead_letter counter = %v while the dead-letter stream is missing", got)
	}
	if err := b.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	_, dl := deadLetterFor(t, b, subject)
	if dl.Deliveries < 2 || !strings.Contains(dl.Reason, "invalid dealValue") {
		t.Errorf("dead letter = %+v, want the handler's reason after more than one delivery", dl)
	}
	expectLag(t, b, spec, 0, 0)
	if got := counter(t, m.DeadLetters.WithLabelValues(testStage, spec.Durable)); got != 1 {
		t.Errorf("dead letters = %v, want 1", got)
	}
}

// TestConsumeBatchTracesEachEvent checks that batched events get their consumer span too, each in the
// trace of the event's traceparent. Not parallel: it swaps the global tracer provider.
func TestConsumeBatchTracesEachEvent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })

	b := newTestBus(t, startServer(t, ""), testBusConfig(), contracts.StageMapper, nil)
	roots := map[string]trace.TraceID{}
	for _, id := range []string{"t1", "t2"} {
		ctx, root := tp.Tracer("test").Start(context.Background(), "ingest "+id)
		e, err := NewEvent("cmd/"+id, contracts.TypeReferralRequested, contracts.StageMapper, id,
			contracts.ReferralCommand{LinkID: "sf-" + id, Op: contracts.OpCreate, OpportunityID: id})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(ctx, contracts.Subject(contracts.SubjectReferralRequested, id), e); err != nil {
			t.Fatal(err)
		}
		root.End()
		roots[id] = root.SpanContext().TraceID()
	}
	spec := writerSpec(t)
	opts := fastOpts()
	opts.Batch = 10
	runConsumeBatch(t, b, spec, func(ctx context.Context, events []Event) []error {
		return make([]error, len(events))
	}, opts)
	expectLag(t, b, spec, 0, 0)
	testkit.EventuallyNil(t, 5*time.Second, "condition", func() error {
		for id, tid := range roots {
			n := 0
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID() == tid && s.SpanKind() == trace.SpanKindConsumer {
					n++
				}
			}
			if n != 1 {
				return errorf("%s: %d consumer spans in its trace, want 1", id, n)
			}
		}
		return nil
	})
}

// A handled delivery is acknowledged with a plain ack, no reply asked: the server answers nothing, so a
// delivery costs it one message less, and the handler's slot is not held for a round trip. (A lost ack is
// a redelivery after AckWait, which the handlers' idempotence makes harmless; Drain flushes it at exit.)
func TestConsumeAcksWithoutAskingForAReply(t *testing.T) {
	t.Parallel()
	ns := startServer(t, "")
	b := newTestBus(t, ns, testBusConfig(), testStage, NewMetrics(nil))
	spec := writerSpec(t)
	watch, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watch.Close)
	var mu sync.Mutex
	var replies []string
	sub, err := watch.Subscribe("$JS.ACK."+spec.Stream+"."+spec.Durable+".>", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		replies = append(replies, m.Reply)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, id := range []string{"o1", "o2", "o3"} {
		publishCommand(t, b, id)
	}
	cancel, done := runConsume(t, b, spec, func(context.Context, Event) error { return nil }, fastOpts())
	expectLag(t, b, spec, 0, 0)
	cancel()
	waitDone(t, done)
	testkit.Eventually(t, 10*time.Second, "three acks seen", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(replies) >= 3, strings.Join(replies, ",")
	})
	mu.Lock()
	defer mu.Unlock()
	for _, r := range replies {
		if r != "" {
			t.Errorf("an ack asked for a reply on %q: the server sends one message more per delivery", r)
		}
	}
}
