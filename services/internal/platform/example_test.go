package platform_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// A stage's main only wires: config, logger, admin port, bus, provisioning, the consumer loop.
func Example() {
	var cfg struct {
		platform.Common
		PCBaseURL string `env:"COSELL_PC_URL" required:"true" validate:"url" help:"the Partner Center API base URL"`
	}
	if err := platform.LoadConfig(&cfg, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := platform.NewLogger(os.Stdout, cfg.LogLevel, contracts.StagePCWriter)
	ctx, stop := platform.RunUntilSignal(context.Background())
	defer stop()

	admin := platform.NewAdmin(cfg.AdminAddr, log)
	if _, err := admin.Start(); err != nil {
		log.Error("admin", "err", err)
		return
	}
	bus, err := platform.Connect(ctx, cfg.Bus, contracts.StagePCWriter, log, admin.Metrics)
	if err != nil {
		log.Error("bus", "err", err)
		return
	}
	defer bus.Close()
	if cfg.Bus.Provision {
		if err := bus.Provision(ctx); err != nil {
			log.Error("provision", "err", err)
			return
		}
	}
	admin.AddCheck("nats", bus.Check)
	admin.SetReady(true)

	err = bus.Consume(ctx, contracts.ConsumerPCWriter, func(ctx context.Context, e platform.Event) error {
		cmd, err := platform.DataAs[contracts.ReferralCommand](e)
		if err != nil {
			return platform.Permanent(err)
		}
		platform.Logger(ctx).Info("writing referral", "link_id", cmd.LinkID)
		// ... call Partner Center; on 429: return platform.RetryAfter(err, retryAfter)
		return nil
	}, platform.ConsumeOptions{})
	if err != nil {
		log.Error("consume", "err", err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = admin.Shutdown(shutdown)
}
