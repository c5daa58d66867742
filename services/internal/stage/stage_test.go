package stage

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

type toyConfig struct {
	Greeting string        `env:"COSELL_TOY_GREETING" required:"true" help:"what the toy says"`
	Every    time.Duration `env:"COSELL_TOY_EVERY" default:"1s"`
}

func lookupIn(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// A descriptor runs as a process: config loaded with defaults, an embedded NATS provisioned, the build
// given a complete environment, the runner stopped by cancellation, exit 0 after the drain.
func TestMainRunsADescriptorUntilCancelled(t *testing.T) {
	built := make(chan *Env, 1)
	var got *toyConfig
	toy := Define("toy", "a stage for the test", func(ctx context.Context, cfg *toyConfig, env *Env) (Runner, error) {
		got = cfg
		built <- env
		return func(ctx context.Context) error { <-ctx.Done(); return nil }, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// stdout and stderr are read only once run has returned.
	var stdout, stderr bytes.Buffer
	code := make(chan int, 1)
	data := t.TempDir()
	vars := map[string]string{"COSELL_TOY_GREETING": "hello", "COSELL_NATS_EMBEDDED": "true", "COSELL_DATA_DIR": data, "COSELL_LOG_LEVEL": "info"}
	go func() { code <- run(ctx, toy, nil, &stdout, &stderr, lookupIn(vars)) }()
	var env *Env
	select {
	case env = <-built:
	case c := <-code:
		t.Fatalf("exited %d before building: %s", c, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("not built within 30s")
	}
	if got.Greeting != "hello" || got.Every != time.Second {
		t.Errorf("config = %+v", got)
	}
	if env.Stage != "toy" || env.Log == nil || env.Routes == nil || env.Registry == nil || env.Clients == nil {
		t.Errorf("incomplete environment: %+v", env)
	}
	if _, err := env.Bus.KV(ctx, contracts.BucketLinks); err != nil {
		t.Errorf("not provisioned before the build: %v", err)
	}
	// The embedded server admits only the login it generated and wrote to the data directory (0600).
	login, err := platform.ReadLoginFile(filepath.Join(data, platform.LoginFileName))
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(login.URL); err == nil {
		nc.Close()
		t.Error("the embedded server admits an unauthenticated connection")
	}
	nc, err := nats.Connect(login.URL, nats.UserInfo(login.User, login.Password))
	if err != nil {
		t.Errorf("the login file's credentials: %v", err)
	} else {
		nc.Close()
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d: %s", c, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not drain within 30s")
	}
	if !strings.Contains(stdout.String(), "drained; exiting") {
		t.Errorf("no drain logged:\n%s", stdout.String())
	}
	if !strings.Contains(stdout.String(), platform.LoginFileName) || strings.Contains(stdout.String(), login.Password) {
		t.Errorf("the log should name the login file and never the password:\n%s", stdout.String())
	}
}

// A stage without COSELL_NATS_URL does not quietly run a server of its own: it refuses, naming the variable
// and the explicit embedded mode.
func TestMainRefusesToStartWithoutANATSURL(t *testing.T) {
	toy := Define("toy", "a stage for the test", func(context.Context, *toyConfig, *Env) (Runner, error) {
		t.Error("built without a NATS URL")
		return nil, nil
	})
	var stdout, stderr bytes.Buffer
	dir := t.TempDir()
	if c := run(context.Background(), toy, nil, &stdout, &stderr, lookupIn(map[string]string{"COSELL_TOY_GREETING": "hi", "COSELL_DATA_DIR": dir})); c != 2 {
		t.Fatalf("exit %d, want 2: %s", c, stderr.String())
	}
	for _, want := range []string{"COSELL_NATS_URL is not set", "COSELL_NATS_URL=nats://", "COSELL_NATS_EMBEDDED=true"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the error does not say %q: %s", want, stderr.String())
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a store was created in %s: %v", dir, entries)
	}
}

func TestMainRefusesBadConfigAndListsVariables(t *testing.T) {
	toy := Define("toy", "a stage for the test", func(context.Context, *toyConfig, *Env) (Runner, error) {
		t.Error("built with a bad config")
		return nil, nil
	})
	var stdout, stderr bytes.Buffer
	if c := run(context.Background(), toy, nil, &stdout, &stderr, lookupIn(map[string]string{"COSELL_TOY_EVERY": "soon"})); c != 2 {
		t.Fatalf("exit %d, want 2", c)
	}
	for _, want := range []string{"COSELL_TOY_GREETING: required", "COSELL_TOY_EVERY", "not a duration"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the error does not say %q: %s", want, stderr.String())
		}
	}

	var help bytes.Buffer
	if c := run(context.Background(), toy, []string{"--help"}, &stdout, &help, nil); c != 0 {
		t.Fatalf("--help: exit %d", c)
	}
	if !strings.HasPrefix(help.String(), "toy — a stage for the test\n") {
		t.Errorf("--help does not start with the name and summary:\n%s", help.String())
	}
	for _, v := range toy.Vars() {
		if !strings.Contains(help.String(), "  "+v+"\n") {
			t.Errorf("--help does not list %q", v)
		}
	}
	vars := strings.Join(toy.Vars(), "\n")
	for _, want := range []string{"COSELL_NATS_URL", "COSELL_ADMIN_ADDR", "required; what the toy says", "default 1s"} {
		if !strings.Contains(vars, want) {
			t.Errorf("Vars lacks %q:\n%s", want, vars)
		}
	}
}

// COSELL_PPROF=true serves the Go runtime's profiles on the admin port and COSELL_MEMORY_LIMIT sets the soft
// memory limit while the stage runs; by default the profiles are not there. (Not parallel: the limit is
// the process's.)
func TestMainServesProfilesOnlyWhenAsked(t *testing.T) {
	for _, c := range []struct {
		pprof string
		want  int
	}{{"true", http.StatusOK}, {"", http.StatusNotFound}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		admin := ln.Addr().String()
		ln.Close()
		var limit int64
		var status int
		toy := Define("toy", "a stage for the test", func(ctx context.Context, cfg *toyConfig, env *Env) (Runner, error) {
			limit = debug.SetMemoryLimit(-1)
			resp, err := http.Get("http://" + admin + "/debug/pprof/heap?debug=1")
			if err != nil {
				return nil, err
			}
			resp.Body.Close()
			status = resp.StatusCode
			return func(ctx context.Context) error { return nil }, nil
		})
		t.Setenv("GOMEMLIMIT", "")
		vars := map[string]string{"COSELL_TOY_GREETING": "hi", "COSELL_NATS_EMBEDDED": "true", "COSELL_DATA_DIR": t.TempDir(),
			"COSELL_ADMIN_ADDR": admin, "COSELL_PPROF": c.pprof, "COSELL_MEMORY_LIMIT": "40MiB"}
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), toy, nil, &stdout, &stderr, lookupIn(vars)); code != 0 {
			t.Fatalf("COSELL_PPROF=%q: exit %d: %s%s", c.pprof, code, stderr.String(), stdout.String())
		}
		if status != c.want {
			t.Errorf("COSELL_PPROF=%q: /debug/pprof/heap answered %d, want %d", c.pprof, status, c.want)
		}
		if limit != 40<<20 {
			t.Errorf("COSELL_MEMORY_LIMIT=40MiB: the runtime's limit was %d while the stage ran", limit)
		}
	}
}
