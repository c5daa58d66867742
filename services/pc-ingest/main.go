// Command pc-ingest receives Partner Center's signed webhook notifications and polls referrals as a
// backstop, publishing full referral snapshots to JetStream.
package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/pc-ingest/pcingest"
)

type config struct {
	Common platform.Common
	PC     stage.PCConfig
	Trust  stage.WebhookTrust
	Ingest pcingest.Config
}

func main() {
	var cfg config
	os.Exit(stage.Main(contracts.StagePCIngest, "Partner Center webhook receiver and reconcile poller", &cfg, &cfg.Common,
		func(ctx context.Context, env *stage.Env) (func(context.Context) error, error) {
			pc, err := cfg.PC.Client(ctx, env.Log, env.Bus)
			if err != nil {
				return nil, err
			}
			v, err := cfg.Trust.Verifier()
			if err != nil {
				return nil, err
			}
			cps, err := env.Bus.KV(ctx, contracts.BucketCheckpoints)
			if err != nil {
				return nil, err
			}
			in := &pcingest.Ingest{Bus: env.Bus, PC: pc, Verifier: v, Checkpoints: cps, Config: cfg.Ingest, Log: env.Log}
			mux := http.NewServeMux()
			mux.Handle(cfg.Ingest.Path, in)
			ln, err := net.Listen("tcp", cfg.Ingest.Listen)
			if err != nil {
				return nil, err
			}
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					env.Log.Error("webhook listener", "err", err)
				}
			}()
			env.Log.Info("webhook listening", "addr", ln.Addr().String(), "path", cfg.Ingest.Path)
			return func(ctx context.Context) error {
				go func() {
					// Stop taking notifications first; one refused now is delivered again by Partner Center.
					<-ctx.Done()
					shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_ = srv.Shutdown(shut)
				}()
				return in.Run(ctx)
			}, nil
		}))
}
