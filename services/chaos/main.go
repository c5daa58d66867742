// Command chaos runs the fault-injection suite (internal/harness/chaos) and prints a one-line verdict; it exits 1
// when anything was lost, duplicated, left diverged or unexplained.
//
// Usage: go run ./services/chaos [-duration 60s] [-rate 8] [-kills 8] [-seed N] [-sf-cdc on|off]   (make chaos)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cosell-dev/cosell/services/internal/harness/chaos"
	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
)

func main() {
	dur := flag.Duration("duration", 60*time.Second, "how long the workload and the faults last")
	rate := flag.Float64("rate", 8, "workload operations per second")
	kills := flag.Int("kills", 8, "SIGKILLs of random stages")
	seed := flag.Int64("seed", time.Now().UnixNano(), "random seed (printed, to reproduce a run)")
	verbose := flag.Bool("v", false, "print every finding")
	cdc := flag.String("sf-cdc", "on", "sf-ingest's COSELL_SF_CDC: on follows Change Data Capture over the emulator's Pub/Sub API (the backstop poll 5 minutes away; the first kill -9 is sf-ingest's, mid-stream); off polls only")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "cosell-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(work)
	fmt.Fprintf(os.Stderr, "chaos: seed %d; building…\n", *seed)
	if err := fleet.Build(ctx, work); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	v, err := chaos.Run(ctx, chaos.Config{
		Bin: work, Dir: work, Duration: *dur, Rate: *rate, Kills: *kills, NATSRestart: true, Faults: true,
		Seed: *seed, Log: os.Stderr, SFCDC: *cdc,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if *verbose || !v.OK() {
		for _, p := range v.Problems {
			fmt.Fprintln(os.Stderr, " -", p)
		}
	}
	fmt.Println(v)
	if !v.OK() {
		os.Exit(1)
	}
}
