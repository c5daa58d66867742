package sfwriter

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
)

// apiCalls is how many Salesforce API calls the emulator counted (the token endpoint is not an API call).
func apiCalls(e *sfemu.Emulator) int {
	used, _ := e.APIUsage()
	return used
}

// BenchmarkAPICalls reports Salesforce API calls per 1,000 changed Opportunities written by sf-writer: a
// backlog of 10,000 commands (creates with Account find-or-create, then updates) and a steady trickle (one
// command at a time, each written before the next arrives). Run with -benchtime=1x.
func BenchmarkAPICalls(b *testing.B) {
	b.Run("backlog-10000", func(b *testing.B) {
		for range b.N {
			f := newFixture(b, sfemu.Options{DailyAPILimit: 1 << 30}, nil)
			const n = 10000
			for i := 0; i < n; i++ {
				f.send(b, fmt.Sprintf("c-%d", i), createCmd(i, fmt.Sprintf("Customer %d", i%500)))
			}
			f.run(b)
			f.settledWithin(b, 10*time.Minute)
			creates := apiCalls(f.emu)
			opps := f.emu.All(sf.ObjectOpportunity)
			if len(opps) != n {
				b.Fatalf("%d opportunities", len(opps))
			}
			for i, o := range opps {
				f.send(b, fmt.Sprintf("u-%d", i), contracts.OpportunityCommand{LinkID: fmt.Sprint("l-", i), Op: contracts.OpUpdate,
					OpportunityID: o["Id"].(string), Fields: map[string]any{sf.FieldAmount: 5000 + i}})
			}
			f.settledWithin(b, 10*time.Minute)
			updates := apiCalls(f.emu) - creates
			b.ReportMetric(float64(creates)*1000/n, "create-calls/1000")
			b.ReportMetric(float64(updates)*1000/n, "update-calls/1000")
		}
	})
	b.Run("trickle", func(b *testing.B) {
		for range b.N {
			f := newFixture(b, sfemu.Options{DailyAPILimit: 1 << 30}, nil)
			f.run(b)
			const n = 200
			for i := 0; i < n; i++ {
				f.send(b, fmt.Sprintf("c-%d", i), createCmd(i, fmt.Sprintf("Customer %d", i%50)))
				f.settled(b)
			}
			creates := apiCalls(f.emu)
			for i, o := range f.emu.All(sf.ObjectOpportunity) {
				f.send(b, fmt.Sprintf("u-%d", i), contracts.OpportunityCommand{LinkID: fmt.Sprint("l-", i), Op: contracts.OpUpdate,
					OpportunityID: o["Id"].(string), Fields: map[string]any{sf.FieldAmount: 5000 + i}})
				f.settled(b)
			}
			updates := apiCalls(f.emu) - creates
			b.ReportMetric(float64(creates)*1000/n, "create-calls/1000")
			b.ReportMetric(float64(updates)*1000/n, "update-calls/1000")
		}
	})
}

// BenchmarkSteadyUpdate is sf-writer's cost per change on the steady path: one deal-value update at a
// time through Run (fetch, decode, applied-mark read, later-command read, the Collections call to the
// emulator over real HTTP, outcome and mark, ack), each written before the next is sent. The emulator and
// the NATS server run in the test process too: profile with -cpuprofile and read sf-writer's share
// (sfwriter, sfapi, platform, outcome, go-salesforce, net/http client).
func BenchmarkSteadyUpdate(b *testing.B) {
	f := newFixture(b, sfemu.Options{DailyAPILimit: 1 << 30}, nil)
	const links = 50
	ids := make([]string, links)
	for i := range ids {
		id, err := f.emu.Insert(sf.ObjectOpportunity, map[string]any{sf.FieldName: fmt.Sprint("Deal ", i),
			sf.FieldStageName: "Prospecting", sf.FieldCloseDate: "2027-06-30", sf.FieldReferralIdentifier: fmt.Sprintf("R%05d", i)})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id
	}
	written := make(chan string, 1)
	f.w.AfterWrite = func(id string) { written <- id }
	f.run(b)
	b.ResetTimer()
	cpu := processCPU()
	for i := range b.N {
		l := i % links
		f.send(b, fmt.Sprintf("u-%d", i), contracts.OpportunityCommand{LinkID: fmt.Sprintf("pc-R%05d", l), Op: contracts.OpUpdate,
			OpportunityID: ids[l], Purpose: "sync", Fields: map[string]any{sf.FieldAmount: 5000 + i,
				sf.FieldSyncStatus: "✔ in sync with Partner Center"}})
		<-written
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
	f.settled(b)
}

// processCPU is the test process's CPU time so far, user and system: sf-writer's, with the emulator's
// and the NATS server's beside it in this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
