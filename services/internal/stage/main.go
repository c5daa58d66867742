// Package stage is the one main every stage shares: load and validate config, log, admin port, NATS (or
// an embedded server), provisioning, run until SIGTERM, drain, exit 0.
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

// Env is what a stage's build function gets.
type Env struct {
	Stage string
	Log   *slog.Logger
	Bus   *platform.Bus
	Admin *platform.Admin
}

// Build wires a stage and returns its run function (blocking until ctx is cancelled, then draining).
type Build func(ctx context.Context, env *Env) (func(context.Context) error, error)

// Main runs a stage: cfg is a pointer to the stage's config struct, common points at its platform.Common.
// It returns the process exit code.
func Main(stage, summary string, cfg any, common *platform.Common, build Build) int {
	return run(os.Args[1:], os.Stdout, os.Stderr, stage, summary, cfg, common, build)
}

func run(args []string, stdout, stderr io.Writer, stage, summary string, cfg any, common *platform.Common, build Build) int {
	fs := flag.NewFlagSet(stage, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s — %s\n\nUsage: %s\n\nConfigured by environment variables (or a KEY=VALUE file named by COSELL_CONFIG_FILE):\n\n", stage, summary, stage)
		for _, v := range configVars(cfg) {
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
	if err := platform.LoadConfig(cfg, nil); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", stage, err)
		return 2
	}
	log := platform.NewLogger(stdout, common.LogLevel, stage)
	ctx, stop := platform.RunUntilSignal(context.Background())
	defer stop()

	admin := platform.NewAdmin(common.AdminAddr, log)
	addr, err := admin.Start()
	if err != nil {
		log.Error("admin port", "err", err)
		return 1
	}
	log.Info("admin listening", "addr", addr)
	InstrumentClients(platform.NewAPIMetrics(admin.Registry))
	InstrumentPCAuth(admin.Registry)
	shutdownTracing, err := platform.SetupTracing(ctx, stage)
	if err != nil {
		log.Error("tracing", "err", err)
		return 2
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(ctx)) }()
	bus, err := platform.Connect(ctx, common.Bus, stage, log, admin.Metrics)
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
	runFn, err := build(ctx, &Env{Stage: stage, Log: log, Bus: bus, Admin: admin})
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	admin.SetReady(true)
	log.Info("running")
	err = runFn(ctx)
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
