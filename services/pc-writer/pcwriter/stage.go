package pcwriter

import (
	"context"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// StageConfig is everything pc-writer reads from its environment besides platform.Common.
type StageConfig struct {
	PC     stage.PCConfig
	Writer Config
}

// Stage is pc-writer as a component: services/pc-writer/main.go runs it as a process, the in-process
// system next to the other five.
var Stage = stage.Define(contracts.StagePCWriter, "Partner Center referral writer", build)

func build(ctx context.Context, cfg *StageConfig, env *stage.Env) (stage.Runner, error) {
	pc, err := env.PCClient(ctx, cfg.PC)
	if err != nil {
		return nil, err
	}
	rec, err := outcome.NewRecorder(ctx, env.Bus, env.Stage)
	if err != nil {
		return nil, err
	}
	w := &Writer{Bus: env.Bus, PC: pc, Outcomes: rec, Log: env.Log, Config: cfg.Writer, Consume: env.Consume,
		AfterWrite: env.AfterWrite}
	return w.Run, nil
}
