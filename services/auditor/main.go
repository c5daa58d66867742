// Command auditor consumes every audited decision and serves the status API and page on its admin port.
package main

import (
	"context"
	"os"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/app"
	"github.com/cosell-dev/cosell/services/internal/runtime"
)

type config struct {
	Common runtime.Common
}

func main() {
	var cfg config
	os.Exit(app.Main(contracts.StageAuditor, "audit trail and status page", &cfg, &cfg.Common,
		func(ctx context.Context, env *app.Env) (func(context.Context) error, error) {
			a, err := auditor.New(ctx, env.Bus, env.Log)
			if err != nil {
				return nil, err
			}
			a.Routes(env.Admin)
			return a.Run, nil
		}))
}
