package pcingest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// writerSide plays pc-writer on its own connection to the same server: it writes the create records and
// publishes the snapshot exactly as pc-writer does, so each step's order against the webhook is the test's.
type writerSide struct {
	t   *testing.T
	f   *fixture
	bus *platform.Bus
	kv  jetstream.KeyValue
}

func newWriterSide(t *testing.T, f *fixture) *writerSide {
	t.Helper()
	bus := bustest.Bus(t, f.ns, bustest.Config(5, 2*time.Second), contracts.StagePCWriter, nil)
	kv, err := bus.KV(context.Background(), contracts.BucketApplied)
	if err != nil {
		t.Fatal(err)
	}
	return &writerSide{t: t, f: f, bus: bus, kv: kv}
}

// begin records that a create for opp is under way and makes it; it returns the created referral and the
// record's revision.
func (w *writerSide) begin(opp string) (pc.Referral, contracts.PCCreate, uint64) {
	w.t.Helper()
	ctx := context.Background()
	rec := contracts.PCCreate{OpportunityID: opp, StartedAt: time.Now().UTC()}
	b, _ := json.Marshal(rec)
	rev, err := w.kv.Create(ctx, contracts.PCCreateKey(opp), b)
	if err != nil {
		w.t.Fatal(err)
	}
	v := 10.0
	r, err := w.f.in.PC.CreateReferral(ctx, pc.Referral{Name: "Deal " + opp, Type: pc.TypeIndependent, ExternalReferenceID: opp,
		CustomerProfile: &pc.CustomerProfile{Name: "Adatum"}, Consent: &pc.Consent{}, Details: &pc.Details{DealValue: &v, Currency: "USD"}})
	if err != nil {
		w.t.Fatal(err)
	}
	return r, rec, rev
}

// finish publishes the created referral as observed, then records its id, as pc-writer does.
func (w *writerSide) finish(r pc.Referral, rec contracts.PCCreate, rev uint64) {
	w.t.Helper()
	ctx := context.Background()
	if _, err := observed.PublishReferral(ctx, w.bus, contracts.StagePCWriter, r, "written"); err != nil {
		w.t.Fatal(err)
	}
	w.record(rec, rev, func(c *contracts.PCCreate) { c.ReferralID = r.ID })
}

func (w *writerSide) record(rec contracts.PCCreate, rev uint64, edit func(*contracts.PCCreate)) {
	w.t.Helper()
	edit(&rec)
	b, _ := json.Marshal(rec)
	if _, err := w.kv.Update(context.Background(), contracts.PCCreateKey(rec.OpportunityID), b, rev); err != nil {
		w.t.Fatal(err)
	}
}

