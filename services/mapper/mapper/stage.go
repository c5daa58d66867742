package mapper

import (
	"context"
	"fmt"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// StageConfig is everything the mapper reads from its environment besides platform.Common.
type StageConfig struct {
	Mapping    mapping.Config
	Concurrent int `env:"COSELL_MAPPER_CONCURRENCY" default:"16" help:"decisions made at once by each of the two consumer loops (observed, outcomes), on different records (one record's events one after another): most of a decision is the wait for its bus round trips, so well above the cores"`
	LinkCache  int `env:"COSELL_MAPPER_LINK_CACHE_MIB" default:"4" help:"memory (MiB) for the links the mapper last read or stored, kept decoded so a decision reads and decodes none; the compare-and-set still guards every write (0 = read every link from the bucket)"`
}

// Stage is the mapper as a component: services/mapper/main.go runs it as a process, the in-process
// system next to the other five.
var Stage = stage.Define(contracts.StageMapper, "the decision stage", build)

func build(ctx context.Context, cfg *StageConfig, env *stage.Env) (stage.Runner, error) {
	m, err := mapping.Load(cfg.Mapping)
	if err != nil {
		// An invalid mapping stops the service: every problem is listed with its line and fix.
		return nil, fmt.Errorf("invalid mapping:\n%w", err)
	}
	env.Log.Info("mapping loaded", "file", m.Source, "fields", len(m.Fields), "hold", m.Stages.Hold, "active", m.Stages.Active)
	svc, err := New(ctx, env.Bus, m, env.Log)
	if err != nil {
		return nil, err
	}
	svc.Consume = env.Consume
	svc.AfterStore = env.AfterWrite
	svc.Consume.Concurrency = cfg.Concurrent
	svc.Cache = nil
	if cfg.LinkCache > 0 {
		svc.Cache = newLinkCache(cfg.LinkCache << 20)
	}
	return svc.Run, nil
}
