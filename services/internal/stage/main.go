package stage

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/cosell-dev/cosell/services/internal/platform"
)

// Main runs one stage as its own process and returns the exit code: --help lists its variables; then it
// loads and validates the config, logs JSON, serves the admin port, connects to NATS (or an embedded
// server), provisions, builds the stage, runs it until SIGTERM, drains and exits 0.
func Main(c Component) int {
	return run(context.Background(), c, os.Args[1:], os.Stdout, os.Stderr, nil)
}

// ErrNoNATSURL is why a stage without COSELL_NATS_URL does not start: it would silently run a server of its
// own that no other stage shares.
var ErrNoNATSURL = errors.New("COSELL_NATS_URL is not set: point the stage at your NATS (COSELL_NATS_URL=nats://host:4222), " +
	"or set COSELL_NATS_EMBEDDED=true to run an embedded nats-server with its store in COSELL_DATA_DIR (development only)")

// errNoNATSURLNoEmbedded is ErrNoNATSURL in a binary built without the embedded server.
var errNoNATSURLNoEmbedded = errors.New("COSELL_NATS_URL is not set: point the stage at your NATS (COSELL_NATS_URL=nats://host:4222; " +
	"`cosell nats` runs one for development)")

// ErrNoEmbeddedServer is why COSELL_NATS_EMBEDDED does not start a server in a binary built without one.
var ErrNoEmbeddedServer = errors.New("COSELL_NATS_EMBEDDED=true, but this binary was built without the embedded nats-server " +
	"(the images leave it out): point COSELL_NATS_URL at your NATS (`cosell nats` runs one for development), " +
	"or build the stage with `go build -tags embeddednats` (as `make build` does)")

// connectEmbedded starts the stage's own nats-server and connects to it (natsembed.Connect) in a binary built
// with the embeddednats tag (embedded.go); nil in one built without: nats-server is not linked.
var connectEmbedded func(ctx context.Context, cfg platform.BusConfig, stage string, log *slog.Logger, m *platform.Metrics) (*platform.Bus, error)

// connect connects to the configured NATS, or, with COSELL_NATS_EMBEDDED and no URL, to a server of the
// stage's own.
func connect(ctx context.Context, cfg platform.BusConfig, stage string, log *slog.Logger, m *platform.Metrics) (*platform.Bus, error) {
	if cfg.URL != "" || cfg.LoginFile != "" {
		return platform.Connect(ctx, cfg, stage, log, m)
	}
	if connectEmbedded == nil {
		return nil, ErrNoEmbeddedServer
	}
	return connectEmbedded(ctx, cfg, stage, log, m)
}

func run(ctx context.Context, c Component, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	name := c.Name()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s — %s\n\nUsage: %s\n\nConfigured by environment variables (or a KEY=VALUE file named by COSELL_CONFIG_FILE):\n\n", name, c.Summary(), name)
		for _, v := range c.Vars() {
			fmt.Fprintf(stderr, "  %s\n", v)
		}
		fmt.Fprintf(stderr, "\nTracing (OpenTelemetry's standard variables, read by its SDK):\n\n")
		for _, v := range platform.TraceEnv {
			fmt.Fprintf(stderr, "  %s\n", v)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := c.Load(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	common := cfg.Common
	if common.Bus.URL == "" && !common.Bus.Embedded {
		err := ErrNoNATSURL
		if connectEmbedded == nil { // no hint this binary cannot follow
			err = errNoNATSURLNoEmbedded
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	if common.Bus.URL == "" && common.Bus.LoginFile == "" && connectEmbedded == nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, ErrNoEmbeddedServer)
		return 2
	}
	log := platform.NewLogger(stdout, common.LogLevel, name)
	restoreRuntime, memLimit, err := platform.ApplyRuntime(common.Runtime)
	if err != nil { // the config's validation already read the limit; GOMEMLIMIT is the runtime's own
		log.Error("runtime settings", "err", err)
		return 2
	}
	defer restoreRuntime()
	ctx, stop := platform.RunUntilSignal(ctx)
	defer stop()

	admin := platform.NewAdmin(common.AdminAddr, log)
	if _, err := admin.Start(); err != nil {
		log.Error("admin port", "err", err)
		return 1
	}
	if common.Runtime.Profiles {
		admin.Handle("/debug/pprof/", platform.ProfileHandler())
	}
	log.Info("go runtime", "memory_limit_bytes", memLimit, "profiles", common.Runtime.Profiles)
	clients := NewClientMetrics(admin.Registry)
	shutdownTracing, err := platform.SetupTracing(ctx, name)
	if err != nil {
		log.Error("tracing", "err", err)
		return 2
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(ctx)) }()
	bus, err := connect(ctx, common.Bus, name, log, admin.Metrics)
	if err != nil {
		log.Error("connect to NATS", "err", err)
		return 1
	}
	defer bus.Close()
	admin.AddCheck("nats", bus.Check)
	if common.Bus.Provision {
		if err := bus.Provision(ctx); err != nil {
			log.Error("provision streams, consumers and buckets", "err", err)
			return 1
		}
	}
	runner, err := cfg.Build(ctx, &Env{Stage: name, Log: log, Bus: bus, Routes: admin, Registry: admin.Registry, Clients: clients})
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	// Start-up is over: what it alone touched of the binary need not stay resident (ReleaseStartupPages).
	if n, err := platform.ReleaseStartupPages(); err != nil {
		log.Warn("start-up pages kept resident", "err", err)
	} else if n > 0 {
		log.Debug("start-up pages released", "mapped_bytes", n)
	}
	admin.SetReady(true)
	log.Info("running")
	err = runner(ctx)
	admin.SetNotReady("draining")
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = admin.Shutdown(shut)
	if err != nil && ctx.Err() == nil {
		log.Error("stopped", "err", err)
		return 1
	}
	log.Info("drained; exiting")
	return 0
}
