// Package outcome is what both writers share: it remembers which commands were carried out (so a replayed
// command costs no external write) and publishes each command's outcome for the mapper and the auditor.
package outcome

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// Recorder publishes outcomes and keeps the applied-command marks.
type Recorder struct {
	Bus     *platform.Bus
	Applied jetstream.KeyValue
	Stage   string
}

// NewRecorder opens the applied bucket.
func NewRecorder(ctx context.Context, bus *platform.Bus, stage string) (*Recorder, error) {
	kv, err := bus.KV(ctx, contracts.BucketApplied)
	if err != nil {
		return nil, fmt.Errorf("%s: applied bucket: %w", stage, err)
	}
	return &Recorder{Bus: bus, Applied: kv, Stage: stage}, nil
}

func key(commandID string) string {
	h := sha256.Sum256([]byte(commandID))
	return "cmd." + hex.EncodeToString(h[:16])
}

// Done reports whether the command was already carried out and its outcome published.
func (r *Recorder) Done(ctx context.Context, commandID string) (bool, error) {
	_, err := r.Applied.Get(ctx, key(commandID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read applied mark of %s: %w", commandID, err)
	}
	return true, nil
}

// doneReads bounds the applied-mark reads DoneAll keeps in flight.
const doneReads = 32

// DoneAll is Done for each of a batch's commands, with up to 32 reads in flight at once instead of one
// round trip after another: done[i] and errs[i] answer commandIDs[i].
func (r *Recorder) DoneAll(ctx context.Context, commandIDs []string) (done []bool, errs []error) {
	done, errs = make([]bool, len(commandIDs)), make([]error, len(commandIDs))
	sem := make(chan struct{}, doneReads)
	var wg sync.WaitGroup
	for i, id := range commandIDs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			done[i], errs[i] = r.Done(ctx, id)
		}()
	}
	wg.Wait()
	return done, errs
}

// Publish publishes the outcome of a command; a written outcome then marks the command as done.
func (r *Recorder) Publish(ctx context.Context, out contracts.Outcome) error {
	return r.PublishAll(ctx, []contracts.Outcome{out})
}

// PublishAll publishes the outcomes of several commands with their acks in flight together, then marks the
// written ones done, also together: two round trips for a batch instead of two per command. A mark is put
// only once its outcome is stored, so a command found done always has its outcome published. On an error
// none of them is known done: the caller retries them all (the outcome ids are deterministic, so the server
// drops the copies, and a mark says the same whoever puts it).
func (r *Recorder) PublishAll(ctx context.Context, outs []contracts.Outcome) error {
	return r.publish(ctx, nil, outs, true)
}

// PublishWith publishes events that go with a command's outcome (pc-writer's snapshot of the referral its
// write returned) and the outcome with their acks in flight together, one round trip instead of one each,
// then marks the command done as Publish does, unless recorded: the writer keeps its own durable record of
// having carried it out (pc-writer's create record, contracts.PCCreate, written after the outcome), so no
// applied mark is put, one KV write fewer per command. The mark is put only once all of them are stored; on an error none is known stored
// and the caller retries (the ids are deterministic, so the server drops the copies).
func (r *Recorder) PublishWith(ctx context.Context, out contracts.Outcome, recorded bool, events ...platform.Outgoing) error {
	return r.publish(ctx, events, []contracts.Outcome{out}, !recorded)
}

// publish stores first and then the outcomes (sent in that order), and then the written ones' marks.
func (r *Recorder) publish(ctx context.Context, first []platform.Outgoing, outs []contracts.Outcome, mark bool) error {
	events := make([]platform.Outgoing, 0, len(first)+len(outs))
	events = append(events, first...)
	var marks []platform.KVEntry
	for _, out := range outs {
		if out.At.IsZero() {
			out.At = time.Now().UTC()
		}
		var root, typ string
		switch {
		case out.System == contracts.PartnerCenter && out.Status == contracts.OutcomeWritten:
			root, typ = contracts.SubjectReferralWritten, contracts.TypeReferralWritten
		case out.System == contracts.PartnerCenter:
			root, typ = contracts.SubjectReferralFailed, contracts.TypeReferralFailed
		case out.Status == contracts.OutcomeWritten:
			root, typ = contracts.SubjectOpportunityWritten, contracts.TypeOpportunityWritten
		default:
			root, typ = contracts.SubjectOpportunityFailed, contracts.TypeOpportunityFailed
		}
		id := contracts.EventID("outcome", out.CommandID, out.Status)
		e, err := platform.NewEvent(id, typ, r.Stage, out.LinkID, out)
		if err != nil {
			return platform.Permanent(err)
		}
		events = append(events, platform.Outgoing{Subject: contracts.Subject(root, out.LinkID), Event: e})
		if mark && out.Status == contracts.OutcomeWritten {
			marks = append(marks, platform.KVEntry{Key: key(out.CommandID), Value: []byte(out.At.Format(time.RFC3339Nano))})
		}
	}
	if _, err := r.Bus.PublishAll(ctx, events); err != nil {
		return fmt.Errorf("publish outcome of %s: %w", commands(outs), err)
	}
	if err := r.Bus.PutAll(ctx, r.Applied.Bucket(), marks); err != nil {
		return fmt.Errorf("mark %s applied: %w", commands(outs), err)
	}
	return nil
}

// commands names the commands of outs for an error: the one, or the first and how many.
func commands(outs []contracts.Outcome) string {
	switch len(outs) {
	case 0:
		return "no command"
	case 1:
		return outs[0].CommandID
	}
	return fmt.Sprintf("%s and %d more commands", outs[0].CommandID, len(outs)-1)
}
