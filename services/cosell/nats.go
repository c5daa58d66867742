package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/cosell-dev/cosell/services/internal/platform"
)

func newNATSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "nats", Short: "run a standalone nats-server with JetStream (file store) for development", Args: noArgs}
	listen := cmd.Flags().String("listen", "127.0.0.1:4222", "client address")
	data := cmd.Flags().String("data", "data/nats", "JetStream store directory")
	_ = cmd.MarkFlagDirname("data")
	pprofAddr := cmd.Flags().String("pprof", "", "also serve the server's Go runtime profiles (net/http/pprof: /debug/pprof/heap, …) on this address, e.g. 127.0.0.1:6060 (empty = off)")
	out := addOutput(cmd)
	cmd.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		return runNATS(ctx, *listen, *data, *pprofAddr, out, stdout, stderr)
	})
	return cmd
}

func runNATS(ctx context.Context, listen, data, pprofAddr string, out *output, stdout, stderr io.Writer) int {
	log := platform.NewLogger(stderr, "info", "nats")
	ns, err := platform.StartEmbedded(data, listen, log)
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
		srv := &http.Server{Handler: profileHandler()}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("pprof server stopped", "err", err)
			}
		}()
		defer srv.Close()
		info["pprof"] = "http://" + ln.Addr().String() + "/debug/pprof/"
	}
	if limit := debug.SetMemoryLimit(-1); limit != noMemoryLimit {
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

// noMemoryLimit is what debug.SetMemoryLimit reports when GOMEMLIMIT is not set.
const noMemoryLimit = int64(^uint64(0) >> 1)

// profileHandler serves net/http/pprof on its own mux, so the profiles are only where --pprof asks.
func profileHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
