// Command sf-writer carries out Opportunity commands against Salesforce with go-salesforce.
package main

import (
	"context"
	"os"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/app"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/runtime"
	"github.com/cosell-dev/cosell/services/internal/sfapi"
	"github.com/cosell-dev/cosell/services/sf-writer/sfwriter"
)

type config struct {
	Common     runtime.Common
	SF         sfapi.Config
	LimitPause time.Duration `env:"COSELL_SF_LIMIT_PAUSE" default:"15m" help:"wait before retrying once the daily API allowance is spent"`
}

func main() {
	var cfg config
	os.Exit(app.Main(contracts.StageSFWriter, "Salesforce Opportunity writer", &cfg, &cfg.Common,
		func(ctx context.Context, env *app.Env) (func(context.Context) error, error) {
			sf, err := sfapi.New(cfg.SF)
			if err != nil {
				return nil, err
			}
			rec, err := outcome.NewRecorder(ctx, env.Bus, env.Stage)
			if err != nil {
				return nil, err
			}
			w := &sfwriter.Writer{Bus: env.Bus, SF: sf, Outcomes: rec, Log: env.Log, LimitPause: cfg.LimitPause}
			return w.Run, nil
		}))
}
