package main

import (
	"context"
	"fmt"
	"io"

	"github.com/cosell-dev/cosell/services/internal/platform"
)

func cmdNATS(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("nats", "run a standalone nats-server with JetStream (file store) for development", stderr)
	listen := fs.String("listen", "127.0.0.1:4222", "client address")
	data := fs.String("data", "data/nats", "JetStream store directory")
	if done, code := parse(fs, args); done {
		return code
	}
	log := platform.NewLogger(stderr, "info", "nats")
	ns, err := platform.StartEmbedded(*data, *listen, log)
	if err != nil {
		fmt.Fprintf(stderr, "cosell nats: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "nats-server with JetStream on %s (store %s)\n", ns.ClientURL(), *data)
	ctx, stop := platform.RunUntilSignal(ctx)
	defer stop()
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return 0
}
