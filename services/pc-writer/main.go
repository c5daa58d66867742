// Command pc-writer carries out referral create and patch commands against the Partner Center API.
package main

import (
	"context"
	"os"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/pc-writer/pcwriter"
)

type config struct {
	Common platform.Common
	PC     stage.PCConfig
	Writer pcwriter.Config
}

func main() {
	var cfg config
	os.Exit(stage.Main(contracts.StagePCWriter, "Partner Center referral writer", &cfg, &cfg.Common,
		func(ctx context.Context, env *stage.Env) (func(context.Context) error, error) {
			pc, err := cfg.PC.Client(ctx, env.Log, env.Bus)
			if err != nil {
				return nil, err
			}
			rec, err := outcome.NewRecorder(ctx, env.Bus, env.Stage)
			if err != nil {
				return nil, err
			}
			w := &pcwriter.Writer{Bus: env.Bus, PC: pc, Outcomes: rec, Log: env.Log, Config: cfg.Writer}
			return w.Run, nil
		}))
}
