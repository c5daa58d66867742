package mapper

import (
	"context"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// TestCommandsCarryTheBacklogMark: a command decided from a snapshot read behind a backlog (marked
// platform.ExtBehind by pc-ingest) carries the mark on to sf-writer, which batches for it; one decided
// from an unmarked snapshot, with nothing waiting behind it, carries none. The mark is no part of the
// decision: both commands are the create the snapshot calls for.
func TestCommandsCarryTheBacklogMark(t *testing.T) {
	bus := bustest.Start(t, bustest.Config(8, 2*time.Second), contracts.StageMapper, nil)
	svc := mapperOn(t, bus, time.Now().UTC())
	svc.Consume = platform.ConsumeOptions{MaxWait: 100 * time.Millisecond, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	marked, lone := referralSeen(t, "R-behind", 1), referralSeen(t, "R-live", 1)
	platform.MarkBehind(&marked, 500)
	for _, e := range []platform.Event{marked, lone} {
		if _, err := bus.Publish(ctx, contracts.Subject(contracts.SubjectReferralObserved, e.Subject()), e); err != nil {
			t.Fatal(err)
		}
	}
	command := func(referralID string) (platform.Event, bool) {
		subject := contracts.Subject(contracts.SubjectOpportunityRequested, contracts.LinkIDFor(contracts.PartnerCenter, referralID))
		m, err := bus.LastMsg(ctx, contracts.StreamRequested, subject)
		if err != nil {
			return platform.Event{}, false
		}
		e, err := m.Event()
		return e, err == nil
	}
	testkit.Eventually(t, 10*time.Second, "both commands", func() (bool, string) {
		_, a := command("R-behind")
		_, b := command("R-live")
		return a && b, ""
	})
	for id, want := range map[string]uint64{"R-behind": 500, "R-live": 0} {
		e, _ := command(id)
		if got := platform.BehindOf(e); got != want {
			t.Errorf("%s: command marked %d behind, want %d", id, got, want)
		}
		if c, err := platform.DataAs[contracts.OpportunityCommand](e); err != nil || c.Op != contracts.OpCreate {
			t.Errorf("%s: command %+v (%v), want the create", id, c, err)
		}
	}
}
