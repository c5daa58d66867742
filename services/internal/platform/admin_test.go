package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	a := NewAdmin("127.0.0.1:0", testLog(t, "admin"))
	a.Handle("GET /status", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "links: 0") }))
	addr, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	base := "http://" + addr

	if code, body := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.HasPrefix(body, "not ready: ") {
		t.Errorf("/readyz before SetReady = %d %q", code, body)
	}
	a.SetReady(true)
	if code, body := get(t, base+"/readyz"); code != 200 || strings.TrimSpace(body) != "ready" {
		t.Errorf("/readyz after SetReady = %d %q", code, body)
	}
	var broken atomic.Bool
	a.AddCheck("nats", func(context.Context) error {
		if broken.Load() {
			return errors.New("disconnected")
		}
		return nil
	})
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz with a passing check = %d", code)
	}
	broken.Store(true)
	if code, body := get(t, base+"/readyz"); code != 503 || strings.TrimSpace(body) != "not ready: nats: disconnected" {
		t.Errorf("/readyz with a failing check = %d %q", code, body)
	}
	broken.Store(false)
	a.SetNotReady("draining")
	if code, body := get(t, base+"/readyz"); code != 503 || strings.TrimSpace(body) != "not ready: draining" {
		t.Errorf("/readyz after SetNotReady = %d %q", code, body)
	}
	if code, body := get(t, base+"/status"); code != 200 || body != "links: 0" {
		t.Errorf("/status = %d %q", code, body)
	}

	// The runtime's counters appear once a bus records into the admin's metrics.
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, a.Metrics)
	subject, _ := publishCommand(t, b, "a1")
	spec := writerSpec(t)
	runConsume(t, b, spec, func(context.Context, Event) error { return Permanent(errors.New("nope")) }, fastOpts())
	deadLetterFor(t, b, subject)
	testkit.EventuallyNil(t, 5*time.Second, "condition", func() error {
		_, body := get(t, base+"/metrics")
		for _, want := range []string{
			`cosell_events_published_total{stage="pc-writer",type="cosell.pc.referral.requested.v1"} 1`,
			`cosell_events_published_total{stage="pc-writer",type="cosell.dlq.message.v1"} 1`,
			`cosell_events_handled_total{consumer="pc-writer",outcome="dead_letter",stage="pc-writer"} 1`,
			`cosell_dead_letters_total{consumer="pc-writer",stage="pc-writer"} 1`,
			`cosell_handler_duration_seconds_count{consumer="pc-writer",outcome="dead_letter",stage="pc-writer"} 1`,
			`go_goroutines`,
		} {
			if !strings.Contains(body, want) {
				return errorf("/metrics lacks %s", want)
			}
		}
		return nil
	})
}

func TestNewLoggerTagsStage(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := NewLogger(&buf, "warn", contracts.StageMapper)
	log.Info("hidden")
	log.Warn("shown", "event_id", "e1")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["stage"] != contracts.StageMapper || rec["msg"] != "shown" || rec["event_id"] != "e1" || rec["level"] != "WARN" {
		t.Fatalf("record = %v", rec)
	}
	if Logger(context.Background()) == nil {
		t.Fatal("Logger without one in ctx returned nil")
	}
	if Logger(WithLogger(context.Background(), log)) != log {
		t.Fatal("Logger did not return the context's logger")
	}
}
