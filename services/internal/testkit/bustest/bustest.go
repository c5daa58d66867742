// Package bustest is the NATS fixture of cosell's tests: a real embedded nats-server with JetStream on
// 127.0.0.1 (a free port, a temporary store), and a stage's provisioned bus on it, both stopped when the
// test ends.
package bustest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/platform/natsembed"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// Config is a single-server bus: one replica, an hour's retention, a minute's duplicate window, with the
// redelivery a test picks.
func Config(maxDeliver int, ackWait time.Duration) platform.BusConfig {
	return platform.BusConfig{Replicas: 1, MaxAge: time.Hour, DuplicateWindow: time.Minute, MaxDeliver: maxDeliver,
		AckWait: ackWait, Provision: true}
}

// Server starts an embedded nats-server (the one cosell run embeds) and shuts it down at cleanup.
func Server(t testing.TB) *server.Server {
	t.Helper()
	ns, err := natsembed.Start(t.TempDir(), "127.0.0.1:-1", testkit.Log())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// Bus connects stage to ns with cfg, provisions the streams, consumers and buckets, and closes the
// connection at cleanup; m may be nil.
func Bus(t testing.TB, ns *server.Server, cfg platform.BusConfig, stage string, m *platform.Metrics) *platform.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bus, err := platform.ConnectServer(ctx, ns, cfg, stage, testkit.Log(), m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	if err := bus.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return bus
}

// Start is Server and Bus: a fresh server with stage's provisioned bus on it.
func Start(t testing.TB, cfg platform.BusConfig, stage string, m *platform.Metrics) *platform.Bus {
	t.Helper()
	return Bus(t, Server(t), cfg, stage, m)
}

// Count is how many messages stream holds on subjects matching filter, from the server's per-subject counts.
func Count(t testing.TB, bus *platform.Bus, stream, filter string) int {
	t.Helper()
	info, err := bus.StreamInfo(context.Background(), stream, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// Last is the data of the last event stream holds on subject, decoded as T (the test fails when there is
// none or it does not decode).
func Last[T any](t testing.TB, bus *platform.Bus, stream, subject string) T {
	t.Helper()
	m, err := bus.LastMsg(context.Background(), stream, subject)
	if err != nil {
		t.Fatalf("no event on %s in %s: %v", subject, stream, err)
	}
	e, err := m.Event()
	if err != nil {
		t.Fatal(err)
	}
	d, err := platform.DataAs[T](e)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
