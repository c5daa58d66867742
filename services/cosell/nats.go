package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cosell-dev/cosell/services/internal/platform"
)

func newNATSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "nats", Short: "run a standalone nats-server with JetStream (file store) for development", Args: noArgs}
	listen := cmd.Flags().String("listen", "127.0.0.1:4222", "client address")
	data := cmd.Flags().String("data", "data/nats", "JetStream store directory")
	_ = cmd.MarkFlagDirname("data")
	out := addOutput(cmd)
	cmd.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		return runNATS(ctx, *listen, *data, out, stdout, stderr)
	})
	return cmd
}

func runNATS(ctx context.Context, listen, data string, out *output, stdout, stderr io.Writer) int {
	log := platform.NewLogger(stderr, "info", "nats")
	ns, err := platform.StartEmbedded(data, listen, log)
	if err != nil {
		fmt.Fprintf(stderr, "cosell nats: %v\n", err)
		return 1
	}
	info := map[string]string{"url": ns.ClientURL(), "store": data}
	out.print(stdout, info, func(w io.Writer) { fmt.Fprintf(w, "nats-server with JetStream on %s (store %s)\n", info["url"], data) })
	ctx, stop := platform.RunUntilSignal(ctx)
	defer stop()
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return 0
}
