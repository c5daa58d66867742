package platform

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cosell-dev/cosell/services/internal/harness/otlpsink"
)

// startOTLPReceiver starts the test's collector and stops it at the end of the test.
func startOTLPReceiver(t *testing.T) (*otlpsink.Sink, string) {
	t.Helper()
	s := otlpsink.Start()
	t.Cleanup(s.Close)
	return s, s.URL
}

// spansByName returns, for every span received, its resource's attributes.
func spansByName(s *otlpsink.Sink) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, sp := range s.Spans() {
		out[sp.Name] = sp.Resource
	}
	return out
}

// clearOTelEnv unsets every OpenTelemetry variable the host may have set, so only the test's count.
func clearOTelEnv(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_INSECURE",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
	// Leave a no-op provider behind, not this test's SDK one (re-installing the global delegate warns).
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
}

// emitSpan sets tracing up from the environment, records one span and shuts the provider down, which
// flushes it: after this returns, whatever was going to reach the collector has reached it.
func emitSpan(t *testing.T, name string) {
	t.Helper()
	shutdown, err := SetupTracing(context.Background(), "mapper")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tracer().Start(context.Background(), name)
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown (flush to the collector): %v", err)
	}
}

// TestSpansReachTheCollectorNamedByTheStandardVariables names the collector, a header, the service name,
// a resource attribute and the sampler only through OpenTelemetry's own variables, and checks the span
// arrives at the per-signal path with all of them.
func TestSpansReachTheCollectorNamedByTheStandardVariables(t *testing.T) {
	clearOTelEnv(t)
	rcv, url := startOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=test-key")
	t.Setenv("OTEL_SERVICE_NAME", "cosell-mapper-blue")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,k8s.namespace.name=cosell")
	t.Setenv("OTEL_TRACES_SAMPLER", "traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "1")
	emitSpan(t, "decide one referral")

	attrs, ok := spansByName(rcv)["decide one referral"]
	if !ok {
		t.Fatalf("the collector got no span named %q (got %v)", "decide one referral", spansByName(rcv))
	}
	for k, want := range map[string]string{"service.name": "cosell-mapper-blue", "deployment.environment.name": "test",
		"k8s.namespace.name": "cosell", "cosell.stage": "mapper", "telemetry.sdk.language": "go"} {
		if attrs[k] != want {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, attrs[k], want, attrs)
		}
	}
	if e := rcv.Exports()[0]; e.Path != "/v1/traces" || e.Header.Get("X-Api-Key") != "test-key" {
		t.Errorf("export went to %s with x-api-key %q; want /v1/traces and the header from OTEL_EXPORTER_OTLP_HEADERS",
			e.Path, e.Header.Get("X-Api-Key"))
	}
}

// TestTracesEndpointIsUsedAsIs checks the per-signal variable wins and its path is kept, as the spec says.
func TestTracesEndpointIsUsedAsIs(t *testing.T) {
	clearOTelEnv(t)
	rcv, url := startOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url+"/custom/traces")
	emitSpan(t, "per-signal")
	if e := rcv.Exports(); len(e) == 0 || e[0].Path != "/custom/traces" {
		t.Fatalf("exports %+v, want one to /custom/traces", e)
	}
}

// TestTracingOffExportsNothing covers the ways tracing is off: the SDK disabled, the none exporter, a
// sampler that records nothing, and (cosell's default) no exporter or endpoint named at all.
func TestTracingOffExportsNothing(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"OTEL_SDK_DISABLED":         {"OTEL_SDK_DISABLED": "true"},
		"OTEL_TRACES_EXPORTER=none": {"OTEL_TRACES_EXPORTER": "none"},
		"always_off sampler":        {"OTEL_TRACES_SAMPLER": "always_off"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTelEnv(t)
			rcv, url := startOTLPReceiver(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
			for k, v := range env {
				t.Setenv(k, v)
			}
			emitSpan(t, "unwanted")
			if got := spansByName(rcv); len(got) != 0 {
				t.Errorf("spans exported with %v: %v", env, got)
			}
		})
	}
	t.Run("nothing named", func(t *testing.T) {
		clearOTelEnv(t)
		before := noop.NewTracerProvider()
		otel.SetTracerProvider(before)
		shutdown, err := SetupTracing(context.Background(), "mapper")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = shutdown(context.Background()) }()
		if otel.GetTracerProvider() != before {
			t.Error("a tracer provider was installed with no exporter or endpoint named")
		}
	})
	t.Run("unknown protocol is an error", func(t *testing.T) {
		clearOTelEnv(t)
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml")
		if _, err := SetupTracing(context.Background(), "mapper"); err == nil {
			t.Error("OTEL_EXPORTER_OTLP_PROTOCOL=http/xml accepted")
		}
	})
}

// OTEL_TRACES_EXPORTER and the OTLP protocol pick the exporter as contrib's autoexport does: otlp (the
// default) over http/protobuf (the default) or grpc, console, none; anything else is refused, naming it.
func TestTraceExporterIsPickedAsAutoexportDoes(t *testing.T) {
	for _, c := range []struct {
		exporter, proto, tracesProto string
		want                         string // the exporter's type, "" = none, "error: ..." = refused
	}{
		{"", "", "", "*otlptrace.Exporter"},
		{"otlp", "grpc", "", "*otlptrace.Exporter"},
		{"otlp", "grpc", "http/protobuf", "*otlptrace.Exporter"},
		{"console", "", "", "*stdouttrace.Exporter"},
		{"none", "", "", ""},
		{"zipkin", "", "", "error: OTEL_TRACES_EXPORTER=\"zipkin\""},
		{"otlp", "http/json", "", "error: OTLP protocol \"http/json\""},
		{"otlp", "grpc", "thrift", "error: OTLP protocol \"thrift\""},
	} {
		clearOTelEnv(t)
		t.Setenv("OTEL_TRACES_EXPORTER", c.exporter)
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", c.proto)
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", c.tracesProto)
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
		exp, err := spanExporter(context.Background())
		got := ""
		switch {
		case err != nil:
			got = "error: " + err.Error()
		case exp != nil:
			got = fmt.Sprintf("%T", exp)
			_ = exp.Shutdown(context.Background())
		}
		if !strings.HasPrefix(got, c.want) || (c.want == "" && got != "") {
			t.Errorf("OTEL_TRACES_EXPORTER=%q protocol %q traces protocol %q: %s, want %s", c.exporter, c.proto, c.tracesProto, got, c.want)
		}
	}
}
