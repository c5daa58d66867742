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
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
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
	opts := stacktest.Options(t)
	opts.Log = log
	opts.Vars["COSELL_PC_POLL_INTERVAL"] = "500ms"
	opts.StageVars = bus
	return stacktest.Start(t, opts)
}
