package sfapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/clients/apicall/apicalltest"
)

// serve starts an emulated org and returns its My Domain URL.
func serve(t *testing.T, opts sfemu.Options) (*sfemu.Emulator, string) {
	t.Helper()
	e, myDomain, _ := emulated(t, opts)
	return e, myDomain
}

// config is the emulated org's client-credentials configuration; edit (may be nil) changes it.
func config(url string, edit func(*Config)) Config {
	cfg := Config{Domain: url, ClientID: sfemu.DefaultClientID, ClientSecret: sfemu.DefaultClientSecret, RequestTimeout: 10 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	return cfg
}

// result waits for a call started in the background (or the emulator's end of it), failing the test when it
// does not end well within the emulator's injected latency of an hour: only cancellation can have ended it.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the call did not return after its context ended")
		return nil
	}
}

func TestEachClientReportsToItsOwnObserver(t *testing.T) {
	t.Parallel()
	_, url := serve(t, sfemu.Options{DailyAPILimit: 500})
	var ra, rb apicalltest.Recorder
	a, err := New(t.Context(), config(url, func(c *Config) { c.Observer = ra.Observe }))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(t.Context(), config(url, func(c *Config) { c.Observer = rb.Observe }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Query(t.Context(), "SELECT Id FROM Account"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Insert(t.Context(), "Account", map[string]any{"Name": "B"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Insert(t.Context(), "Account", map[string]any{}); Code(err) != "REQUIRED_FIELD_MISSING" {
		t.Fatalf("insert without Name: %v", err)
	}
	if got := ra.Ops(); !slices.Equal(got, []string{"query"}) {
		t.Fatalf("client a's observer saw %v, want [query]", got)
	}
	if got := rb.Ops(); !slices.Equal(got, []string{"insert", "insert"}) {
		t.Fatalf("client b's observer saw %v, want [insert insert]", got)
	}
	// go-salesforce hands back no response with a refusal, so the allowance is the one the success before told.
	calls := rb.Calls()
	if last := calls[len(calls)-1]; last.Code != "REQUIRED_FIELD_MISSING" || last.Used == 0 || last.Limit != 500 {
		t.Fatalf("b's last call %+v, want REQUIRED_FIELD_MISSING with the allowance of 500 known", last)
	}
}

func TestCancelledContextStopsACall(t *testing.T) {
	t.Parallel()
	e, err := sfemu.New(sfemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	arrived, ended := make(chan struct{}, 1), make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/query") {
			e.ServeHTTP(w, r)
			return
		}
		arrived <- struct{}{}
		e.ServeHTTP(w, r)
		ended <- r.Context().Err()
	}))
	t.Cleanup(srv.Close)
	c, err := New(t.Context(), config(srv.URL, func(c *Config) { c.RequestTimeout = time.Hour }))
	if err != nil {
		t.Fatal(err)
	}
	e.SetLatency(time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.Query(ctx, "SELECT Id FROM Account")
		done <- err
	}()
	<-arrived
	cancel()
	err = result(t, done)
	if !errors.Is(err, context.Canceled) || !IsTransient(err) {
		t.Fatalf("cancelled query: %v, want a transient error wrapping context.Canceled", err)
	}
	// The request itself was called off (its connection closed), not merely given up on.
	if err := result(t, ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("the emulator's request context: %v, want cancelled", err)
	}
	if calls := c.Calls()["query"]; calls != 1 {
		t.Fatalf("query counted %d times", calls)
	}
}

func TestRequestTimeoutIsPerClient(t *testing.T) {
	t.Parallel()
	e, url := serve(t, sfemu.Options{})
	short, err := New(t.Context(), config(url, func(c *Config) { c.RequestTimeout = 2 * time.Second }))
	if err != nil {
		t.Fatal(err)
	}
	e.SetLatency(time.Hour)
	done := make(chan error, 1)
	go func() {
		_, err := short.Limits(t.Context())
		done <- err
	}()
	if err := result(t, done); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("limits past the 2s timeout: %v, want context.DeadlineExceeded", err)
	}
	if http.DefaultClient.Timeout != 0 {
		t.Fatalf("http.DefaultClient.Timeout = %v: a client changed process-global state", http.DefaultClient.Timeout)
	}
}

func TestLoginStopsWithItsContext(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release // a token endpoint that never answers, until the test ends
		http.Error(w, "gone", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := New(ctx, config(srv.URL, func(c *Config) { c.RequestTimeout = time.Hour }))
		done <- err
	}()
	<-arrived
	cancel()
	if err := result(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("login after cancel: %v, want context.Canceled", err)
	}
}
