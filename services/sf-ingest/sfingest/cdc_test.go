package sfingest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// cdcFixture is the poller fixture plus the emulator's Pub/Sub API on 127.0.0.1 and a CDC subscriber.
type cdcFixture struct {
	*fixture
	pubsubURL string
	mu        sync.Mutex
	bursts    int
}

func newCDCFixture(t testing.TB) *cdcFixture {
	t.Helper()
	f := newFixture(t, Config{Overlap: time.Second})
	f.in.Extra = mapping.Default().SalesforceFields() // as the stage does: the fields the mapping syncs
	f.emu.SetPubSubKeepAlive(50 * time.Millisecond)   // an idle stream answers soon, so tests see it open
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.emu.ServePubSub(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return &cdcFixture{fixture: f, pubsubURL: "http://" + l.Addr().String()}
}

// subscriber builds a CDC over the fixture's Ingest with its own Pub/Sub client.
func (f *cdcFixture) subscriber(t *testing.T) *CDC {
	t.Helper()
	return f.subscriberOn(t, f.in)
}

// subscriberOn builds a CDC over in (the fixture's Salesforce, another bus) with its own Pub/Sub client.
func (f *cdcFixture) subscriberOn(t testing.TB, in *Ingest) *CDC {
	t.Helper()
	cfg := CDCConfig{Channels: []string{sfemu.AllChangeEvents}, Backstop: time.Hour, OwnClient: "cosell",
		PubSub: sfpubsub.Config{Endpoint: f.pubsubURL, BatchSize: 100, MaxBackoff: 50 * time.Millisecond}}
	ps, err := sfpubsub.New(cfg.PubSub, sfpubsub.RESTAuth{SF: f.in.SF}, f.in.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	return &CDC{In: in, PubSub: ps, Config: cfg, AfterBurst: func(CDCStats) {
		f.mu.Lock()
		f.bursts++
		f.mu.Unlock()
	}}
}

// burstCount is how many bursts the fixture's subscribers have handled so far.
func (f *cdcFixture) burstCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bursts
}

// run starts c until the returned stop is called.
func run(t *testing.T, c *CDC) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("cdc run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// startedCDC is a fixture with a subscriber running and its stream open.
func startedCDC(t *testing.T) (*cdcFixture, *CDC) {
	t.Helper()
	f := newCDCFixture(t)
	c := f.subscriber(t)
	run(t, c)
	f.waitStored(t)
	return f, c
}

// cdcOpportunity creates a synced Opportunity and waits for its snapshot from the change event.
func (f *cdcFixture) cdcOpportunity(t *testing.T, name string) string {
	t.Helper()
	opp := f.syncedOpportunity(t, name)
	f.waitSnapshot(t, opp, "the created opportunity", func(o contracts.OpportunityObserved) bool { return o.Via == "cdc" })
	return opp
}

// waitStored polls until the channel's replay id is stored (the subscription is up and has handled its
// first response).
func (f *cdcFixture) waitStored(t testing.TB) {
	t.Helper()
	testkit.EventuallyTrue(t, 15*time.Second, "a stored replay id", func() bool {
		_, err := f.in.Checkpoints.Get(context.Background(), ReplayKey(sfemu.AllChangeEvents))
		return err == nil
	})
}

// snapshots reads every observed snapshot of the stream, by opportunity id, in order.
// uniqueSnapshots is snapshots, failing the test when any Opportunity's version was published twice.
func (f *cdcFixture) uniqueSnapshots(t *testing.T) map[string][]contracts.OpportunityObserved {
	t.Helper()
	all := f.snapshots(t)
	for id, list := range all {
		seen := map[string]bool{}
		for _, o := range list {
			if seen[o.Version.Tag] {
				t.Fatalf("%s: version %s published twice", id, o.Version.Tag)
			}
			seen[o.Version.Tag] = true
		}
	}
	return all
}

func (f *cdcFixture) snapshots(t *testing.T) map[string][]contracts.OpportunityObserved {
	t.Helper()
	out, err := f.readSnapshots()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readSnapshots is snapshots, with the stream's read error returned (NATS may be away).
func (f *cdcFixture) readSnapshots() (map[string][]contracts.OpportunityObserved, error) {
	out := map[string][]contracts.OpportunityObserved{}
	err := f.bus.Read(context.Background(), contracts.StreamObserved, func(m platform.Stored) error {
		e, err := m.Event()
		if err != nil {
			return err
		}
		if e.Type() != contracts.TypeOpportunityObserved {
			return nil
		}
		obs, err := platform.DataAs[contracts.OpportunityObserved](e)
		if err != nil {
			return err
		}
		out[obs.Opportunity.ID] = append(out[obs.Opportunity.ID], obs)
		return nil
	})
	return out, err
}

// waitSnapshot polls until the newest snapshot of opp satisfies ok.
func (f *cdcFixture) waitSnapshot(t *testing.T, opp, what string, ok func(contracts.OpportunityObserved) bool) {
	t.Helper()
	testkit.EventuallyTrue(t, 15*time.Second, what, func() bool {
		list := f.snapshots(t)[opp]
		return len(list) > 0 && ok(list[len(list)-1])
	})
}

// ownWrite updates a record as sf-writer does (sfapi sends Sforce-Call-Options: client=cosell).
func ownWrite(t *testing.T, c *sfapi.Client, obj, id string, fields map[string]any) {
	t.Helper()
	if err := c.Update(t.Context(), obj, id, fields); err != nil {
		t.Fatal(err)
	}
}

func TestCDCChangesReachObservedAsFullSnapshots(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	c := f.subscriber(t)
	run(t, c)
	f.waitStored(t)

	opp := f.syncedOpportunity(t, "Realtime")
	f.waitSnapshot(t, opp, "the created opportunity", func(o contracts.OpportunityObserved) bool {
		return o.Via == "cdc" && o.Opportunity.Fields["Account.Name"] == "Realtime AG"
	})
	if err := f.emu.Update("Opportunity", opp, map[string]any{"Amount": 4200}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the update", func(o contracts.OpportunityObserved) bool { return o.Opportunity.Fields[sf.FieldAmount] == 4200.0 })

	user := f.insert(t, "User", map[string]any{"FirstName": "Grace", "LastName": "Hopper", "Email": "grace@example.com", "Username": "grace@example.com"})
	member := f.insert(t, "OpportunityTeamMember", map[string]any{"OpportunityId": opp, "UserId": user, "TeamMemberRole": "Sales Rep"})
	f.waitSnapshot(t, opp, "the new team member", func(o contracts.OpportunityObserved) bool { return len(o.Opportunity.TeamMembers) == 1 })
	if err := f.emu.Delete("OpportunityTeamMember", member); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the team member's removal (a child delete names no parent)", func(o contracts.OpportunityObserved) bool {
		return len(o.Opportunity.TeamMembers) == 0
	})
	// A Microsoft Solution: created, changed, deleted (a child delete names no parent) and undeleted (from
	// the recycle bin, as the custom object allows).
	sol := f.insert(t, sf.ObjectMicrosoftSolution, map[string]any{"Opportunity__c": opp, "Solution_Id__c": "SOL-1"})
	f.waitSnapshot(t, opp, "the new solution", func(o contracts.OpportunityObserved) bool {
		return len(o.Opportunity.Solutions) == 1 && o.Opportunity.Solutions[0].SolutionID == "SOL-1"
	})
	if err := f.emu.Update(sf.ObjectMicrosoftSolution, sol, map[string]any{"Solution_Id__c": "SOL-2"}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the changed solution", func(o contracts.OpportunityObserved) bool {
		return len(o.Opportunity.Solutions) == 1 && o.Opportunity.Solutions[0].SolutionID == "SOL-2"
	})
	if err := f.emu.Delete(sf.ObjectMicrosoftSolution, sol); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the solution's removal", func(o contracts.OpportunityObserved) bool { return len(o.Opportunity.Solutions) == 0 })
	if err := f.emu.Undelete(sf.ObjectMicrosoftSolution, sol); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the solution's undeletion", func(o contracts.OpportunityObserved) bool {
		return len(o.Opportunity.Solutions) == 1 && o.Opportunity.Solutions[0].SolutionID == "SOL-2"
	})
	acc := str(f.last(t, opp).Opportunity.Fields[sf.FieldAccountID])
	if err := f.emu.Update("Account", acc, map[string]any{"Name": "Renamed AG"}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the account rename", func(o contracts.OpportunityObserved) bool {
		return o.Opportunity.Fields["Account.Name"] == "Renamed AG"
	})
	if err := f.emu.Delete("Opportunity", opp); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the deletion", func(o contracts.OpportunityObserved) bool { return o.Opportunity.Deleted })
	if err := f.emu.Undelete("Opportunity", opp); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the undeletion", func(o contracts.OpportunityObserved) bool { return !o.Opportunity.Deleted })
}

