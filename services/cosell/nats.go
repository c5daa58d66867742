package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/platform/natsembed"
)

func newNATSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "nats", Short: "run a standalone nats-server with JetStream (file store) for development", Args: noArgs}
	listen := cmd.Flags().String("listen", "127.0.0.1:4222", "client address")
	data := cmd.Flags().String("data", "data/nats", "JetStream store directory")
	_ = cmd.MarkFlagDirname("data")
	pprofAddr := cmd.Flags().String("pprof", "", "also serve the server's Go runtime profiles (net/http/pprof: /debug/pprof/heap, …) on this address, e.g. 127.0.0.1:6060 (empty = off)")
	memLimit := cmd.Flags().String("memory-limit", "", "the Go runtime's soft memory limit for the server, as GOMEMLIMIT takes it (e.g. 512MiB; off = none); default GOMEMLIMIT from the environment, else "+defaultNATSMemoryLimit)
	out := addOutput(cmd)
	cmd.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		limit := *memLimit
		if limit == "" && os.Getenv("GOMEMLIMIT") == "" {
			limit = defaultNATSMemoryLimit
		}
		if limit != "" {
			n, err := platform.ParseMemoryLimit(limit)
			if err != nil {
				fmt.Fprintf(stderr, "cosell nats: --memory-limit: %v\n", err)
				return 2
			}
			defer debug.SetMemoryLimit(debug.SetMemoryLimit(n)) // the process's limit again after (tests run it in theirs)
		}
		return runNATS(ctx, *listen, *data, *pprofAddr, out, stdout, stderr)
	})
	return cmd
}

func runNATS(ctx context.Context, listen, data, pprofAddr string, out *output, stdout, stderr io.Writer) int {
	log := platform.NewLogger(stderr, "info", "nats")
	ns, err := natsembed.Start(data, listen, log)
	if err != nil {
		fmt.Fprintf(stderr, "cosell nats: %v\n", err)
		return 1
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	info := map[string]string{"url": ns.ClientURL(), "store": data}
	if pprofAddr != "" {
		ln, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			fmt.Fprintf(stderr, "cosell nats: --pprof %s: %v\n", pprofAddr, err)
			return 1
		}
		srv := &http.Server{Handler: platform.ProfileHandler()}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("pprof server stopped", "err", err)
			}
		}()
		defer srv.Close()
		info["pprof"] = "http://" + ln.Addr().String() + "/debug/pprof/"
	}
	if limit := debug.SetMemoryLimit(-1); limit != platform.NoMemoryLimit {
		info["memoryLimit"] = fmt.Sprintf("%d MiB", limit>>20)
	}
	out.print(stdout, info, func(w io.Writer) {
		fmt.Fprintf(w, "nats-server with JetStream on %s (store %s)\n", info["url"], data)
		if info["pprof"] != "" {
			fmt.Fprintf(w, "profiles on %s\n", info["pprof"])
		}
		if info["memoryLimit"] != "" {
			fmt.Fprintf(w, "Go memory limit (GOMEMLIMIT) %s\n", info["memoryLimit"])
		}
	})
	ctx, stop := platform.RunUntilSignal(ctx)
	defer stop()
	<-ctx.Done()
	return 0
}

// defaultNATSMemoryLimit is the development server's soft memory limit. Without one the Go heap grows to
// twice what is live before it is collected (GOGC=100): the bench's soak measured the server's live heap
// at 90–160 MB (the file store's block buffers, the duplicate window's ids, the per-subject trees) and its
// resident memory at twice that and climbing. Under the limit the GC collects sooner instead; above it the
// server keeps running and the GC works harder (at most half the CPU), so nothing fails at the limit. It
// is set before the server starts, so JetStream's memory-store ceiling (75 % of it) follows it too.
// docs/benchmarks.md ("nats-server's memory") has the runs.
const defaultNATSMemoryLimit = "256MiB"
