package pcingest

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// StageConfig is everything pc-ingest reads from its environment besides platform.Common.
type StageConfig struct {
	PC     stage.PCConfig
	Trust  stage.WebhookTrust
	Ingest Config
}

// Stage is pc-ingest as a component: services/pc-ingest/main.go runs it as a process, the in-process
// system next to the other five.
var Stage = stage.Define(contracts.StagePCIngest, "Partner Center webhook receiver and reconcile poller", build)

func build(ctx context.Context, cfg *StageConfig, env *stage.Env) (stage.Runner, error) {
	pc, err := env.PCClient(ctx, cfg.PC)
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
	in := &Ingest{Bus: env.Bus, PC: pc, Verifier: v, Checkpoints: cps, Config: cfg.Ingest, Log: env.Log, Consume: env.Consume}
	mux := http.NewServeMux()
	mux.Handle(cfg.Ingest.Path, in)
	ln, err := env.Listen(cfg.Ingest.Listen)
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
}