func TestCDCBurstOfTwoHundredIsOneReadAndOwnWritesAreEchoes(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	acc := f.insert(t, "Account", map[string]any{"Name": "Bulk AG"})
	var records []sfapi.Record
	for i := range 200 {
		records = append(records, sfapi.Record{"Name": fmt.Sprintf("Bulk %d", i), "StageName": "Prospecting",
			"CloseDate": "2027-03-31", "AccountId": acc, sf.FieldSyncWithPartnerCenter: true})
	}
	res, err := f.in.SF.CreateRecords(t.Context(), "Opportunity", records)
	if err != nil || len(res) != 200 {
		t.Fatalf("create 200: %v", err)
	}
	f.poll(t) // the existing records are published by the REST catch-up, as on a first start
	c := f.subscriber(t)
	run(t, c)
	f.waitStored(t)

	// cosell's own write (client=cosell in changeOrigin) costs no read: of a synced field on a record no
	// seller changed lately, and of what no snapshot carries (the sync status, the Audit summary).
	before := f.emu.Counts()["composite"]
	ownWrite(t, f.in.SF, "Opportunity", res[0].ID, map[string]any{sf.FieldDescription: "written by sf-writer",
		sf.FieldSyncStatus: "✔ in step", sf.FieldAudit: "written by sf-writer"})
	testkit.EventuallyTrue(t, 15*time.Second, "the echo", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.bursts >= 1 && c.Stats().Echoes == 1 })
	if n := f.emu.Counts()["composite"] - before; n != 0 {
		t.Fatalf("an echo cost %d Composite calls, want 0", n)
	}

	// A seller changes all 200 in one transaction (one event naming 200 records): the event carries the
	// change, so the 200 new snapshots are built from it, without a read.
	var upd []map[string]any
	for _, r := range res {
		upd = append(upd, map[string]any{"Id": r.ID, "StageName": "Qualification"})
	}
	if err := f.emu.UpdateAll("Opportunity", upd); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 15*time.Second, "200 new snapshots", func() bool { return c.Stats().Snapshots >= 200 })
	if n := f.emu.Counts()["composite"] - before; n != 0 {
		t.Fatalf("a 200-record change event cost %d Composite calls, want 0 (built from the event)", n)
	}
	// The same as a gap event (no field data: Salesforce could not say what changed): one read for all 200.
	f.emu.GapNextChanges(1)
	for _, u := range upd {
		u["StageName"] = "Needs Analysis"
	}
	if err := f.emu.UpdateAll("Opportunity", upd); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 15*time.Second, "200 more snapshots", func() bool { return c.Stats().Snapshots >= 400 })
	if n := f.emu.Counts()["composite"] - before; n != 1 {
		t.Fatalf("a gap event naming 200 records cost %d Composite calls, want 1", n)
	}
	st := c.Stats()
	if st.Reads != 1 || st.Snapshots != 400 || st.Built != 200 || st.Gaps != 1 {
		t.Fatalf("stats %+v, want 200 snapshots built, 200 read in 1 read", st)
	}
	all := f.snapshots(t)
	for _, r := range res {
		list := all[r.ID]
		if o := list[len(list)-1]; o.Opportunity.Fields[sf.FieldStageName] != "Needs Analysis" || len(list) < 3 ||
			list[len(list)-2].Opportunity.Fields[sf.FieldStageName] != "Qualification" {
			t.Fatalf("%s: stage %v", r.ID, o.Opportunity.Fields[sf.FieldStageName])
		}
	}
}

func TestCDCRestartResumesFromTheStoredReplayID(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	stop := run(t, f.subscriber(t))
	f.waitStored(t)
	var opps []string
	for i := range 3 {
		opps = append(opps, f.syncedOpportunity(t, fmt.Sprintf("Before %d", i)))
	}
	testkit.EventuallyTrue(t, 15*time.Second, "three snapshots", func() bool { return len(f.snapshots(t)) == 3 })
	stop()
	// While sf-ingest is down: changes and creates.
	for _, id := range opps {
		if err := f.emu.Update("Opportunity", id, map[string]any{"Amount": 7}); err != nil {
			t.Fatal(err)
		}
	}
	opps = append(opps, f.syncedOpportunity(t, "During"))
	c := f.subscriber(t)
	run(t, c)
	testkit.EventuallyTrue(t, 15*time.Second, "the changes made while down", func() bool {
		s := f.snapshots(t)
		for _, id := range opps {
			list := s[id]
			if len(list) == 0 || list[len(list)-1].Opportunity.Fields[sf.FieldAmount] != 7.0 && id != opps[3] {
				return false
			}
		}
		return true
	})
	for id, list := range f.uniqueSnapshots(t) {
		if want := map[bool]int{true: 1, false: 2}[id == opps[3]]; len(list) != want {
			t.Fatalf("%s: %d snapshots, want %d (nothing lost or repeated)", id, len(list), want)
		}
	}
	if n := c.Stats().CatchUps; n != 0 {
		t.Fatalf("resuming made %d REST catch-ups, want none", n)
	}
}

