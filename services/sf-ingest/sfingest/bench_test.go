package sfingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// BenchmarkAPICalls reports Salesforce API calls per 1,000 changed Opportunities read by sf-ingest: a
// backlog of 10,000 changed Opportunities read in one poll (pages of 2,000), and a steady trickle (each
// poll sees one changed Opportunity). Run with -benchtime=1x.
func BenchmarkAPICalls(b *testing.B) {
	b.Run("backlog-10000", func(b *testing.B) {
		for range b.N {
			f := newFixture(b, Config{Overlap: time.Second, PageSize: 2000})
			const n = 10000
			for i := 0; i < n; i++ {
				if _, err := f.emu.Insert("Opportunity", map[string]any{"Name": fmt.Sprint("Opp ", i), "StageName": "Prospecting",
					"CloseDate": "2027-01-01", sf.FieldSyncWithPartnerCenter: true}); err != nil {
					b.Fatal(err)
				}
			}
			used0, _ := f.emu.APIUsage()
			got, err := f.in.Poll(b.Context())
			if err != nil || got != n {
				b.Fatalf("published %d of %d: %v", got, n, err)
			}
			used, _ := f.emu.APIUsage()
			b.ReportMetric(float64(used-used0)*1000/n, "calls/1000")
		}
	})
	b.Run("trickle", func(b *testing.B) {
		for range b.N {
			f := newFixture(b, Config{Overlap: time.Second, PageSize: 200})
			const n = 200
			used0, _ := f.emu.APIUsage()
			for i := 0; i < n; i++ {
				if _, err := f.emu.Insert("Opportunity", map[string]any{"Name": fmt.Sprint("Opp ", i), "StageName": "Prospecting",
					"CloseDate": "2027-01-01", sf.FieldSyncWithPartnerCenter: true}); err != nil {
					b.Fatal(err)
				}
				if got, err := f.in.Poll(b.Context()); err != nil || got != 1 {
					b.Fatalf("poll %d published %d: %v", i, got, err)
				}
			}
			used, _ := f.emu.APIUsage()
			b.ReportMetric(float64(used-used0)*1000/n, "calls/1000")
		}
	})
}

// BenchmarkCDCBacklog measures sf-ingest's part of a Salesforce → Partner Center backlog: 500 new synced
// Opportunities (each a change event that needs a REST read) made while it is stopped, then the time from
// its start (from the stored replay id) to the last snapshot on the observed stream, with the emulator,
// its Pub/Sub API and the nats-server in the same process. Reported: Opportunities/s, and the Composite
// reads and bursts it took. Run with -benchtime=1x.
func BenchmarkCDCBacklog(b *testing.B) {
	for range b.N {
		f := newCDCFixture(b)
		first := f.subscriberOn(b, f.in)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- first.Run(ctx) }()
		f.waitStored(b)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		acc := f.insert(b, "Account", map[string]any{"Name": "Backlog AG", "BillingCountry": "CH"})
		const n = 500
		for i := range n {
			f.insert(b, "Opportunity", map[string]any{"Name": fmt.Sprint("Backlog ", i), "StageName": "Prospecting",
				"CloseDate": "2027-01-01", "Amount": 1000 + i, "AccountId": acc, sf.FieldSyncWithPartnerCenter: true})
		}
		c := f.subscriberOn(b, f.in)
		bursts := f.burstCount()
		ctx, cancel = context.WithCancel(context.Background())
		start := time.Now()
		go func() { done <- c.Run(ctx) }()
		testkit.EventuallyTrue(b, time.Minute, "every snapshot", func() bool {
			return bustest.Count(b, f.bus, contracts.StreamObserved, contracts.SubjectOpportunityObserved+".>") == n
		})
		el := time.Since(start)
		b.ReportMetric(n/el.Seconds(), "opps/s")
		b.ReportMetric(float64(c.Stats().Reads), "composite")
		b.ReportMetric(float64(f.burstCount()-bursts), "bursts")
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
