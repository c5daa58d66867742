// Command sf-ingest polls Salesforce for changed Opportunities by SystemModstamp and publishes full
// snapshots to JetStream.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/sf-ingest/sfingest"
)

type config struct {
	Common platform.Common
	SF     sfapi.Config
	Ingest sfingest.Config
	// Mapping is read for the Salesforce fields it names, so a customised mapping is polled for.
	Mapping mapping.Config
}

func main() {
	var cfg config
	os.Exit(stage.Main(contracts.StageSFIngest, "Salesforce Opportunity change poller", &cfg, &cfg.Common,
		func(ctx context.Context, env *stage.Env) (func(context.Context) error, error) {
			sf, err := sfapi.New(cfg.SF)
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
			in := &sfingest.Ingest{Bus: env.Bus, SF: sf, Checkpoints: cps, Config: cfg.Ingest, Log: env.Log,
				Extra: m.SalesforceFields()}
			// One poller per org, however many replicas run: the others stand by on the lease.
			return func(ctx context.Context) error { return env.Bus.RunAsLeader(ctx, "sf-ingest", in.Run) }, nil
		}))
}
