package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
	"github.com/cosell-dev/cosell/services/sf-ingest/sfingest"
)

// startOnChangeEvents starts the system with sf-ingest on change events only (the backstop poll an hour
// away) storing its replay id at most once an hour, and a test connection to its bus; vars are the
// stages' settings, read again by a StartPipeline.
func startOnChangeEvents(t *testing.T) (*stack.Stack, *platform.Bus, map[string]string) {
	t.Helper()
	var vars map[string]string
	s := start(t, func(o *stack.Options) {
		vars = o.Vars
		o.Vars["COSELL_SF_CDC"] = "on"
		o.Vars["COSELL_SF_BACKSTOP_INTERVAL"] = "1h"
		o.Vars["COSELL_SF_CDC_CHECKPOINT_INTERVAL"] = "1h"
	})
	bus, err := s.Connect(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	return s, bus, vars
}

// replayRevision returns a read of the revision of sf-ingest's stored replay id (0: none stored).
func replayRevision(t *testing.T, bus *platform.Bus) func() uint64 {
	t.Helper()
	cps, err := bus.KV(context.Background(), contracts.BucketCheckpoints)
	if err != nil {
		t.Fatal(err)
	}
	return func() uint64 {
		e, err := cps.Get(context.Background(), sfingest.ReplayKey(sfemu.AllChangeEvents))
		if err != nil {
			return 0
		}
		return e.Revision()
	}
}

// TestSFIngestCrashBeforeItsCheckpointCostsNothing: sf-ingest stores its change events' replay id at most
// once an hour here, so when the system is killed (kill -9) after a seller's edit has reached Partner Center
// and cosell's write-backs (link, sync status, Audit summary) are in Salesforce, the stored replay id is
// the one of the first burst, the Opportunity's create. The restarted sf-ingest handles those events again; they
// cost no snapshot, so no decision and no write: a seller's change made after them is the only new
// snapshot and the only Partner Center call.
func TestSFIngestCrashBeforeItsCheckpointCostsNothing(t *testing.T) {
	s, bus, vars := startOnChangeEvents(t)
	ctx := context.Background()
	replayRev := replayRevision(t, bus)
	caughtUp := func(what string) {
		testkit.Eventually(t, 30*time.Second, what, func() (bool, string) { return s.CaughtUp(ctx) })
	}

	oppID := newOpportunity(t, s, "Adatum checkpoint", 51000)
	var refID string
	testkit.Eventually(t, 20*time.Second, "the referral, linked back", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		refID = fmt.Sprint(o[sf.FieldReferralIdentifier])
		return o[sf.FieldSyncStatus] == "✔", fmt.Sprint(o[sf.FieldSyncStatus])
	})
	dealValue := func(want float64) {
		t.Helper()
		testkit.Eventually(t, 20*time.Second, "the seller's amount in Partner Center", func() (bool, string) {
			r, err := s.PC.Get(refID)
			if err != nil || r.Details == nil || r.Details.DealValue == nil {
				return false, fmt.Sprint(err)
			}
			return *r.Details.DealValue == want, fmt.Sprint(*r.Details.DealValue)
		})
	}
	caughtUp("the create settled")
	stored := replayRev() // the first burst's, stored at once; none since
	if stored == 0 {
		t.Fatal("no replay id stored after the first change events")
	}
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{"Amount": 52000}); err != nil {
		t.Fatal(err)
	}
	dealValue(52000)
	caughtUp("the edit settled")
	// The Audit summary of the edit, written back before the crash (on its own clock in a deployment).
	if err := s.Auditor.WriteSummary(ctx, contracts.LinkIDFor(contracts.Salesforce, oppID)); err != nil {
		t.Fatal(err)
	}
	caughtUp("the Audit summary written")
	if rev := replayRev(); rev != stored {
		t.Fatalf("the replay id was stored again (revision %d → %d) within the hour", stored, rev)
	}
	subject := contracts.Subject(contracts.SubjectOpportunityObserved, oppID)
	snapshots := bustest.Count(t, bus, contracts.StreamObserved, subject)

	s.CrashPipeline()
	s.WaitPipeline()
	if rev := replayRev(); rev != stored {
		t.Fatalf("the killed sf-ingest stored its replay id (revision %d → %d)", stored, rev)
	}
	s.SF.ResetCounts()
	s.PC.ResetCounts()
	// The restarted sf-ingest stores the replay id after every burst, so the test sees when it has handled
	// the events again.
	vars["COSELL_SF_CDC_CHECKPOINT_INTERVAL"] = "0s"
	if err := s.StartPipeline(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the events since the stored replay id handled again", func() (bool, string) {
		rev := replayRev()
		return rev != stored, fmt.Sprintf("revision %d", rev)
	})
	// Then a seller's change.
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{"Amount": 53000}); err != nil {
		t.Fatal(err)
	}
	dealValue(53000)
	caughtUp("the change after the restart settled")
	if n := bustest.Count(t, bus, contracts.StreamObserved, subject); n != snapshots+1 {
		t.Errorf("%d snapshots of the Opportunity since the crash, want 1 (the change after the restart): the events handled again were published", n-snapshots)
	}
	if n := s.PC.Counts()["referrals.patch"]; n != 1 {
		t.Errorf("%d referral patches since the crash, want 1 (counts %v)", n, s.PC.Counts())
	}
}
