package platform

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// TraceEnv lists the OpenTelemetry variables tracing reads, for every stage's --help. They follow the
// OpenTelemetry specification and the SDK reads them itself (cosell picks the exporter as contrib's autoexport does, the OTLP
// exporters read their endpoint, headers, TLS and timeouts, the tracer provider its sampler and batching,
// resource.WithFromEnv the resource); cosell parses none of them except OTEL_SDK_DISABLED, which the Go SDK
// does not implement, and adds one default: with no exporter and no endpoint named, nothing is exported.
var TraceEnv = []string{
	"OTEL_SDK_DISABLED            true turns tracing off whatever else is set",
	"OTEL_TRACES_EXPORTER         otlp, console (spans as JSON on stdout) or none; default otlp when an OTLP endpoint is set, else none",
	"OTEL_EXPORTER_OTLP_ENDPOINT  collector base URL, e.g. http://otel-collector:4318 (http:// sends without TLS); spans go to <URL>/v1/traces",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  full URL for spans, used as is (wins over OTEL_EXPORTER_OTLP_ENDPOINT)",
	"OTEL_EXPORTER_OTLP_PROTOCOL  http/protobuf (default) or grpc; OTEL_EXPORTER_OTLP_TRACES_PROTOCOL for spans only",
	"OTEL_EXPORTER_OTLP_HEADERS   key=value,... sent with every export (e.g. an API key); _TRACES_HEADERS for spans only",
	"OTEL_EXPORTER_OTLP_INSECURE  true: no TLS for an endpoint without a scheme; also _CERTIFICATE, _CLIENT_CERTIFICATE, _CLIENT_KEY, _TIMEOUT, _COMPRESSION",
	"OTEL_TRACES_SAMPLER          default parentbased_always_on; traceidratio or parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG (e.g. 0.1)",
	"OTEL_SERVICE_NAME            default cosell-<stage>",
	"OTEL_RESOURCE_ATTRIBUTES     key=value,... added to every span's resource (e.g. deployment.environment.name=prod)",
	"OTEL_BSP_SCHEDULE_DELAY      and OTEL_BSP_MAX_QUEUE_SIZE, _MAX_EXPORT_BATCH_SIZE, _EXPORT_TIMEOUT: the batch span processor",
}

const tracerName = "github.com/cosell-dev/cosell/services/internal/platform"

var traceContext = propagation.TraceContext{}

// SetupTracing installs the global tracer provider for service as the OpenTelemetry environment variables
// say (TraceEnv) and returns its shutdown, which flushes the spans still queued. With tracing off it installs
// nothing and spans cost next to nothing; the traceparent extension is carried from event to event either
// way, so turning it on later needs no migration.
func SetupTracing(ctx context.Context, service string) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(traceContext)
	off := func(context.Context) error { return nil }
	if disabled, _ := strconv.ParseBool(os.Getenv("OTEL_SDK_DISABLED")); disabled {
		return off, nil
	}
	// The spec's default exporter is otlp; a stage with no collector named would then retry localhost:4318
	// forever, so cosell exports only when an exporter or an endpoint is named.
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" &&
		os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return off, nil
	}
	exp, err := spanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry trace exporter (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*): %w", err)
	}
	if exp == nil {
		return off, nil
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the defaults.
	res, err := sdkresource.New(ctx,
		sdkresource.WithTelemetrySDK(),
		sdkresource.WithAttributes(semconv.ServiceName("cosell-"+service), attribute.String("cosell.stage", service)),
		sdkresource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	// No sampler option: the provider reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG itself.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// spanExporter picks the exporter OTEL_TRACES_EXPORTER names as contrib's autoexport.NewSpanExporter does
// (otlp, the default, over OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf,
// the default, or grpc; console; none = nil), without autoexport's import of every metrics and logs exporter
// and their protobuf registrations (2 MB of each stage's binary). The exporters read the rest themselves.
func spanExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	switch name := os.Getenv("OTEL_TRACES_EXPORTER"); name {
	case "", "otlp":
		proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if proto == "" {
			proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		switch proto {
		case "", "http/protobuf":
			return otlptracehttp.New(ctx)
		case "grpc":
			return otlptracegrpc.New(ctx)
		default:
			return nil, fmt.Errorf("OTLP protocol %q: want grpc or http/protobuf", proto)
		}
	case "console":
		return stdouttrace.New()
	case "none":
		return nil, nil
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", name)
	}
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
