// Package testkit is what cosell's tests share: polling with a deadline instead of sleeping, and a test
// logger. It imports only the standard library, so every package's tests can use it (the platform's and the
// emulators' own tests among them). The fixtures that start real components are its sub-packages:
// bustest (an embedded nats-server and a provisioned bus), emutest (the emulators over real HTTP on
// 127.0.0.1 with the real clients) and stacktest (the whole in-process system).
package testkit

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"
)

// Tick is how often Eventually polls.
const Tick = 20 * time.Millisecond

// Eventually polls cond until it holds, failing t when within passes: the message names what was awaited
// and the state cond last reported, so a failure says how far it got.
func Eventually(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(Tick)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state == "" {
				state = "(none reported)"
			}
			t.Fatalf("%s: not reached within %s; last state: %s", what, within, state)
		}
		<-tick.C
	}
}

// EventuallyNil is Eventually for a condition that reports why it does not hold yet as an error.
func EventuallyNil(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	Eventually(t, within, what, func() (bool, string) {
		err := cond()
		return err == nil, fmt.Sprint(err)
	})
}

// EventuallyTrue is Eventually for a condition with no state to report.
func EventuallyTrue(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, within, what, func() (bool, string) { return cond(), "false" })
}

// Log is a logger for components under test: silent unless COSELL_TEST_LOG is set, then debug to stderr.
func Log() *slog.Logger {
	if os.Getenv("COSELL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// ProcessCPU is the CPU time (user and system) the test process has used so far: a benchmark's CPU per
// operation, (after − before) / b.N, is what a loaded machine changes far less than ns/op.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
