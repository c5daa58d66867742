package platform

import (
	"context"
	"fmt"
	"io"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// TraceConfig selects where OpenTelemetry spans go. Tracing is off unless an exporter is named: the
// traceparent extension is still carried from event to event, so turning it on later needs no migration.
type TraceConfig struct {
	Exporter string `env:"COSELL_TRACE_EXPORTER" default:"none" validate:"oneof=none|stdout|otlp" help:"none, stdout (spans as JSON on stderr) or otlp (OTLP/HTTP)"`
	// Endpoint is host:port of an OTLP/HTTP collector; empty takes OTEL_EXPORTER_OTLP_ENDPOINT or localhost:4318.
	Endpoint string `env:"COSELL_TRACE_OTLP_ENDPOINT" help:"OTLP/HTTP collector host:port (default OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4318)"`
	Insecure bool   `env:"COSELL_TRACE_OTLP_INSECURE" default:"false" help:"send OTLP over plain HTTP"`
	// SampleRatio is the share of new traces recorded (a child always follows its parent's decision).
	SampleRatio float64 `env:"COSELL_TRACE_SAMPLE_RATIO" default:"1"`
}

const tracerName = "github.com/cosell-dev/cosell/services/internal/platform"

var traceContext = propagation.TraceContext{}

// SetupTracing installs the global tracer provider for service as cfg says and returns its shutdown
// (which flushes spans). With Exporter "none" it installs nothing and spans cost next to nothing.
func SetupTracing(ctx context.Context, cfg TraceConfig, service string, stderr io.Writer) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(traceContext)
	var exp sdktrace.SpanExporter
	var err error
	switch cfg.Exporter {
	case "", "none":
		return func(context.Context) error { return nil }, nil
	case "stdout":
		if stderr == nil {
			stderr = os.Stderr
		}
		exp, err = stdouttrace.New(stdouttrace.WithWriter(stderr))
	case "otlp":
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpoint(cfg.Endpoint))
		}
		if cfg.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("COSELL_TRACE_EXPORTER %q: want none, stdout or otlp", cfg.Exporter)
	}
	if err != nil {
		return nil, fmt.Errorf("trace exporter %s: %w", cfg.Exporter, err)
	}
	ratio := cfg.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	res := sdkresource.NewSchemaless(semconv.ServiceName("cosell-"+service), attribute.String("cosell.stage", service))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// SetupTracingFromEnv reads TraceConfig from the environment and calls SetupTracing.
func SetupTracingFromEnv(ctx context.Context, service string, stderr io.Writer) (func(context.Context) error, error) {
	var cfg TraceConfig
	if err := LoadConfig(&cfg, nil); err != nil {
		return nil, err
	}
	return SetupTracing(ctx, cfg, service, stderr)
}

func tracer() trace.Tracer { return otel.Tracer(tracerName) }

// startHandleSpan starts the consumer span of one delivery, as a child of the span named by the event's
// traceparent extension, so one trace follows a change from ingest through mapper and writer.
func startHandleSpan(ctx context.Context, stage, consumer string, e Event) (context.Context, trace.Span) {
	carrier := propagation.MapCarrier{}
	if tp, ok := e.Extensions()[ExtTraceParent].(string); ok && tp != "" {
		carrier[ExtTraceParent] = tp
	}
	ctx = traceContext.Extract(ctx, carrier)
	return tracer().Start(ctx, stage+" handle "+e.Type(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.consumer.group.name", consumer),
			attribute.String("messaging.message.id", e.ID()),
			attribute.String("cloudevents.event_type", e.Type()),
			attribute.String("cloudevents.event_subject", e.Subject()),
		))
}

// endSpan records the handler's result on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// injectTrace starts a producer span under ctx's span and sets the event's traceparent extension to it,
// unless the event already carries one (a re-drive keeps its original trace).
func injectTrace(ctx context.Context, natsSubject string, e *Event) trace.Span {
	if tp, ok := e.Extensions()[ExtTraceParent].(string); ok && tp != "" {
		return nil
	}
	ctx, span := tracer().Start(ctx, "publish "+e.Type(), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.destination.name", natsSubject),
			attribute.String("messaging.message.id", e.ID())))
	carrier := propagation.MapCarrier{}
	traceContext.Inject(ctx, carrier)
	if tp := carrier[ExtTraceParent]; tp != "" {
		e.SetExtension(ExtTraceParent, tp)
	}
	return span
}

// TraceParent returns the W3C traceparent of the span in ctx, or "" when there is none.
func TraceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	traceContext.Inject(ctx, carrier)
	return carrier[ExtTraceParent]
}
