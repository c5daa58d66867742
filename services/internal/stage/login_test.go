package stage

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

// warnings counts the warnings a logger is given.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		w.mu.Lock()
		w.msgs = append(w.msgs, r.Message)
		w.mu.Unlock()
	}
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }
func (w *warnings) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.msgs)
}

// A stage (re)started while the org's daily API allowance is spent waits it out instead of exiting: the
// login's token check is refused with REQUEST_LIMIT_EXCEEDED, tried again, and succeeds once the allowance
// is back (as `make chaos` does: it restarts sf-ingest during its spent-allowance fault). Not parallel: it
// shortens the package's retry wait.
func TestSFClientWaitsOutASpentAllowance(t *testing.T) {
	old := sfLoginRetry
	sfLoginRetry = 10 * time.Millisecond
	t.Cleanup(func() { sfLoginRetry = old })

	emu, domain := emutest.SalesforceServer(t, sfemu.Options{DailyAPILimit: 1000})
	emu.ExhaustDailyLimit()
	w := &warnings{}
	env := &Env{Log: slog.New(w), Clients: NewClientMetrics(prometheus.NewRegistry())}
	type result struct {
		c   *sfapi.Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := env.SFClient(t.Context(), emutest.SalesforceConfig(domain))
		done <- result{c, err}
	}()
	testkit.EventuallyTrue(t, 20*time.Second, "the login tried again twice", func() bool { return w.count() >= 2 })
	select {
	case r := <-done:
		t.Fatalf("SFClient returned while the allowance was spent: %v", r.err)
	default:
	}
	emu.ResetFaults()
	r := <-done
	if r.err != nil {
		t.Fatalf("login after the allowance came back: %v", r.err)
	}
	if _, err := r.c.Limits(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// A login the token endpoint refuses (a wrong secret) is not waited out: it returns at once, with the fix.
func TestSFClientReturnsARefusedLoginAtOnce(t *testing.T) {
	t.Parallel()
	_, domain := emutest.SalesforceServer(t, sfemu.Options{DailyAPILimit: 1000})
	cfg := emutest.SalesforceConfig(domain)
	cfg.ClientSecret = "not-the-secret"
	w := &warnings{}
	env := &Env{Log: slog.New(w), Clients: NewClientMetrics(prometheus.NewRegistry())}
	_, err := env.SFClient(t.Context(), cfg)
	var le *sfapi.LoginError
	if !errors.As(err, &le) {
		t.Fatalf("want a refused login, got %v", err)
	}
	if w.count() != 0 || strings.Contains(err.Error(), "gave up") {
		t.Fatalf("a refused login was retried: %d warnings, %v", w.count(), err)
	}
}
