// Package outcome is what both writers share: it remembers which commands were carried out (so a replayed
// command costs no external write) and publishes each command's outcome for the mapper and the auditor.
package outcome

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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

// Publish publishes the outcome of a command; a written outcome then marks the command as done.
func (r *Recorder) Publish(ctx context.Context, out contracts.Outcome) error {
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
	if _, err := r.Bus.Publish(ctx, contracts.Subject(root, out.LinkID), e); err != nil {
		return fmt.Errorf("publish outcome of %s: %w", out.CommandID, err)
	}
	if out.Status != contracts.OutcomeWritten {
		return nil
	}
	if _, err := r.Applied.Create(ctx, key(out.CommandID), []byte(out.At.Format(time.RFC3339Nano))); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("mark %s applied: %w", out.CommandID, err)
	}
	return nil
}
