// Package deploytest proves the deployment's NATS side against the real services: the generated
// least-privilege permission set (deploy/nats/cosell-auth.conf) carries the whole pipeline with every
// stage under its own user and refuses everything else, and the pipeline loses nothing on R3 streams
// when a stream leader dies. It lives in the services module because it drives the real platform.
package deploytest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

const adminUser = "cosell-admin"

func passwordVar(user string) string {
	return "COSELL_NATS_PASSWORD_" + strings.ToUpper(strings.ReplaceAll(user, "-", "_"))
}

func password(user string) string { return "test-" + user + "-secret" }

// startAuthServer starts a nats-server whose accounts and users are the committed
// deploy/nats/cosell-auth.conf, with the passwords in the environment as the NATS pods get them.
func startAuthServer(t *testing.T) *server.Server {
	t.Helper()
	conf, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "cosell-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cosell-auth.conf"), conf, 0o600); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf("host: 127.0.0.1\nport: -1\nserver_name: auth-test\njetstream {\n  store_dir: %q\n}\ninclude cosell-auth.conf\n",
		filepath.Join(dir, "js"))
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range append(contracts.Stages(), adminUser) {
		t.Setenv(passwordVar(u), password(u))
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("the committed cosell-auth.conf does not load: %v", err)
	}
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns
}

// errorLog records every error-level log line, so a test can assert no permission was refused.
type errorLog struct {
	root  *errorLog
	attrs string
	mu    sync.Mutex
	lines []string
}

func (l *errorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message + l.attrs)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	root := l
	if l.root != nil {
		root = l.root
	}
	root.mu.Lock()
	root.lines = append(root.lines, b.String())
	root.mu.Unlock()
	return nil
}

func (l *errorLog) WithAttrs(as []slog.Attr) slog.Handler {
	root := l
	if l.root != nil {
		root = l.root
	}
	n := &errorLog{root: root, attrs: l.attrs}
	for _, a := range as {
		n.attrs += fmt.Sprintf(" %s=%v", a.Key, a.Value)
	}
	return n
}
func (l *errorLog) WithGroup(string) slog.Handler { return l }

func (l *errorLog) matching(sub string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.lines {
		if strings.Contains(strings.ToLower(s), strings.ToLower(sub)) {
			out = append(out, s)
		}
	}
	return out
}

// startStack runs the whole pipeline, each stage with the variables bus returns for it (its NATS server
// and user).
func startStack(t *testing.T, log *slog.Logger, bus func(stage string) map[string]string) *stack.Stack {
	t.Helper()
	s, err := stack.Start(context.Background(), stack.Options{
		DataDir: t.TempDir(),
		Log:     log,
		Vars: map[string]string{"COSELL_SF_POLL_INTERVAL": "200ms", "COSELL_PC_POLL_INTERVAL": "500ms",
			"COSELL_ACK_WAIT": "2s", "COSELL_MAX_DELIVER": "8", "COSELL_AUDIT_SUMMARY_INTERVAL": "0"},
		Consume:   platform.ConsumeOptions{MaxWait: 200 * time.Millisecond, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second},
		StageVars: bus,
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s; last state: %s", what, within, last)
		}
		<-tick.C
	}
}

func opportunitiesFor(s *stack.Stack, referralID string) int {
	n := 0
	for _, o := range s.SF.All(sf.ObjectOpportunity) {
		if o[sf.FieldReferralIdentifier] == referralID {
			n++
		}
	}
	return n
}

func sellerReferral(name string, value float64) pc.Referral {
	return pc.Referral{
		Name: name,
		CustomerProfile: &pc.CustomerProfile{Name: name + " Customer", Address: &pc.Address{
			AddressLine1: "One Microsoft Way", City: "Redmond", State: "WA", PostalCode: "98052", Country: "US"}},
		Consent: &pc.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true},
		Details: &pc.Details{DealValue: &value, Currency: "USD", ClosingDateTime: "2027-02-15T00:00:00Z", Notes: "Wants a pilot"},
	}
}
