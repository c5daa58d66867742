package platform

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is the test's OTLP/HTTP collector: it accepts POST /v1/traces as protobuf, as the
// OpenTelemetry Collector's otlphttp receiver does, and keeps what it got.
type otlpReceiver struct {
	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
	headers  []http.Header
	paths    []string
}

func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a POST of application/x-protobuf", http.StatusBadRequest)
			return
		}
		var msg coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.requests = append(r.requests, &msg)
		r.headers = append(r.headers, req.Header.Clone())
		r.paths = append(r.paths, req.URL.Path)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return r, srv.URL
}

// spans returns, for every span received, its name and its resource's attributes.
func (r *otlpReceiver) spans() map[string]map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]map[string]string{}
	for _, req := range r.requests {
		for _, rs := range req.ResourceSpans {
			attrs := map[string]string{}
			for _, kv := range rs.Resource.GetAttributes() {
				attrs[kv.Key] = kv.Value.GetStringValue()
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					out[s.Name] = attrs
				}
			}
		}
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

	attrs, ok := rcv.spans()["decide one referral"]
	if !ok {
		t.Fatalf("the collector got no span named %q (got %v)", "decide one referral", rcv.spans())
	}
	for k, want := range map[string]string{"service.name": "cosell-mapper-blue", "deployment.environment.name": "test",
		"k8s.namespace.name": "cosell", "cosell.stage": "mapper", "telemetry.sdk.language": "go"} {
		if attrs[k] != want {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, attrs[k], want, attrs)
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.paths[0] != "/v1/traces" || rcv.headers[0].Get("X-Api-Key") != "test-key" {
		t.Errorf("export went to %s with x-api-key %q; want /v1/traces and the header from OTEL_EXPORTER_OTLP_HEADERS",
			rcv.paths[0], rcv.headers[0].Get("X-Api-Key"))
	}
}

// TestTracesEndpointIsUsedAsIs checks the per-signal variable wins and its path is kept, as the spec says.
func TestTracesEndpointIsUsedAsIs(t *testing.T) {
	clearOTelEnv(t)
	rcv, url := startOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url+"/custom/traces")
	emitSpan(t, "per-signal")
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.paths) == 0 || rcv.paths[0] != "/custom/traces" {
		t.Fatalf("exports went to %v, want /custom/traces", rcv.paths)
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
			if got := rcv.spans(); len(got) != 0 {
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
