package outcome

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// TestPublishAllPublishesThenMarks: a batch's outcomes are all stored, only the written commands are
// marked done, and publishing the same batch again (a redelivered batch) stores no second copy.
func TestPublishAllPublishesThenMarks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bus := bustest.Start(t, bustest.Config(3, 5*time.Second), contracts.StageSFWriter, nil)
	r, err := NewRecorder(ctx, bus, contracts.StageSFWriter)
	if err != nil {
		t.Fatal(err)
	}
	var outs []contracts.Outcome
	for i := range 5 {
		status := contracts.OutcomeWritten
		if i == 3 {
			status = contracts.OutcomeFailed
		}
		outs = append(outs, contracts.Outcome{CommandID: fmt.Sprintf("cmd/sf/pc-r%d/c", i), LinkID: fmt.Sprintf("pc-r%d", i),
			System: contracts.Salesforce, Op: contracts.OpUpdate, Status: status})
	}
	for range 2 {
		if err := r.PublishAll(ctx, outs); err != nil {
			t.Fatal(err)
		}
	}
	if n := bustest.Count(t, bus, contracts.StreamOutcomes, contracts.SubjectOpportunityWritten+".>"); n != 4 {
		t.Errorf("written outcomes stored = %d, want 4", n)
	}
	if n := bustest.Count(t, bus, contracts.StreamOutcomes, contracts.SubjectOpportunityFailed+".>"); n != 1 {
		t.Errorf("failed outcomes stored = %d, want 1", n)
	}
	ids := []string{"cmd/sf/never-published/c"}
	for _, out := range outs {
		ids = append(ids, out.CommandID)
	}
	done, errs := r.DoneAll(ctx, ids)
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if want := i != 0 && i != 4; done[i] != want {
			t.Errorf("DoneAll: %s done = %v, want %v", id, done[i], want)
		}
	}
}

// TestPublishWithStoresTheEventsAndTheOutcome: the events that go with an outcome (pc-writer's snapshot of
// the referral its write returned) are stored with it; the command is marked done only when the writer
// keeps no record of its own, and only once both are stored.
func TestPublishWithStoresTheEventsAndTheOutcome(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bus := bustest.Start(t, bustest.Config(3, 5*time.Second), contracts.StagePCWriter, nil)
	r, err := NewRecorder(ctx, bus, contracts.StagePCWriter)
	if err != nil {
		t.Fatal(err)
	}
	for i, recorded := range []bool{false, true} {
		ref := fmt.Sprintf("r%d", i)
		out := contracts.Outcome{CommandID: "cmd/pc/sf-o" + ref + "/c", LinkID: "sf-o" + ref, System: contracts.PartnerCenter,
			Op: contracts.OpUpdate, Status: contracts.OutcomeWritten}
		snap, err := platform.NewEvent("pc/"+ref+"/e1", contracts.TypeReferralObserved, contracts.StagePCWriter, ref, map[string]string{"id": ref})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.PublishWith(ctx, out, recorded, platform.Outgoing{Subject: contracts.Subject(contracts.SubjectReferralObserved, ref), Event: snap}); err != nil {
			t.Fatal(err)
		}
		if n := bustest.Count(t, bus, contracts.StreamObserved, contracts.Subject(contracts.SubjectReferralObserved, ref)); n != 1 {
			t.Errorf("recorded=%v: snapshots stored = %d, want 1", recorded, n)
		}
		if n := bustest.Count(t, bus, contracts.StreamOutcomes, contracts.Subject(contracts.SubjectReferralWritten, out.LinkID)); n != 1 {
			t.Errorf("recorded=%v: outcomes stored = %d, want 1", recorded, n)
		}
		done, err := r.Done(ctx, out.CommandID)
		if err != nil {
			t.Fatal(err)
		}
		if done == recorded {
			t.Errorf("recorded=%v: the command's applied mark put = %v, want %v", recorded, done, !recorded)
		}
	}
}
