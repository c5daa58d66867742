package sfingest

import (
	"context"
	"fmt"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// StageConfig is everything sf-ingest reads from its environment besides platform.Common.
type StageConfig struct {
	SF     sfapi.Config
	Ingest Config
	// Mapping is read for the Salesforce fields it names, so a customised mapping is polled for.
	Mapping mapping.Config
}

// Stage is sf-ingest as a component: services/sf-ingest/main.go runs it as a process, the in-process
// system next to the other five.
var Stage = stage.Define(contracts.StageSFIngest, "Salesforce Opportunity changes: Change Data Capture, with the poller as backstop", build)

func build(ctx context.Context, cfg *StageConfig, env *stage.Env) (stage.Runner, error) {
	sf, err := env.SFClient(ctx, cfg.SF)
	if err != nil {
		return nil, err
	}
	cps, err := env.Bus.KV(ctx, contracts.BucketCheckpoints)
	if err != nil {
		return nil, err
	}
	m, err := mapping.Load(cfg.Mapping)
	if err != nil {
		return nil, fmt.Errorf("invalid mapping:\n%w", err)
	}
	in := &Ingest{Bus: env.Bus, SF: sf, Checkpoints: cps, Config: cfg.Ingest, Log: env.Log, Extra: m.SalesforceFields(), Leads: !m.CoSellOnly}
	// The org's shape, before the stage is reported ready: a mapped field the org lacks stops the start.
	if err := in.Describe(ctx); err != nil {
		return nil, err
	}
	run, release, err := in.Runner(ctx)
	if err != nil {
		return nil, err
	}
	// One subscriber and poller per org, however many replicas run: the others stand by on the lease.
	return func(ctx context.Context) error {
		defer release()
		return env.Bus.RunAsLeader(ctx, "sf-ingest", run)
	}, nil
}
