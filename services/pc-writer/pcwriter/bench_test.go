package pcwriter

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// BenchmarkCreateBacklog measures pc-writer's part of a Salesforce → Partner Center backlog: b.N create
// commands for different Opportunities handed over in batches of 64 (as ConsumeBatch does in a backlog),
// against the Partner Center emulator over HTTP and an embedded nats-server, at each write concurrency.
// Reported: creates/s.
func BenchmarkCreateBacklog(b *testing.B) {
	for _, conc := range []int{8, 32} {
		b.Run(fmt.Sprintf("concurrency-%d", conc), func(b *testing.B) {
			w, _ := newWriter(b)
			w.Config.Concurrency = conc
			events := make([]platform.Event, b.N)
			for i := range events {
				opp := fmt.Sprintf("006BENCH%06d", i)
				want := newReferral("Bench "+opp, opp)
				events[i] = command(b, "cmd/"+opp, contracts.ReferralCommand{LinkID: "sf-" + opp, Op: contracts.OpCreate, OpportunityID: opp, Create: &want})
			}
			b.ResetTimer()
			start := time.Now()
			for batch := range slices.Chunk(events, defaultBatch) {
				for i, err := range w.HandleBatch(context.Background(), batch) {
					if err != nil {
						b.Fatalf("command %d: %v", i, err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
		})
	}
}
