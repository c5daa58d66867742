package natsembed_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/platform/natsembed"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/nats-io/nats.go"
)

// TestEmbeddedServerAdmitsOnlyItsGeneratedLogin: the server a stage or `cosell run` embeds refuses an
// unauthenticated connection and a wrong password, binds loopback, leaves its login in a 0600 file, and a
// client finds it there: by COSELL_NATS_LOGIN_FILE, or from a loopback URL alone (the file `cosell run` leaves).
func TestEmbeddedServerAdmitsOnlyItsGeneratedLogin(t *testing.T) {
	dir := t.TempDir()
	ns, login, err := natsembed.StartWithLogin(dir, ":-1", testkit.Log())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !strings.HasPrefix(login.URL, "nats://127.0.0.1:") {
		t.Errorf("no host given: the server should bind loopback, listens at %s", login.URL)
	}
	for name, opts := range map[string][]nats.Option{
		"no credentials":  nil,
		"wrong password":  {nats.UserInfo(login.User, login.Password+"x")},
		"a token instead": {nats.Token(login.Password)},
	} {
		if nc, err := nats.Connect(login.URL, opts...); err == nil {
			nc.Close()
			t.Errorf("%s: connection accepted", name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization violation", name, err)
		}
	}
	file := filepath.Join(dir, platform.LoginFileName)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("login file mode %v, want 0600", fi.Mode().Perm())
	}
	read, err := platform.ReadLoginFile(file)
	if err != nil || read != login {
		t.Fatalf("platform.ReadLoginFile = %+v, %v; want %+v", read, err, login)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := platform.Connect(ctx, platform.BusConfig{LoginFile: file}, "test", testkit.Log(), nil)
	if err != nil {
		t.Fatalf("connect with COSELL_NATS_LOGIN_FILE: %v", err)
	}
	b.Close()

	// The file `cosell run` leaves where any client on the machine finds it from the URL alone.
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	if _, err := platform.Connect(shortCtx(t), platform.BusConfig{URL: login.URL}, "test", testkit.Log(), nil); err == nil {
		t.Fatal("connected by URL alone before the run's login file existed")
	}
	run := platform.RunLoginFile(login.URL)
	if run == "" {
		t.Fatal("no run login file path")
	}
	if err := login.WriteFile(run); err != nil {
		t.Fatal(err)
	}
	b, err = platform.Connect(ctx, platform.BusConfig{URL: login.URL}, "test", testkit.Log(), nil)
	if err != nil {
		t.Fatalf("connect by URL with the run's login file at %s: %v", run, err)
	}
	b.Close()
	// Not for another address: the login of 127.0.0.1:PORT is not sent to another server.
	if platform.RunLoginFile("nats://nats.example:4222") == run || platform.IsLoopback("nats.example") {
		t.Error("a remote URL must not pick up the local run's login")
	}
}

// TestConnectEmbeddedUsesTheGeneratedLogin: Connect starts the server with a login, connects
// in-process with it and leaves the login file in the data directory.
func TestConnectEmbeddedUsesTheGeneratedLogin(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := natsembed.Connect(ctx, platform.BusConfig{DataDir: dir, EmbeddedListen: "127.0.0.1:-1"}, "test", testkit.Log(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	login, err := platform.ReadLoginFile(filepath.Join(dir, platform.LoginFileName))
	if err != nil {
		t.Fatal(err)
	}
	if login.URL != b.Server.ClientURL() {
		t.Errorf("login file names %s, server at %s", login.URL, b.Server.ClientURL())
	}
	if nc, err := nats.Connect(login.URL); err == nil {
		nc.Close()
		t.Error("the embedded server of Connect admits an unauthenticated client")
	}
}

func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t.Cleanup(cancel)
	return ctx
}
