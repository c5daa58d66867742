package sfingest

import (
	"fmt"
	"testing"
	"time"

	sf "github.com/cosell-dev/cosell/contracts/salesforce"
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