// created is the notification Partner Center sends about r's creation, as pc-ingest's endpoint hands it off.
func created(t *testing.T, r pc.Referral) platform.Event {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, r.CreatedDateTime)
	if err != nil {
		t.Fatal(err)
	}
	e, err := platform.NewEvent("pcnote/test/"+r.ID, contracts.TypeReferralNotified, contracts.StagePCIngest, r.ID,
		contracts.ReferralNotified{EventName: pc.EventReferralCreated, ReferralID: r.ID, ChangedAt: at.UTC(), ReceivedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// handleAsync handles a notification in the background; the result comes on the channel.
func handleAsync(f *fixture, e platform.Event) <-chan error {
	done := make(chan error, 1)
	go func() { done <- f.in.HandleNotified(context.Background(), e) }()
	return done
}

func wait(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // a bound for the failure only
		t.Fatal("the notification was never handled")
	}
}

// ownCreateFixture is pc-ingest following pc-writer's create records (its fetcher is not running: the test
// hands it each notification), and pc-writer's side on its own connection.
func ownCreateFixture(t *testing.T, ownWait time.Duration) (*fixture, *writerSide) {
	t.Helper()
	f := newFixture(t, Config{OwnCreateWait: ownWait}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := f.in.FollowOwnCreates(ctx); err != nil {
		t.Fatal(err)
	}
	return f, newWriterSide(t, f)
}

// TestOwnCreateWebhookIsNotRead: whenever Partner Center delivers referral-created about a referral
// pc-writer created (after pc-writer published its snapshot, or before: while the create is under way),
// pc-ingest reads nothing and publishes nothing more: the create cost one call.
func TestOwnCreateWebhookIsNotRead(t *testing.T) {
	f, w := ownCreateFixture(t, time.Minute)

	// After: the snapshot is there when the webhook is handled.
	r, rec, rev := w.begin("006AFTER")
	w.finish(r, rec, rev)
	if err := f.in.HandleNotified(context.Background(), created(t, r)); err != nil {
		t.Fatal(err)
	}

	// Before (or while) the create is answered: the webhook is held until pc-writer says it made this
	// referral, then finds its snapshot.
	r2, rec2, rev2 := w.begin("006BEFORE")
	done := handleAsync(f, created(t, r2))
	testkit.EventuallyTrue(t, 10*time.Second, "the webhook is held", func() bool { return f.in.own.held() == 1 })
	w.finish(r2, rec2, rev2)
	wait(t, done)

	if c := f.emu.Counts(); c["referrals.create"] != 2 || c["referrals.get"] != 0 || c["referrals.list"] != 0 {
		t.Errorf("calls %v: two creates and nothing else", c)
	}
	for _, id := range []string{r.ID, r2.ID} {
		if n := f.snapshots(t, id); n != 1 {
			t.Errorf("referral %s: %d snapshots, want pc-writer's one", id, n)
		}
	}
}

// TestOwnCreateCrashIsReadAfterTheWait: pc-writer made the create and died before publishing its snapshot
// or recording it: the held webhook gives up after the wait and the referral is read and observed.
func TestOwnCreateCrashIsReadAfterTheWait(t *testing.T) {
	f, w := ownCreateFixture(t, 300*time.Millisecond)
	r, _, _ := w.begin("006CRASHED") // and nothing more
	wait(t, handleAsync(f, created(t, r)))
	if c := f.emu.Counts(); c["referrals.get"] != 1 {
		t.Errorf("calls %v: one read after the wait", c)
	}
	m, err := f.bus.LastMsg(context.Background(), contracts.StreamObserved, contracts.Subject(contracts.SubjectReferralObserved, r.ID))
	if err != nil {
		t.Fatalf("the crashed create's referral is not observed: %v", err)
	}
	e, _ := m.Event()
	if d, err := platform.DataAs[contracts.ReferralObserved](e); err != nil || d.Via != "webhook" || d.Referral.ExternalReferenceID != "006CRASHED" {
		t.Errorf("snapshot %+v (%v), want pc-ingest's read of the referral", d, err)
	}
}

// TestOthersReferralsAreReadWhileCreatesAreUnderWay: a Microsoft seller's referral created while a
// pc-writer create is under way is held only until that create is answered (with another referral, or
// failed), then read; with nothing under way it is read at once.
func TestOthersReferralsAreReadWhileCreatesAreUnderWay(t *testing.T) {
	f, w := ownCreateFixture(t, time.Minute)
	for i, end := range []string{"created", "failed"} {
		t.Run(end, func(t *testing.T) {
			ours, rec, rev := w.begin(fmt.Sprintf("006OTHER%d", i))
			theirs := seller(t, f.emu, "Microsoft's "+end)
			before := f.emu.Counts()["referrals.get"]
			done := handleAsync(f, created(t, theirs))
			testkit.EventuallyTrue(t, 10*time.Second, "the webhook is held", func() bool { return f.in.own.held() == 1 })
			if end == "created" {
				w.finish(ours, rec, rev)
			} else {
				w.record(rec, rev, func(c *contracts.PCCreate) { c.Failed = "503 serviceNotAvailable" })
			}
			wait(t, done)
			if n := f.emu.Counts()["referrals.get"] - before; n != 1 {
				t.Errorf("%d reads of the seller's referral, want 1", n)
			}
			if n := f.snapshots(t, theirs.ID); n != 1 {
				t.Errorf("%d snapshots of the seller's referral", n)
			}
		})
	}
	theirs := seller(t, f.emu, "Microsoft's, nothing under way")
	if err := f.in.HandleNotified(context.Background(), created(t, theirs)); err != nil {
		t.Fatal(err)
	}
	if n := f.snapshots(t, theirs.ID); n != 1 {
		t.Errorf("%d snapshots of the seller's referral read at once", n)
	}
}
