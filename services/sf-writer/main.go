// Command sf-writer carries out Opportunity commands against Salesforce with go-salesforce.
package main

import (
	"context"
	"os"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/sf-writer/sfwriter"
)

type config struct {
	Common platform.Common
	SF     sfapi.Config
	Budget sfwriter.GovernorConfig
}

func main() {
	var cfg config
	os.Exit(stage.Main(contracts.StageSFWriter, "Salesforce Opportunity writer", &cfg, &cfg.Common,
		func(ctx context.Context, env *stage.Env) (func(context.Context) error, error) {
			sf, err := sfapi.New(cfg.SF)
			if err != nil {
				return nil, err
			}
			rec, err := outcome.NewRecorder(ctx, env.Bus, env.Stage)
			if err != nil {
				return nil, err
			}
			w := &sfwriter.Writer{Bus: env.Bus, SF: sf, Outcomes: rec, Log: env.Log, LimitPause: cfg.Budget.Pause,
				Governor: &sfwriter.Governor{SF: sf, Config: cfg.Budget, Log: env.Log}}
			return w.Run, nil
		}))
}
