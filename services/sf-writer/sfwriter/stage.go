package sfwriter

import (
	"context"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// StageConfig is everything sf-writer reads from its environment besides platform.Common.
type StageConfig struct {
	SF     sfapi.Config
	Budget GovernorConfig
	Match  AccountMatch
	Batch  BatchConfig
}

// backlogStreamRate is the arrival rate, in commands a second, that keeps a batch behind a backlog
// waiting to fill: a backlog drains as fast as the mapper decides (~250-650 commands/s on 2 cores), and a
// backlog that has thinned below it is handed on without waiting for more.
const backlogStreamRate = 300

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
	consume := lingerOptions(env.Consume, cfg.Batch)
	w := &Writer{Bus: env.Bus, SF: sf, Outcomes: rec, Log: env.Log, Consume: consume, LimitPause: cfg.Budget.Pause,
		Governor: &Governor{SF: sf, Config: cfg.Budget, Log: env.Log}, AfterWrite: env.AfterWrite, Match: cfg.Match}
	if err := w.Learn(ctx); err != nil { // before the stage is reported ready
		return nil, err
	}
	return w.Run, nil
}

// lingerOptions is how long and on what a batch waits to fill (platform.fetchBatch): behind a backlog
// while commands arrive at backlogStreamRate or more, up to Linger; live traffic too only with
// LingerRate set (then at that rate). Options set in consume already are kept.
func lingerOptions(consume platform.ConsumeOptions, b BatchConfig) platform.ConsumeOptions {
	if consume.Linger <= 0 {
		consume.Linger = b.Linger
	}
	if consume.LingerGrowth <= 0 {
		rate := backlogStreamRate
		if b.LingerRate > 0 {
			rate = b.LingerRate
			consume.LingerLive = true // the operator's opt-in: live traffic at that rate waits too
		}
		step := consume.LingerStep
		if step <= 0 {
			step = 20 * time.Millisecond // platform's default step
		}
		consume.LingerGrowth = max(1, int(float64(rate)*step.Seconds()+0.5))
	}
	return consume
}
