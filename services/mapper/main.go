// Command mapper decides, for every observed snapshot and writer outcome, what to write to the other side,
// keeping the links in JetStream KV.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/mapper/mapper"
)

type config struct {
	Common     platform.Common
	Mapping    mapping.Config
	Concurrent int `env:"COSELL_MAPPER_CONCURRENCY" default:"4" help:"handlers run in parallel per batch"`
}

func main() {
	var cfg config
	os.Exit(stage.Main(contracts.StageMapper, "the decision stage", &cfg, &cfg.Common,
		func(ctx context.Context, env *stage.Env) (func(context.Context) error, error) {
			m, err := mapping.Load(cfg.Mapping)
			if err != nil {
				// An invalid mapping stops the service: every problem is listed with its line and fix.
				return nil, fmt.Errorf("invalid mapping:\n%w", err)
			}
			env.Log.Info("mapping loaded", "file", m.Source, "fields", len(m.Fields), "hold", m.Stages.Hold, "active", m.Stages.Active)
			svc, err := mapper.New(ctx, env.Bus, m, env.Log)
			if err != nil {
				return nil, err
			}
			svc.Consume = platform.ConsumeOptions{Concurrency: cfg.Concurrent}
			return svc.Run, nil
		}))
}
