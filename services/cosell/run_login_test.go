package main

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cosell-dev/cosell/services/internal/platform"
)

// TestRunsNATSAdmitsOnlyItsPrintedLogin: `cosell run`'s embedded NATS refuses an unauthenticated client,
// prints its login, and a cosell command given only COSELL_NATS_URL (as the README's `links get`) finds the
// login the run left for that address; the file is 0600 and gone after the run.
func TestRunsNATSAdmitsOnlyItsPrintedLogin(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("COSELL_NATS_USER", "")
	t.Setenv("COSELL_NATS_PASSWORD", "")
	t.Setenv("COSELL_NATS_CREDS", "")
	t.Setenv("COSELL_NATS_LOGIN_FILE", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut, done := startRun(ctx, "--demo=false")
	line := regexp.MustCompile(`NATS\s+(nats://\S+)\s+\(user (\S+), password (\S+); login file (\S+),`)
	var m []string
	deadline := time.Now().Add(60 * time.Second)
	for m == nil {
		m = line.FindStringSubmatch(out.String())
		select {
		case code := <-done:
			t.Fatalf("cosell run exited with %d\n%s\n%s", code, out.String(), errOut.String())
		default:
		}
		if m == nil && time.Now().After(deadline) {
			t.Fatalf("cosell run printed no NATS login within 60s:\n%s", out.String())
		}
		if m == nil {
			<-time.After(50 * time.Millisecond)
		}
	}
	url, user, password, file := m[1], m[2], m[3], m[4]
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("cosell run's NATS admits an unauthenticated client")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("unauthenticated: %v, want an authorization violation", err)
	}
	nc, err := nats.Connect(url, nats.UserInfo(user, password))
	if err != nil {
		t.Fatalf("the printed login: %v", err)
	}
	nc.Close()
	if file != platform.RunLoginFile(url) {
		t.Errorf("login file %s, want the one the CLI looks for: %s", file, platform.RunLoginFile(url))
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("login file: %v %v", fi, err)
	}
	if strings.Contains(errOut.String(), password) {
		t.Error("the NATS password is in cosell run's log")
	}

	// A command with only the URL, as the README runs `links get`.
	t.Setenv("COSELL_NATS_URL", url)
	var sout, serr strings.Builder
	if code := Run(ctx, []string{"status"}, &sout, &serr); code != 0 {
		t.Errorf("cosell status against cosell run: exit %d\n%s\n%s", code, sout.String(), serr.String())
	}

	stopRun(t, cancel, done, errOut)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the login file outlived the run: %v", err)
	}
}
