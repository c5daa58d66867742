package platform

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// testLog is quiet unless COSELL_TEST_LOG=1.
func testLog(t *testing.T, stage string) *slog.Logger {
	t.Helper()
	if os.Getenv("COSELL_TEST_LOG") == "1" {
		return NewLogger(os.Stderr, "debug", stage)
	}
	return NewLogger(io.Discard, "debug", stage)
}

func testBusConfig() BusConfig {
	return BusConfig{
		Replicas:        1,
		MaxAge:          time.Hour,
		DuplicateWindow: time.Minute,
		MaxDeliver:      3,
		AckWait:         5 * time.Second,
		Provision:       true,
		EmbeddedListen:  "127.0.0.1:-1",
	}
}

// startServer starts an embedded server in dir (a fresh temp dir when empty) on 127.0.0.1 and stops it at
// cleanup. It is natsembed.Start's server, started here because natsembed imports this package.
func startServer(t testing.TB, dir string) *server.Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready for connections after 10s")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// newTestBus connects a provisioned bus for stage to ns and closes it at cleanup.
func newTestBus(t *testing.T, ns *server.Server, cfg BusConfig, stage string, m *Metrics) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := ConnectServer(ctx, ns, cfg, stage, testLog(t, stage), m)
	if err != nil {
		t.Fatalf("ConnectServer: %v", err)
	}
	t.Cleanup(b.Close)
	if err := b.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return b
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }
