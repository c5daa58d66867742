package sfingest

import (
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// TestCDCCrashBeforeTheCheckpointRepeatsNothing: with the replay id stored at most once an hour,
// sf-ingest handles a seller's creates and edits and cosell's own writes (the Audit summary, a synced
// field) and dies before storing their replay id (its NATS connection cut, as kill -9 leaves it: the store
// at the end fails). The next run resumes from the older stored replay id and handles every one of those
// events again, at no cost: no snapshot published (none twice, none new), no Salesforce call. A change
// after the restart is published as usual, and the orderly stop stores the replay id.
func TestCDCCrashBeforeTheCheckpointRepeatsNothing(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	crashBus := bustest.Bus(t, f.ns, bustest.Config(3, 5*time.Second), contracts.StageSFIngest, nil)
	cps, err := crashBus.KV(t.Context(), contracts.BucketCheckpoints)
	if err != nil {
		t.Fatal(err)
	}
	in := &Ingest{Bus: crashBus, SF: f.in.SF, Checkpoints: cps, Config: f.in.Config, Log: f.in.Log, Extra: f.in.Extra}
	first := f.subscriberOn(t, in)
	first.Config.CheckpointInterval = time.Hour
	w1 := follow(first)
	stop := run(t, first)
	f.waitStored(t)
	replayRev := func() uint64 {
		t.Helper()
		e, err := f.in.Checkpoints.Get(t.Context(), ReplayKey(sfemu.AllChangeEvents))
		if err != nil {
			t.Fatal(err)
		}
		return e.Revision()
	}
	stored := replayRev()

	opps, want := f.opportunities(t, "Crash", 3)
	for i, id := range opps {
		if err := f.emu.Update("Opportunity", id, map[string]any{"Amount": 2000 + i}); err != nil {
			t.Fatal(err)
		}
		want[id] = float64(2000 + i)
	}
	f.amounts(t, "three edits", want)
	f.emu.AdvanceClock(2 * time.Hour) // no seller change within the backstop interval: own writes drop unread
	ownWrite(t, f.in.SF, "Opportunity", opps[0], map[string]any{sf.FieldAudit: "applied → salesforce [dealValue]"})
	ownWrite(t, f.in.SF, "Opportunity", opps[1], map[string]any{sf.FieldAmount: 4321})
	testkit.EventuallyTrue(t, 15*time.Second, "the own writes dropped", func() bool { return first.Stats().Echoes == 2 })
	handled := first.Stats().Events
	testkit.EventuallyTrue(t, 15*time.Second, "every burst handled", func() bool { return w1.done() == handled })
	if rev := replayRev(); rev != stored {
		t.Fatalf("the replay id was stored again during %d events (revision %d → %d), want once an hour", handled, stored, rev)
	}
	before := f.snapshots(t)

	crashBus.Abort()
	stop()
	if rev := replayRev(); rev != stored {
		t.Fatalf("the crashed run stored its replay id (revision %d → %d): the test needs it not to", stored, rev)
	}

	second := f.subscriber(t)
	second.Config.CheckpointInterval = time.Hour
	w2 := follow(second)
	stop = run(t, second)
	testkit.EventuallyTrue(t, 15*time.Second, "the earlier run's events handled again", func() bool { return w2.done() >= handled })
	after := f.uniqueSnapshots(t)
	for _, id := range opps {
		if len(after[id]) != len(before[id]) {
			t.Fatalf("%s: %d snapshots after the replay, %d before: the repeats were published", id, len(after[id]), len(before[id]))
		}
	}
	if st := second.Stats(); st.Reads != 0 || st.Echoes != 2 || st.Reflected == 0 || st.Snapshots != 0 {
		t.Fatalf("replay stats %+v: want the events reflected in the earlier run's snapshots, the own writes dropped again, no read, no snapshot", st)
	}

	if err := f.emu.Update("Opportunity", opps[2], map[string]any{"Amount": 9999}); err != nil {
		t.Fatal(err)
	}
	want[opps[2]] = 9999
	f.amounts(t, "a change after the restart", want)
	stop()
	if rev := replayRev(); rev == stored {
		t.Fatal("the orderly stop did not store the replay id handled")
	}
}