func TestCDCGapsAndExpiredReplayIDsAreHealedByREST(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	stop := run(t, f.subscriber(t))
	f.waitStored(t)
	f.emu.GapNextChanges(1)
	gap := f.syncedOpportunity(t, "Gap") // the Account is the gap event; the Opportunity a normal one
	f.emu.GapNextChanges(1)
	if err := f.emu.Update("Opportunity", gap, map[string]any{"Amount": 99}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, gap, "the change behind a GAP_UPDATE", func(o contracts.OpportunityObserved) bool {
		return o.Opportunity.Fields[sf.FieldAmount] == 99.0
	})
	stop()
	missed := f.syncedOpportunity(t, "Missed")
	f.emu.ExpireEvents() // 72 hours pass: the stored replay id is past retention
	c := f.subscriber(t)
	run(t, c)
	f.waitSnapshot(t, missed, "the REST catch-up of a change past retention", func(o contracts.OpportunityObserved) bool {
		return o.Via == "poll"
	})
	// Then it follows from LATEST, once the stream is open (the second catch-up says so).
	testkit.EventuallyTrue(t, 15*time.Second, "the stream open from LATEST", func() bool { return c.Stats().CatchUps == 2 })
	after := f.syncedOpportunity(t, "After")
	f.waitSnapshot(t, after, "a change after the catch-up", func(o contracts.OpportunityObserved) bool { return o.Via == "cdc" })
	if n := c.Stats().CatchUps; n != 2 {
		t.Fatalf("%d REST catch-ups after the replay id expired, want 2 (before LATEST and once it is open)", n)
	}
}

func TestCDCOneSubscriberAcrossThreeReplicas(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		c := f.subscriber(t)
		wg.Add(1)
		go func() { defer wg.Done(); _ = f.bus.RunAsLeader(ctx, "sf-ingest", c.Run) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	f.waitStored(t)
	for i := range 5 {
		f.syncedOpportunity(t, fmt.Sprintf("Replica %d", i))
	}
	testkit.EventuallyTrue(t, 15*time.Second, "five snapshots", func() bool { return len(f.snapshots(t)) == 5 })
	if n := f.emu.Counts()["pubsub.subscribe"]; n != 1 {
		t.Fatalf("%d Subscribe streams across three replicas, want 1", n)
	}
	for id, list := range f.snapshots(t) {
		if len(list) != 1 {
			t.Fatalf("%s published %d times, want once", id, len(list))
		}
	}
	if !strings.HasPrefix(ReplayKey(sfemu.AllChangeEvents), "sf-ingest.") {
		t.Fatalf("replay key %s", ReplayKey(sfemu.AllChangeEvents))
	}
}

func TestCDCRefusedReadIsRetriedFromTheStoredReplayID(t *testing.T) {
	t.Parallel()
	f, c := startedCDC(t)
	opp := f.cdcOpportunity(t, "Flaky")
	catchUps := c.Stats().CatchUps
	f.emu.GapNextChanges(1) // a change only a read shows
	f.emu.FailNextCalls(3)  // the burst's read fails, and the retries' too, until the fourth
	if err := f.emu.Update("Opportunity", opp, map[string]any{"Amount": 31}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the change once Salesforce answers again", func(o contracts.OpportunityObserved) bool {
		return o.Opportunity.Fields[sf.FieldAmount] == 31.0
	})
	if n := c.Stats().CatchUps; n != catchUps {
		t.Fatalf("%d REST catch-ups, want %d: a refused read resumes from the replay id, not by REST", n, catchUps)
	}
}

