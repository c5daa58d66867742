// Command mapper decides, for every observed snapshot and writer outcome, what to write to the other side,
// keeping the links in JetStream KV.
package main

import (
	"context"
	"os"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/app"
	"github.com/cosell-dev/cosell/services/internal/runtime"
	"github.com/cosell-dev/cosell/services/mapper/decide"
	"github.com/cosell-dev/cosell/services/mapper/mapper"
)

type config struct {
	Common     runtime.Common
	Hold       string `env:"COSELL_STAGE_HOLD" default:"Prospecting" help:"the Salesforce stage received referrals wait in"`
	Active     string `env:"COSELL_STAGE_ACTIVE" default:"Qualification" help:"the stage an accepted referral gets"`
	Won        string `env:"COSELL_STAGE_WON" default:"Closed Won"`
	Lost       string `env:"COSELL_STAGE_LOST" default:"Closed Lost"`
	Currency   string `env:"COSELL_DEFAULT_CURRENCY" default:"USD"`
	Concurrent int    `env:"COSELL_MAPPER_CONCURRENCY" default:"4" help:"handlers run in parallel per batch"`
}

func main() {
	var cfg config
	os.Exit(app.Main(contracts.StageMapper, "the decision stage", &cfg, &cfg.Common,
		func(ctx context.Context, env *app.Env) (func(context.Context) error, error) {
			m := decide.DefaultMapping()
			m.Stages = decide.Stages{Hold: cfg.Hold, Active: cfg.Active, Won: cfg.Won, Lost: cfg.Lost}
			m.DefaultCurrency = cfg.Currency
			svc, err := mapper.New(ctx, env.Bus, m, env.Log)
			if err != nil {
				return nil, err
			}
			svc.Consume = runtime.ConsumeOptions{Concurrency: cfg.Concurrent}
			return svc.Run, nil
		}))
}
