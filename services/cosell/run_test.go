package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cosell-dev/cosell/services/internal/harness/otlpsink"
)

// TestRunTracesToTheStandardEndpoint starts `cosell run` (demo data on) with only OpenTelemetry's standard
// variables naming a collector and checks the stages' spans of the demo traffic arrive there under the
// service cosell-run, and that the run stops cleanly.
func TestRunTracesToTheStandardEndpoint(t *testing.T) {
	sink := otlpsink.Start()
	t.Cleanup(sink.Close)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncWriter
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"run", "--data", "", "--status", "127.0.0.1:0", "--pc-emulator", "127.0.0.1:0",
			"--sf-emulator", "127.0.0.1:0", "--webhook", "127.0.0.1:0", "--nats", "127.0.0.1:-1"}, &out, &errOut)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var handled []string
		for _, sp := range sink.Spans() {
			if strings.HasPrefix(sp.Name, "mapper handle ") && sp.Resource["service.name"] == "cosell-run" {
				handled = append(handled, sp.Name)
			}
		}
		if len(handled) > 0 {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("cosell run exited with %d before tracing anything\n%s\n%s", code, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mapper span from cosell run reached the collector within 60s (got %d spans)\n%s", len(sink.Spans()), errOut.String())
		}
		<-time.After(100 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("cosell run exited with %d after cancel\n%s", code, errOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("cosell run did not stop within 60s")
	}
}

type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
