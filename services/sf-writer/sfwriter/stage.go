package sfwriter

import (
	"context"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// StageConfig is everything sf-writer reads from its environment besides platform.Common.
type StageConfig struct {
	SF     sfapi.Config
	Budget GovernorConfig
	Match  AccountMatch
	Batch  BatchConfig
}

// Stage is sf-writer as a component: services/sf-writer/main.go runs it as a process, the in-process
// system next to the other five.
var Stage = stage.Define(contracts.StageSFWriter, "Salesforce Opportunity writer", build)

func build(ctx context.Context, cfg *StageConfig, env *stage.Env) (stage.Runner, error) {
	sf, err := env.SFClient(ctx, cfg.SF)
	if err != nil {
		return nil, err
	}
	rec, err := outcome.NewRecorder(ctx, env.Bus, env.Stage)
	if err != nil {
		return nil, err
	}
	consume := env.Consume
	if consume.Linger <= 0 {
		consume.Linger = cfg.Batch.Linger
	}
	if consume.LingerGrowth <= 0 && cfg.Batch.LingerRate > 0 {
		step := consume.LingerStep
		if step <= 0 {
			step = 20 * time.Millisecond // platform's default step
		}
		consume.LingerGrowth = max(1, int(float64(cfg.Batch.LingerRate)*step.Seconds()+0.5))
		consume.LingerLive = true // the operator's opt-in: live traffic at that rate waits too
	}
	w := &Writer{Bus: env.Bus, SF: sf, Outcomes: rec, Log: env.Log, Consume: consume, LimitPause: cfg.Budget.Pause,
		Governor: &Governor{SF: sf, Config: cfg.Budget, Log: env.Log}, AfterWrite: env.AfterWrite, Match: cfg.Match}
	if err := w.Learn(ctx); err != nil { // before the stage is reported ready
		return nil, err
	}
	return w.Run, nil
}