// TestCDCOwnWriteAfterASellersChangeIsReread is the race TestChaosShort found in CDC mode: a seller edits
// the Amount, sf-ingest reads and publishes it, and then cosell's write of the Amount (decided on a
// Microsoft seller's edit before the mapper saw the Salesforce one) lands over it. Salesforce keeps
// cosell's value; only a snapshot of it tells the mapper so (it had sent the seller's value to Partner
// Center). Dropping that write as an echo from the header left the pair diverged until the backstop poll.
func TestCDCOwnWriteAfterASellersChangeIsReread(t *testing.T) {
	t.Parallel()
	f, c := startedCDC(t)
	opp := f.cdcOpportunity(t, "Race")
	if err := f.emu.Update("Opportunity", opp, map[string]any{"Amount": 50050}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the seller's amount", func(o contracts.OpportunityObserved) bool { return o.Opportunity.Fields[sf.FieldAmount] == 50050.0 })
	// The link, sync status and Audit summary cosell writes back are no synced values: dropped from the header.
	ownWrite(t, f.in.SF, "Opportunity", opp, map[string]any{sf.FieldReferralLink: "https://partner.microsoft.com/r/1",
		sf.FieldSyncStatus: "✔ in step", sf.FieldAudit: "summary"})
	testkit.EventuallyTrue(t, 15*time.Second, "the write-back dropped as an echo", func() bool { return c.Stats().Echoes == 1 })
	ownWrite(t, f.in.SF, "Opportunity", opp, map[string]any{"Amount": 40050})
	f.waitSnapshot(t, opp, "cosell's amount, which Salesforce kept", func(o contracts.OpportunityObserved) bool {
		return o.Via == "cdc" && o.Opportunity.Fields[sf.FieldAmount] == 40050.0
	})
	if st := c.Stats(); st.OwnReads != 1 || st.Echoes != 1 {
		t.Fatalf("stats %+v: want cosell's write of a synced field re-read (1), its write-back dropped (1)", st)
	}
}

// TestCDCWriteBackToASellersNewOpportunityIsDropped: cosell's write-back to an Opportunity a seller has
// just created (the referral's id and link, the sync status and the ✔ mark on the Name, a synced field) is
// dropped from its header: the CREATE is no change it can have overwritten unseen (the mapper decided the
// write on a snapshot showing it), so it costs no read, no snapshot and no decision, and holds no backstop
// (every seller change of the record since its CREATE is one this run saw). The next seller change builds
// on what Salesforce kept.
func TestCDCWriteBackToASellersNewOpportunityIsDropped(t *testing.T) {
	t.Parallel()
	f, c := startedCDC(t)
	opp := f.cdcOpportunity(t, "Fresh")
	reads, snaps := c.Stats().Reads, len(f.snapshots(t)[opp])
	settled := f.burstsAfter(t)
	ownWrite(t, f.in.SF, "Opportunity", opp, map[string]any{"Name": "Fresh ✔", sf.FieldReferralIdentifier: "ref-fresh",
		sf.FieldReferralLink: "https://partner.microsoft.com/r/fresh", sf.FieldSyncStatus: "✔ in step"})
	settled("the write-back's burst")
	if st := c.Stats(); st.Echoes != 1 || st.OwnReads != 0 || st.Reads != reads {
		t.Fatalf("stats %+v: want the write-back dropped from its header (1 echo, no own read, %d reads)", st, reads)
	}
	if n := len(f.snapshots(t)[opp]); n != snaps {
		t.Fatalf("%d snapshots after the write-back, want %d", n, snaps)
	}
	if _, err := f.in.Checkpoints.Get(t.Context(), HeldKey()); err == nil {
		t.Fatal("the write-back to a record created within the interval holds the backstop")
	}
	if err := f.emu.Update("Opportunity", opp, map[string]any{"Amount": 2500}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the seller's change on cosell's Name", func(o contracts.OpportunityObserved) bool {
		return o.Opportunity.Fields[sf.FieldAmount] == 2500.0 && o.Opportunity.Fields["Name"] == "Fresh ✔" &&
			o.Opportunity.Fields[sf.FieldReferralIdentifier] == "ref-fresh"
	})
	if st := c.Stats(); st.Reads != reads {
		t.Fatalf("stats %+v: the seller's change was read, want it built from the event on the held snapshot", st)
	}
	// After a seller's change, cosell's next write of a synced field is re-read as before.
	ownWrite(t, f.in.SF, "Opportunity", opp, map[string]any{"Name": "Fresh ✖"})
	f.waitSnapshot(t, opp, "cosell's Name, re-read", func(o contracts.OpportunityObserved) bool { return o.Opportunity.Fields["Name"] == "Fresh ✖" })
	if st := c.Stats(); st.OwnReads != 1 {
		t.Fatalf("stats %+v: want the own write after the seller's change re-read", st)
	}
}

