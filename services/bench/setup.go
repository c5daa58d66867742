package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
)

// bench is one measured deployment: every stage a process (fleet), the probe of its server's counters,
// the report, and the same run's JetStream ceilings already in it.
type bench struct {
	f     *fleet.Fleet
	bin   string
	probe *busProbe
	js    jetstream.JetStream
	r     *report
	ceil  ceilings
	work  string
	fig   figures
	// heap reads the nats-server's Go runtime (cosell nats --pprof); profiles are a soak's heap profiles
	// by name, profErr the ones that could not be taken.
	heap         *natsHeap
	profMu       sync.Mutex
	profiles     map[string]string
	profErr      []string
	stopProfiles func()
}

// startBench builds the binaries, starts the nats-server, both emulators and the six stages (with
// COSELL_LOG_LEVEL=warn and extraEnv), registers the webhook and measures the ceilings (rawN messages).
// On an error it prints the processes' output; Close stops everything.
func startBench(ctx context.Context, rawN int) (b *bench, err error) {
	b = &bench{}
	if b.work, err = os.MkdirTemp("", "cosell-bench-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if b.f != nil {
				fmt.Fprintln(os.Stderr, b.f.Outputs(4000))
			}
			b.Close()
		}
	}()
	b.bin = b.work + "/bin"
	if err := os.MkdirAll(b.bin, 0o755); err != nil {
		return b, err
	}
	fmt.Fprintln(os.Stderr, "building…")
	if err := fleet.Build(ctx, b.bin); err != nil {
		return b, err
	}
	if b.f, err = fleet.New(b.bin, b.work); err != nil {
		return b, err
	}
	pprofAddr, err := fleet.FreeAddr()
	if err != nil {
		return b, err
	}
	b.heap = &natsHeap{addr: pprofAddr, dir: profileDir()}
	b.f.NATSArgs = append(b.f.NATSArgs, "--pprof", pprofAddr)
	b.f.NATSEnv = append(b.f.NATSEnv, natsEnv...)
	if err := b.f.StartInfra(ctx); err != nil {
		return b, err
	}
	b.f.Env = append(b.f.Env, "COSELL_LOG_LEVEL=warn")
	b.f.Env = append(b.f.Env, extraEnv...)
	if err := b.f.StartStages(ctx); err != nil {
		return b, err
	}
	if err := b.f.RegisterWebhook(ctx); err != nil {
		return b, err
	}
	url := "nats://" + b.f.NATSAddr
	if b.probe, err = newBusProbe(url); err != nil {
		return b, err
	}
	b.js = b.probe.js
	b.r = &report{}
	b.r.add("| measure | value |")
	b.r.add("|---|---|")
	if b.ceil, err = measureCeilings(ctx, url, rawN); err != nil {
		return b, err
	}
	b.ceil.report(b.r)
	b.fig.start = time.Now()
	return b, nil
}

// Done is Close, deferred by a run: when the run failed (*err set) it prints the processes' output first.
func (b *bench) Done(err *error) {
	if *err != nil && b.f != nil {
		fmt.Fprintln(os.Stderr, b.f.Outputs(4000))
	}
	b.Close()
}

// Close stops the deployment and removes its work directory.
func (b *bench) Close() {
	if b.probe != nil {
		b.probe.Close()
	}
	if b.f != nil {
		b.f.Close()
	}
	if b.work != "" {
		_ = os.RemoveAll(b.work)
	}
}
