package pcingest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// BenchmarkWebhookToSnapshot is what one incoming referral change costs pc-ingest (with, in the same
// process, the Partner Center emulator and the embedded nats-server): the emulator's signed webhook, its
// verification and durable hand-off, the fetcher's delivery, its read of the referral and the snapshot's
// publish. Each operation changes another referral, so every change is read and published on its own.
// Profile it with -cpuprofile and focus on pcingest, pcwebhook, pcapi and platform to see pc-ingest's part
// (the set-up creates the referrals the same way: its cost has the same shape).
func BenchmarkWebhookToSnapshot(b *testing.B) {
	f := newFixture(b, Config{Reads: 32}, all)
	observed := func() int { return f.count(b, contracts.StreamObserved, contracts.SubjectReferralObserved+".>") }
	ids := make([]string, b.N)
	for i := range ids {
		v := 1000.0
		r, err := f.emu.SellerCreate(pc.Referral{Name: fmt.Sprintf("bench %d", i), Details: &pc.Details{DealValue: &v, Currency: "USD"}})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = r.ID
	}
	testkit.EventuallyTrue(b, 5*time.Minute, "created referrals observed", func() bool { return observed() == b.N })
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			v := 2000.0
			if _, err := f.emu.SellerUpdate(ids[n.Add(1)-1], pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
				b.Error(err)
			}
		}
	})
	testkit.Eventually(b, 5*time.Minute, "every change observed", func() (bool, string) {
		got := observed()
		return got == 2*b.N, fmt.Sprintf("%d of %d snapshots", got, 2*b.N)
	})
	b.StopTimer()
}
