package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
	"github.com/cosell-dev/cosell/services/internal/harness/otlpsink"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// TestRunTracesToTheStandardEndpoint starts `cosell run` (demo data on) with only OpenTelemetry's standard
// variables naming a collector and checks the stages' spans of the demo traffic arrive there under the
// service cosell-run, that every log line of every stage (at debug level) is JSON without a repeated key,
// that the banner names every address, that sf-ingest follows the emulated org's change events, and that
// the run stops cleanly.
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
	out, errOut, done := startRun(ctx, "--log-level", "debug")
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
	for _, want := range []string{"status page ", "status API ", "metrics ", "/metrics", "Partner Center emu ", "Salesforce emulator ",
		"login host http://", "Salesforce Pub/Sub ", "sf-ingest: follows its change events", "pc-ingest webhook ", "NATS ", "(user cosell, password ", "export COSELL_NATS_URL=nats://", "COSELL_SF_CLIENT_SECRET=", "COSELL_PC_AUTHORITY=http://"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the banner lacks %q:\n%s", want, out.String())
		}
	}
	// By default sf-ingest follows the emulated org's change events: its Subscribe stream is open.
	sfURL := ""
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "Salesforce" && f[1] == "emulator" {
			sfURL = f[2]
		}
	}
	testkit.Eventually(t, 30*time.Second, "sf-ingest's Change Data Capture subscription", func() (bool, string) {
		var counts map[string]int
		if err := fleet.GetJSON(ctx, sfURL+"/_emulator/counts", &counts); err != nil {
			return false, err.Error()
		}
		return counts["pubsub.subscribe"] > 0, fmt.Sprintf("counts %v", counts)
	})
	stopRun(t, cancel, done, errOut)
	lines, stages := 0, map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(errOut.String()), "\n") {
		lines++
		dup, stage, err := repeatedKey([]byte(line))
		if err != nil {
			t.Errorf("a log line that is not JSON: %v\n%s", err, line)
			continue
		}
		if dup != "" {
			t.Errorf("log line repeats the key %q:\n%s", dup, line)
		}
		stages[stage] = true
	}
	for _, st := range contracts.Stages() {
		if !stages[st] {
			t.Errorf("no log line of %s among %d lines", st, lines)
		}
	}
}

// repeatedKey returns a key that appears twice in one JSON object of line (at any depth), and the line's
// stage attribute.
func repeatedKey(line []byte) (dup, stage string, err error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	var object func(depth int) error
	var value func(depth int) error
	value = func(depth int) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			return object(depth + 1)
		case json.Delim('['):
			for dec.More() {
				if err := value(depth + 1); err != nil {
					return err
				}
			}
			_, err := dec.Token()
			return err
		}
		return nil
	}
	object = func(depth int) error {
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key := tok.(string)
			if seen[key] && dup == "" {
				dup = key
			}
			seen[key] = true
			if depth == 1 && key == "stage" {
				var v any
				if err := dec.Decode(&v); err != nil {
					return err
				}
				stage = fmt.Sprint(v)
				continue
			}
			if err := value(depth); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	}
	if err := value(0); err != nil {
		return "", "", err
	}
	return dup, stage, nil
}

// freePorts are the flags that put every listener of `cosell run` on a free loopback port, with no data dir.
var freePorts = []string{"--data", "", "--status", "127.0.0.1:0", "--pc-emulator", "127.0.0.1:0",
	"--sf-emulator", "127.0.0.1:0", "--sf-pubsub", "127.0.0.1:0", "--webhook", "127.0.0.1:0", "--nats", "127.0.0.1:-1"}

// startRun starts `cosell run` with args on free ports in the background; its exit code arrives on done.
func startRun(ctx context.Context, args ...string) (out, errOut *syncWriter, done chan int) {
	out, errOut, done = &syncWriter{}, &syncWriter{}, make(chan int, 1)
	go func() {
		done <- Run(ctx, append(append([]string{"run"}, freePorts...), args...), out, errOut)
	}()
	return out, errOut, done
}

// stopRun cancels the run and fails t unless it exits 0 within 60 s.
func stopRun(t *testing.T, cancel context.CancelFunc, done chan int, errOut *syncWriter) {
	t.Helper()
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

func TestRepeatedKey(t *testing.T) {
	t.Parallel()
	for line, want := range map[string]string{
		`{"stage":"mapper","a":1,"b":[{"x":1}]}`:        "",
		`{"stage":"mapper","a":1,"a":2}`:                "a",
		`{"stage":"mapper","g":{"c":1,"d":{},"c":"2"}}`: "c",
		`{"stage":"mapper","l":[{"x":1,"x":1}]}`:        "x",
	} {
		dup, stage, err := repeatedKey([]byte(line))
		if err != nil || dup != want || stage != "mapper" {
			t.Errorf("%s: %q %q %v, want %q", line, dup, stage, err, want)
		}
	}
}
