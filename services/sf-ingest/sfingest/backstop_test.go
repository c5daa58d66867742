package sfingest

import (
	"fmt"
	"testing"
	"time"

	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// TestCDCLongOutageResumesWithoutAScan: sf-ingest is away for ten minutes of the org's clock (far longer
// than its backstop interval, here 100 ms so its polls run in the test) while 20 Opportunities change 200
// times. Restarted, it replays the changes from the stored replay id; no REST catch-up runs, and the
// backstop polls after the replay read none of the records it handled by SystemModstamp again (before,
// the first one re-read every record changed in the outage: its watermark stood where the outage began).
func TestCDCLongOutageResumesWithoutAScan(t *testing.T) {
	t.Parallel()
	const backstop = 100 * time.Millisecond
	f := newCDCFixture(t)
	first := f.subscriber(t)
	first.Config.Backstop = backstop
	stop := run(t, first)
	f.waitStored(t)
	var opps []string
	for i := range 20 {
		opps = append(opps, f.syncedOpportunity(t, fmt.Sprintf("Outage %d", i)))
	}
	testkit.EventuallyTrue(t, 15*time.Second, "20 snapshots", func() bool { return len(f.snapshots(t)) == 20 })
	perPoll := 1 + len(children) // queries in one poll (no Leads)
	polls := func() int { return f.emu.Counts()[sfemu.ScanCount] / perPoll }
	// Two backstop polls after the creates: the watermark stands after them, where the outage begins.
	p := polls()
	testkit.EventuallyTrue(t, 15*time.Second, "two backstop polls", func() bool { return polls() >= p+2 })
	stop()

	f.emu.AdvanceClock(10 * time.Minute)
	final := map[string]float64{}
	for i := range 200 {
		id, amount := opps[i%len(opps)], float64(1000+i)
		if err := f.emu.Update("Opportunity", id, map[string]any{"Amount": amount}); err != nil {
			t.Fatal(err)
		}
		final[id] = amount
	}
	// A last change a minute later: the only record a backstop may read again (its Overlap before the
	// newest change handled).
	f.emu.AdvanceClock(time.Minute)
	if err := f.emu.Update("Opportunity", opps[0], map[string]any{"Amount": 99999}); err != nil {
		t.Fatal(err)
	}
	final[opps[0]] = 99999
	before := f.emu.Counts()
	earlier := map[string]int{} // snapshots per Opportunity before the restart
	for id, list := range f.snapshots(t) {
		earlier[id] = len(list)
	}

	c := f.subscriber(t)
	c.Config.Backstop = backstop
	run(t, c)
	testkit.EventuallyTrue(t, 15*time.Second, "every final amount", func() bool {
		s := f.snapshots(t)
		for id, want := range final {
			list := s[id]
			if len(list) == 0 || list[len(list)-1].Opportunity.Fields[sf.FieldAmount] != want {
				return false
			}
		}
		return true
	})
	p = polls()
	testkit.EventuallyTrue(t, 15*time.Second, "two backstop polls after the replay", func() bool { return polls() >= p+2 })

	after := f.emu.Counts()
	scans := (after[sfemu.ScanCount] - before[sfemu.ScanCount]) / perPoll
	// A poll reads the last change once; one that comes as the replay's last responses are handled (the
	// wait for a caught-up subscription goes by the size of its batches) also the few changes before it. A
	// scan of the outage reads all 20 records at once.
	if rows := after[sfemu.ScanRowsCount] - before[sfemu.ScanRowsCount]; rows >= scans+len(opps)/2 {
		t.Fatalf("the %d backstop polls after the outage read %d rows by SystemModstamp, want fewer than %d (the last change once a poll, the replay's last few): the replayed changes were scanned again",
			scans, rows, scans+len(opps)/2)
	}
	if n := c.Stats().CatchUps; n != 0 {
		t.Fatalf("%d REST catch-ups after the outage, want none (the stored replay id was valid)", n)
	}
	for id, list := range f.uniqueSnapshots(t) {
		for i, o := range list {
			if i >= earlier[id] && o.Via != "cdc" {
				t.Fatalf("%s: a snapshot %s after the restart read %q, want every one from a change event", id, o.Version.Tag, o.Via)
			}
		}
	}
}

// TestCDCOwnWriteDroppedUnreadHoldsTheBackstop: cosell's write of a synced field to a record no seller
// changed within the backstop interval is dropped from its header unread; the backstop is what still
// reads it (CDC.reread), so it holds the Opportunity's coverage back, is stored for a next leader, and is
// lifted by the poll that read it.
func TestCDCOwnWriteDroppedUnreadHoldsTheBackstop(t *testing.T) {
	t.Parallel()
	f, c := startedCDC(t) // backstop an hour: the test polls itself
	opp := f.cdcOpportunity(t, "Held")
	f.poll(t) // the watermark after the create
	f.emu.AdvanceClock(2 * time.Hour)
	settled := f.burstsAfter(t)
	ownWrite(t, f.in.SF, "Opportunity", opp, map[string]any{sf.FieldAmount: 777})
	settled("the own write's burst")
	if c.Stats().Echoes != 1 {
		t.Fatalf("stats %+v, want the own write dropped unread", c.Stats())
	}
	if _, err := f.in.Checkpoints.Get(t.Context(), HeldKey()); err != nil {
		t.Fatalf("no hold stored for the own write dropped unread: %v", err)
	}
	// Changes after it: the coverage passes them, the hold keeps the poll reading from the own write.
	settled = f.burstsAfter(t)
	other := f.cdcOpportunity(t, "Later")
	settled("the later change's burst")
	before := f.emu.Counts()[sfemu.ScanRowsCount]
	f.poll(t)
	if rows := f.emu.Counts()[sfemu.ScanRowsCount] - before; rows < 2 {
		t.Fatalf("the backstop read %d rows, want the held own write's record and the later one", rows)
	}
	if _, err := f.in.Checkpoints.Get(t.Context(), HeldKey()); err == nil {
		t.Fatal("the hold stayed after a poll read past it")
	}
	// Lifted: a seller's change a minute later, and the poll reads only what came after the coverage.
	f.emu.AdvanceClock(time.Minute)
	settled = f.burstsAfter(t)
	if err := f.emu.Update("Opportunity", other, map[string]any{sf.FieldAmount: 1234}); err != nil {
		t.Fatal(err)
	}
	settled("the seller's change's burst")
	before = f.emu.Counts()[sfemu.ScanRowsCount]
	f.poll(t)
	if rows := f.emu.Counts()[sfemu.ScanRowsCount] - before; rows > 1 {
		t.Fatalf("after the hold was lifted the backstop read %d rows, want at most the newest change's (%s)", rows, other)
	}
}

// burstsAfter returns a wait for a burst handled (its coverage noted, its replay id stored) after now.
func (f *cdcFixture) burstsAfter(t *testing.T) func(what string) {
	f.mu.Lock()
	n := f.bursts
	f.mu.Unlock()
	return func(what string) {
		t.Helper()
		testkit.EventuallyTrue(t, 15*time.Second, what, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.bursts > n })
	}
}