// TestCDCOverflowIsHealedByREST: a transaction past Salesforce's overflow threshold publishes no change
// events for the changes beyond it, only a GAP_OVERFLOW for the object; sf-ingest catches those up by REST.
func TestCDCOverflowIsHealedByREST(t *testing.T) {
	t.Parallel()
	f, c := startedCDC(t)
	a, b := f.cdcOpportunity(t, "Overflow A"), f.cdcOpportunity(t, "Overflow B")
	catchUps := c.Stats().CatchUps
	f.emu.OverflowNextTransaction(1) // a's change gets its event, b's only the object's GAP_OVERFLOW
	if err := f.emu.UpdateAll("Opportunity", []map[string]any{{"Id": a, "Amount": 11}, {"Id": b, "Amount": 22}}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, a, "the change with its event", func(o contracts.OpportunityObserved) bool { return o.Opportunity.Fields[sf.FieldAmount] == 11.0 })
	f.waitSnapshot(t, b, "the change behind the overflow, read by REST", func(o contracts.OpportunityObserved) bool {
		return o.Via == "poll" && o.Opportunity.Fields[sf.FieldAmount] == 22.0
	})
	if st := c.Stats(); st.CatchUps != catchUps+1 || st.Gaps == 0 {
		t.Fatalf("stats %+v: want one REST catch-up for the overflow (had %d before)", st, catchUps)
	}
}

// TestCDCCatchUpPublishesAChangeBackToWhatThePollerSaw: the poller skips a snapshot whose content it
// published last; what the change events published in between must count, or a REST catch-up (here: of
// an overflow) would skip a change back to the content of the first start's catch-up.
func TestCDCCatchUpPublishesAChangeBackToWhatThePollerSaw(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	opp := f.syncedOpportunity(t, "Back")
	f.poll(t) // the first start's catch-up publishes the Amount 1000
	c := f.subscriber(t)
	run(t, c)
	f.waitStored(t)
	if err := f.emu.Update("Opportunity", opp, map[string]any{"Amount": 2000}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the change on its event", func(o contracts.OpportunityObserved) bool {
		return o.Via == "cdc" && o.Opportunity.Fields[sf.FieldAmount] == 2000.0
	})
	f.emu.OverflowNextTransaction(0) // the change back reaches sf-ingest only as a GAP_OVERFLOW
	if err := f.emu.Update("Opportunity", opp, map[string]any{"Amount": 1000}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the change back to 1000, by the REST catch-up", func(o contracts.OpportunityObserved) bool {
		return o.Via == "poll" && o.Opportunity.Fields[sf.FieldAmount] == 1000.0
	})
}

// TestCDCContactRolesAndContacts: the customer's contacts reach the snapshot on change events: a contact
// role added, its Contact edited (the event names only the Contact: its roles lead to the Opportunity),
// and the role removed.
func TestCDCContactRolesAndContacts(t *testing.T) {
	t.Parallel()
	f, _ := startedCDC(t)
	opp := f.cdcOpportunity(t, "Contacts")
	contact := f.insert(t, "Contact", map[string]any{"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"})
	role := f.insert(t, sf.ObjectOpportunityContactRole, map[string]any{"OpportunityId": opp, "ContactId": contact, "Role": "Decision Maker"})
	f.waitSnapshot(t, opp, "the new contact role", func(o contracts.OpportunityObserved) bool {
		return len(o.Opportunity.Contacts) == 1 && o.Opportunity.Contacts[0].Email == "ada@example.com"
	})
	if err := f.emu.Update("Contact", contact, map[string]any{"Email": "ada@analytical.example"}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the contact's new email", func(o contracts.OpportunityObserved) bool {
		return len(o.Opportunity.Contacts) == 1 && o.Opportunity.Contacts[0].Email == "ada@analytical.example"
	})
	if err := f.emu.Delete(sf.ObjectOpportunityContactRole, role); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, opp, "the role's removal", func(o contracts.OpportunityObserved) bool { return len(o.Opportunity.Contacts) == 0 })
}
