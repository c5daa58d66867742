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
	if rows := after[sfemu.ScanRowsCount] - before[sfemu.ScanRowsCount]; rows > scans {
		t.Fatalf("the %d backstop polls after the outage read %d rows by SystemModstamp, want at most %d (the last change, once a poll): the replayed changes were scanned again",
			scans, rows, scans)
	}
	if n := c.Stats().CatchUps; n != 0 {
		t.Fatalf("%d REST catch-ups after the outage, want none (the stored replay id was valid)", n)
	}
	for id, list := range f.snapshots(t) {
		seen := map[string]bool{}
		for i, o := range list {
			if seen[o.Version.Tag] {
				t.Fatalf("%s: version %s published twice", id, o.Version.Tag)
			}
			seen[o.Version.Tag] = true
			if i >= earlier[id] && o.Via != "cdc" {
				t.Fatalf("%s: a snapshot %s after the restart read %q, want every one from a change event", id, o.Version.Tag, o.Via)
			}
		}
	}
}
