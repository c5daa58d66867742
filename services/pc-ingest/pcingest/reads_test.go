package pcingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// TestReadVersionsTrustOnlyWhatCannotBeLost: a version read while handling one notification answers the
// others, not that notification's own redelivery (its publish may have failed); a version found stored
// answers every notification; an older version never replaces a newer one; the oldest referral is forgotten
// first.
func TestReadVersionsTrustOnlyWhatCannotBeLost(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	var r readVersions
	if _, ok := r.covers("r-1", t0, 7); ok {
		t.Fatal("an unknown referral is covered")
	}
	r.published("r-1", t1, 7) // read while handling stream sequence 7, its ack not in yet
	for _, c := range []struct {
		changed time.Time
		seq     uint64
		want    bool
	}{
		{t0, 8, true},  // an older change behind it
		{t1, 8, true},  // the same change notified again
		{t2, 8, false}, // a newer change: read it
		{t0, 7, false}, // sequence 7 redelivered: its publish may have failed, read again
	} {
		if _, ok := r.covers("r-1", c.changed, c.seq); ok != c.want {
			t.Errorf("change %s at seq %d: covered %v, want %v", c.changed.Format(time.TimeOnly), c.seq, ok, c.want)
		}
	}
	r.published("r-1", t1, 0) // found stored
	if _, ok := r.covers("r-1", t0, 7); !ok {
		t.Error("a stored version does not answer the redelivery of its reader")
	}
	r.published("r-1", t0, 9)
	if have, ok := r.covers("r-1", t1, 9); !ok || !have.Equal(t1) {
		t.Errorf("an older read replaced the newer version: %v %v", have, ok)
	}
	for i := range maxRemembered {
		r.published(fmt.Sprint("other-", i), t1, 0)
	}
	if _, ok := r.covers("r-1", t0, 8); ok {
		t.Error("the oldest referral is still remembered past maxRemembered others")
	}
	if _, ok := r.covers(fmt.Sprint("other-", maxRemembered-1), t0, 8); !ok {
		t.Error("the newest referral is forgotten")
	}
}

// TestBurstOfChangesIsReadOnce: a referral created and changed ten times before the fetcher runs is read
// once, and that one read's snapshot (the newest version) answers all eleven notifications.
func TestBurstOfChangesIsReadOnce(t *testing.T) {
	f := newFixture(t, Config{}, nil)
	r := seller(t, f.emu, "Burst")
	for i := range 10 {
		v := float64(2000 + i)
		var err error
		if r, err = f.emu.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 10*time.Second, "eleven notifications handed off", func() (bool, string) {
		n := f.count(t, contracts.StreamObserved, contracts.Subject(contracts.SubjectReferralNotified, r.ID))
		return n == 11, fmt.Sprint(n)
	})
	gets := f.emu.Counts()["referrals.get"]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.in.RunFetcher(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fetcher stopped with %v", err)
		}
	})
	f.settled(t)
	if n := f.emu.Counts()["referrals.get"] - gets; n != 1 {
		t.Errorf("%d reads for eleven notifications of one referral, want 1", n)
	}
	if n := f.snapshots(t, r.ID); n != 1 {
		t.Errorf("%d snapshots, want 1 (the newest version)", n)
	}
	d := bustest.Last[contracts.ReferralObserved](t, f.bus, contracts.StreamObserved, contracts.Subject(contracts.SubjectReferralObserved, r.ID))
	if d.Referral.ETag != r.ETag || *d.Referral.Details.DealValue != 2009 {
		t.Errorf("snapshot of %s (deal value %v), want the newest %s (2009)", d.Referral.ETag, *d.Referral.Details.DealValue, r.ETag)
	}
}

// The version lastObserved reads from a stored snapshot is the one the whole event decodes to, for every
// snapshot a stage publishes (observed.PublishReferral's encoding); a snapshot without one, or unreadable
// data, reads as none (the referral is then read from Partner Center).
func TestSnapshotVersionReadAsTheEventDecodes(t *testing.T) {
	ctx := context.Background()
	bus := bustest.Bus(t, bustest.Server(t), bustest.Config(5, time.Second), contracts.StagePCIngest, nil)
	at := time.Date(2026, 12, 1, 10, 0, 0, 123456700, time.UTC)
	v := 1500.0
	r := pc.Referral{ID: "r-1", Name: "Contoso", UpdatedDateTime: at.Format("2006-01-02T15:04:05.0000000Z"), ETag: `"e1"`,
		Details: &pc.Details{DealValue: &v, Currency: "USD", Notes: "a \"quoted\" version: {\"version\":{\"at\":\"2001-01-01T00:00:00Z\"}}"}}
	if _, err := observed.PublishReferral(ctx, bus, contracts.StagePCIngest, r, "webhook"); err != nil {
		t.Fatal(err)
	}
	m, err := bus.LastMsg(ctx, contracts.StreamObserved, contracts.Subject(contracts.SubjectReferralObserved, r.ID))
	if err != nil {
		t.Fatal(err)
	}
	e, err := m.Event()
	if err != nil {
		t.Fatal(err)
	}
	want, err := platform.DataAs[contracts.ReferralObserved](e)
	if err != nil {
		t.Fatal(err)
	}
	if got := snapshotVersionAt(m.Data); !got.Equal(want.Version.At) || !got.Equal(at) {
		t.Fatalf("version %v, the event decodes to %v (the referral's %v)", got, want.Version.At, at)
	}
	for _, data := range []string{`{"referral":{"id":"r-1"}}`, `{"version":`, `not json`, ``} {
		if got := snapshotVersionAt([]byte(data)); !got.IsZero() {
			t.Errorf("%q: version %v, want none", data, got)
		}
	}
}

// TestCreateBurst: referral-created notifications make a burst from the createBurstFloor-th within a
// createBurstWindow on (each then marked with the window's count); spread out (a seller's share now and
// then) they never do, and a burst's count falls away as its window passes.
func TestCreateBurst(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var c createBurst
	var marks []uint64
	for i := range createBurstFloor + 2 {
		marks = append(marks, c.add(t0.Add(time.Duration(i)*10*time.Millisecond)))
	}
	for i, m := range marks {
		want := uint64(0)
		if i+1 >= createBurstFloor {
			want = uint64(i + 1)
		}
		if m != want {
			t.Errorf("create %d of a burst: mark %d, want %d (all %v)", i+1, m, want, marks)
		}
	}
	if m := c.add(t0.Add(createBurstWindow + time.Second)); m != 0 {
		t.Errorf("a create after the burst's window: mark %d, want 0", m)
	}
	var spread createBurst
	for i := range 10 * createBurstFloor {
		if m := spread.add(t0.Add(time.Duration(i) * createBurstWindow / (createBurstFloor - 1))); m != 0 {
			t.Fatalf("create %d, %d a window apart: marked %d", i, createBurstFloor-1, m)
		}
	}
}
