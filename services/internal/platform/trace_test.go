package platform

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// TestTraceFollowsTheEvent publishes inside a span and checks that the consumer's handler runs in the same
// trace, carried by the traceparent CloudEvent extension through the real server, and that the spans of
// both ends are recorded as producer and consumer of that trace.
func TestTraceFollowsTheEvent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })

	ns := startServer(t, "")
	b := newTestBus(t, ns, testBusConfig(), contracts.StageMapper, nil)
	ctx, root := tp.Tracer("test").Start(context.Background(), "ingest")
	publishCommand(t, b, "traced")
	e, err := NewEvent("cmd/traced-2", contracts.TypeReferralRequested, contracts.StageMapper, "traced-2",
		contracts.ReferralCommand{LinkID: "sf-traced-2", Op: contracts.OpCreate, OpportunityID: "traced-2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, contracts.Subject(contracts.SubjectReferralRequested, "traced-2"), e); err != nil {
		t.Fatal(err)
	}
	root.End()

	var mu sync.Mutex
	got := map[string]trace.SpanContext{}
	parents := map[string]string{}
	runConsume(t, b, writerSpec(t), func(ctx context.Context, e Event) error {
		mu.Lock()
		defer mu.Unlock()
		got[e.ID()] = trace.SpanContextFromContext(ctx)
		tp, _ := e.Extensions()[ExtTraceParent].(string)
		parents[e.ID()] = tp
		return nil
	}, fastOpts())
	testkit.EventuallyNil(t, 10*time.Second, "condition", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < 2 {
			return errorf("%d handled", len(got))
		}
		return nil
	})
	mu.Lock()
	if sc := got["cmd/traced-2"]; sc.TraceID() != root.SpanContext().TraceID() {
		t.Errorf("handler trace %s, want the publisher's %s (traceparent %q)", sc.TraceID(), root.SpanContext().TraceID(), parents["cmd/traced-2"])
	}
	if parents["cmd/traced-2"] == "" {
		t.Error("no traceparent extension on the delivered event")
	}
	if sc := got["cmd/traced"]; sc.TraceID() == root.SpanContext().TraceID() {
		t.Error("an event published outside the span joined its trace")
	}
	mu.Unlock()
	testkit.EventuallyNil(t, 10*time.Second, "condition", func() error {
		kinds := map[trace.SpanKind]int{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == root.SpanContext().TraceID() {
				kinds[s.SpanKind()]++
			}
		}
		if kinds[trace.SpanKindProducer] != 1 || kinds[trace.SpanKindConsumer] != 1 {
			return errorf("spans in the trace by kind: %v; want one producer and one consumer", kinds)
		}
		return nil
	})
}
