// Command auditor consumes every audited decision and dead letter, writes the Audit summary back to each
// linked Opportunity through sf-writer, and serves the status API, page and JetStream lag metrics on its
// admin port.
package main

import (
	"context"
	"os"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

type config struct {
	Common         platform.Common
	SummaryEvery   time.Duration `env:"COSELL_AUDIT_SUMMARY_INTERVAL" default:"30s" help:"how often changed links get their Audit field rewritten; 0 turns the write-back off"`
	SummaryEntries int           `env:"COSELL_AUDIT_SUMMARY_ENTRIES" default:"10" help:"timeline entries shown in the Audit field"`
	SampleEvery    time.Duration `env:"COSELL_AUDIT_SAMPLE_INTERVAL" default:"10s" help:"how often lag and throughput are sampled for the charts"`
}

func main() {
	var cfg config
	os.Exit(stage.Main(contracts.StageAuditor, "audit trail, Audit field write-back and status page", &cfg, &cfg.Common,
		func(ctx context.Context, env *stage.Env) (func(context.Context) error, error) {
			a, err := auditor.New(ctx, env.Bus, env.Log)
			if err != nil {
				return nil, err
			}
			a.Options = auditor.Options{SummaryEvery: cfg.SummaryEvery, SummaryEntries: cfg.SummaryEntries, SampleEvery: cfg.SampleEvery}
			if err := a.Register(env.Admin.Registry); err != nil {
				return nil, err
			}
			a.Routes(env.Admin)
			return a.Run, nil
		}))
}
