package pcingest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// BenchmarkWebhookToSnapshot is what one incoming referral change costs pc-ingest (with, in the same
// process, the Partner Center emulator and the embedded nats-server): the emulator's signed webhook, its
// verification and durable hand-off, the fetcher's delivery, its read of the referral and the snapshot's
// publish. Each operation changes another referral, so every change is read and published on its own.
// Profile it with -cpuprofile and focus on pcingest, pcwebhook, pcapi and platform to see pc-ingest's part
// (the set-up creates the referrals the same way: its cost has the same shape). cpu-µs/op is the process's
// CPU time per change, the emulator's and the server's with pc-ingest's.
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
	cpu0 := testkit.ProcessCPU()
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
	b.ReportMetric(float64((testkit.ProcessCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkSnapshotVersion is the version check's reading of a stored snapshot (lastObserved), as it reads
// it and as it did before (the CloudEvent decoded, then its data by encoding/json into the version only).
func BenchmarkSnapshotVersion(b *testing.B) {
	v := 125000.0
	r := pc.Referral{ID: "r-1", Name: "Contoso migration to Azure", Status: pc.StatusActive, Substatus: pc.SubstatusAccepted,
		UpdatedDateTime: "2026-12-01T10:00:00.1234567Z", ETag: `"e1"`,
		CustomerProfile: &pc.CustomerProfile{Name: "Contoso Ltd", Size: "Size100to499Employees",
			Address: &pc.Address{AddressLine1: "1 Microsoft Way", City: "Redmond", State: "WA", PostalCode: "98052", Country: "US"},
			Team:    []pc.Member{{FirstName: "Ann", LastName: "Lee", Email: "ann@contoso.com", PhoneNumber: "+1 425 555 0100"}}},
		Details: &pc.Details{DealValue: &v, Currency: "USD", Notes: "Migration of the on-premises estate; Microsoft to help with funding."},
		Team:    []pc.Member{{FirstName: "Bo", LastName: "Ray", Email: "bo@partner.com"}, {FirstName: "Cy", LastName: "Day", Email: "cy@partner.com"}}}
	e, err := platform.NewEvent("pc/r-1/e1", contracts.TypeReferralObserved, contracts.StagePCIngest, r.ID,
		contracts.ReferralObserved{Referral: r, Version: contracts.ReferralVersion(r), ObservedAt: time.Now().UTC(), Via: "webhook"})
	if err != nil {
		b.Fatal(err)
	}
	subject := contracts.Subject(contracts.SubjectReferralObserved, r.ID)
	msg, err := platform.EncodeMsg(subject, e)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("snapshotVersionAt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if snapshotVersionAt(msg.Data).IsZero() {
				b.Fatal("no version")
			}
		}
	})
	b.Run("event and DataAs (before)", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e, err := platform.DecodeMsg(subject, msg.Header, msg.Data)
			if err != nil {
				b.Fatal(err)
			}
			if d, err := platform.DataAs[snapshotVersion](e); err != nil || d.Version.At.IsZero() {
				b.Fatal("no version", err)
			}
		}
	})
}
