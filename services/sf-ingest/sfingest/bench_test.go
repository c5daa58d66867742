package sfingest

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub"
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

// BenchmarkCDCLiveBacklog measures sf-ingest while a backlog is being made: the subscriber runs (the
// stage's Pub/Sub settings: 100 requested, coalesced up to 1,000 events) while 8 writers create 500
// synced Opportunities, as the bench's SF → PC phase does. Reported: Opportunities/s from the first
// create to the last snapshot stored, the bursts and Composite reads it took. Run with -benchtime=1x.
func BenchmarkCDCLiveBacklog(b *testing.B) {
	for range b.N {
		f := newCDCFixture(b)
		c := f.subscriberOn(b, f.in)
		c.Config.PubSub.Coalesce = 1000
		ps, err := sfpubsub.New(c.Config.PubSub, sfpubsub.RESTAuth{SF: f.in.SF}, f.in.Log)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ps.Close() })
		c.PubSub = ps
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		f.waitStored(b)
		acc := f.insert(b, "Account", map[string]any{"Name": "Backlog AG", "BillingCountry": "CH"})
		const n, writers, rate = 500, 8, 500
		bursts, reads := f.burstCount(), c.Stats().Reads
		start := time.Now()
		// The writers pace themselves at about the rate the bench's 8 HTTP writers reach on the emulator.
		tick := time.NewTicker(time.Second / rate)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += writers {
					<-tick.C
					f.insert(b, "Opportunity", map[string]any{"Name": fmt.Sprint("Backlog ", i), "StageName": "Prospecting",
						"CloseDate": "2027-01-01", "Amount": 1000 + i, "AccountId": acc, sf.FieldSyncWithPartnerCenter: true})
				}
			}()
		}
		wg.Wait()
		tick.Stop()
		made := time.Since(start)
		testkit.EventuallyTrue(b, time.Minute, "every snapshot", func() bool {
			return bustest.Count(b, f.bus, contracts.StreamObserved, contracts.SubjectOpportunityObserved+".>") == n
		})
		el := time.Since(start)
		b.ReportMetric(n/el.Seconds(), "opps/s")
		b.ReportMetric(made.Seconds()*1000, "ms-to-create")
		b.ReportMetric(float64(c.Stats().Reads-reads), "composite")
		b.ReportMetric(float64(f.burstCount()-bursts), "bursts")
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCDCOwnWrites measures what sf-ingest holds and allocates while it follows cosell's own writes
// (the steady PC → SF path: sf-writer's Amount updates, dropped from their header and taken into the held
// snapshots): 1,000 synced Opportunities, then b.N own updates in Collections calls of 50. Reported:
// allocations and bytes per change event and the heap in use after a GC at the end (with the emulator's and the
// nats-server's, the same process: compare runs, or read -memprofile with -focus sfingest).
func BenchmarkCDCOwnWrites(b *testing.B) {
	f := newCDCFixture(b)
	c := f.subscriberOn(b, f.in)
	c.Config.PubSub.Coalesce = 1000
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	f.waitStored(b)
	acc := f.insert(b, "Account", map[string]any{"Name": "Steady AG", "BillingCountry": "CH"})
	const n, call = 1000, 50
	ids := make([]string, n)
	for i := range n {
		ids[i] = f.insert(b, "Opportunity", map[string]any{"Name": fmt.Sprint("Steady ", i), "StageName": "Prospecting",
			"CloseDate": "2027-01-01", "Amount": 1000 + i, "AccountId": acc, sf.FieldSyncWithPartnerCenter: true})
	}
	testkit.EventuallyTrue(b, time.Minute, "every snapshot", func() bool {
		return bustest.Count(b, f.bus, contracts.StreamObserved, contracts.SubjectOpportunityObserved+".>") == n
	})
	events := c.Stats().Events
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i += call {
		var recs []sfapi.Record
		for j := i; j < min(i+call, b.N); j++ {
			recs = append(recs, sfapi.Record{"Id": ids[j%n], sf.FieldAmount: 5000 + j})
		}
		if _, err := f.in.SF.UpdateRecords(b.Context(), "Opportunity", recs); err != nil {
			b.Fatal(err)
		}
	}
	testkit.EventuallyTrue(b, time.Minute, "every own write handled", func() bool { return c.Stats().Events >= events+b.N })
	b.StopTimer()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "allocs/event")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N), "B/event")
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-MiB")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
