package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/services/internal/harness/chaos"
)

// TestChaosShort is the short version of `make chaos`: every stage as its own process, a mixed workload from
// both sides, two SIGKILLs, a NATS restart and upstream faults in both emulators, then the full check.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run skipped in -short mode")
	}
	v, err := chaos.Run(context.Background(), chaos.Config{
		Bin: binaries(t), Dir: t.TempDir(), Duration: 15 * time.Second, Rate: 5, Kills: 2,
		NATSRestart: true, Faults: true, Seed: 42, Quiesce: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(v)
	for _, p := range v.Problems {
		t.Error(p)
	}
	if v.Pairs == 0 || v.Kills == 0 || v.NATSRestarts == 0 || v.Faults == 0 {
		t.Fatalf("the run injected or synced nothing: %s", v)
	}
}
