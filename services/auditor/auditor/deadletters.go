package auditor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// DeadLetterEntry is one parked message as the API and the CLI show it: its sequence in the dead-letter
// stream (the handle to show, retry or purge it), the link it belongs to, and why it was parked.
type DeadLetterEntry struct {
	Seq     uint64 `json:"seq"`
	EventID string `json:"eventId"`
	LinkID  string `json:"linkId,omitempty"`
	// OriginalID is the id of the parked event.
	OriginalID string `json:"originalId,omitempty"`
	contracts.DeadLetter
}

// HandleDeadLetter puts a dead letter on its link's timeline. It never dead-letters itself: a dead letter
// it cannot read is logged and acknowledged, so the dead-letter stream cannot feed itself.
func (a *Auditor) HandleDeadLetter(ctx context.Context, e platform.Event) error {
	dl, err := platform.DataAs[contracts.DeadLetter](e)
	if err != nil {
		platform.Logger(ctx).Error("unreadable dead letter; acknowledged", "err", err)
		return nil
	}
	linkID, refID, oppID := a.linkForSubject(ctx, dl.Subject)
	orig := first(dl.Header, "ce-id")
	// The hint is a command that works: dlq show takes the dead letter's own sequence.
	hint := "cosell dlq ls"
	if seq := platform.StreamSeq(ctx); seq > 0 {
		hint = fmt.Sprintf("cosell dlq show %d", seq)
	}
	d := contracts.Decision{
		LinkID: linkID, ReferralID: refID, OpportunityID: oppID, Stage: dl.Stage, Kind: contracts.DecisionDeadLetter,
		Detail: fmt.Sprintf("parked after %d deliveries by %s/%s (%s #%d): %s (%s)",
			dl.Deliveries, dl.Stream, dl.Consumer, dl.Stream, dl.StreamSeq, dl.Reason, hint),
		Cause: orig, At: dl.At,
	}
	if d.At.IsZero() {
		d.At = time.Now().UTC()
	}
	return a.publishDecision(ctx, contracts.EventID("decision", linkID, "dead-letter", e.ID()), d)
}

// linkForSubject finds the link a parked message belongs to from its subject's last token: a link id on
// requested, outcome and audit subjects, an entity id on observed subjects (resolved through the index,
// or the link id the record would get when it has none yet).
func (a *Auditor) linkForSubject(ctx context.Context, subject string) (linkID, referralID, opportunityID string) {
	last := subject
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		last = subject[i+1:]
	}
	var sys contracts.System
	switch {
	case strings.HasPrefix(subject, contracts.SubjectReferralObserved+"."):
		sys, referralID = contracts.PartnerCenter, last
	case strings.HasPrefix(subject, contracts.SubjectOpportunityObserved+"."):
		sys, opportunityID = contracts.Salesforce, last
	default:
		return last, "", ""
	}
	if e, err := a.Links.Get(ctx, contracts.IndexKey(sys, last)); err == nil {
		return string(e.Value()), referralID, opportunityID
	}
	return contracts.LinkIDFor(sys, last), referralID, opportunityID
}

func first(h map[string][]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// DeadLetters lists the parked messages, oldest first.
func (a *Auditor) DeadLetters(ctx context.Context) ([]DeadLetterEntry, error) {
	var out []DeadLetterEntry
	err := a.Bus.Read(ctx, contracts.StreamDeadLetter, func(m platform.Stored) error {
		out = append(out, a.entry(ctx, m))
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

func (a *Auditor) entry(ctx context.Context, m platform.Stored) DeadLetterEntry {
	en := DeadLetterEntry{Seq: m.Seq, EventID: m.Header.Get("ce-id")}
	if json.Unmarshal(m.Data, &en.DeadLetter) == nil {
		en.LinkID, _, _ = a.linkForSubject(ctx, en.Subject)
		en.OriginalID = first(en.Header, "ce-id")
	} else {
		en.Reason = "unreadable dead letter"
	}
	return en
}

// ErrNoDeadLetter is returned for a sequence that holds no dead letter.
var ErrNoDeadLetter = errors.New("no such dead letter")

// DeadLetter reads one parked message by its dead-letter stream sequence.
func (a *Auditor) DeadLetter(ctx context.Context, seq uint64) (DeadLetterEntry, error) {
	m, err := a.Bus.GetMsg(ctx, contracts.StreamDeadLetter, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetterEntry{}, fmt.Errorf("%w at sequence %d", ErrNoDeadLetter, seq)
	}
	if err != nil {
		return DeadLetterEntry{}, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	return a.entry(ctx, m), nil
}

// Retry re-drives a parked message: it is published again on its original subject with its original
// CloudEvent (same id, so handlers stay idempotent) and a fresh Nats-Msg-Id, so the server does not drop
// it as a duplicate of the first delivery; then it is removed from the dead-letter stream and the
// re-drive is put on the link's timeline. Retrying the same entry twice publishes it once.
func (a *Auditor) Retry(ctx context.Context, seq uint64) (DeadLetterEntry, error) {
	en, err := a.DeadLetter(ctx, seq)
	if err != nil {
		return en, err
	}
	if en.Subject == "" {
		return en, fmt.Errorf("dead letter %d names no subject to re-drive to", seq)
	}
	m := nats.NewMsg(en.Subject)
	for k, vs := range en.Header {
		if strings.HasPrefix(strings.ToLower(k), "nats-") {
			continue
		}
		for _, v := range vs {
			m.Header.Add(k, v)
		}
	}
	m.Header.Set(jetstream.MsgIDHeader, contracts.EventID("redrive", en.EventID))
	m.Data = en.Data
	if _, err := a.Bus.PublishMsg(ctx, m); err != nil {
		return en, fmt.Errorf("re-drive dead letter %d to %s: %w", seq, en.Subject, err)
	}
	p := a.who(ctx)
	a.Log.Info("dead letter re-driven", "seq", seq, "subject", en.Subject, "link", en.LinkID, "by", p.Name, "role", p.Role, "via", p.Via)
	d := contracts.Decision{LinkID: en.LinkID, Stage: en.Stage, Kind: contracts.DecisionRedriven,
		Detail: fmt.Sprintf("dead letter %d re-driven to %s%s (was: %s)", seq, en.Subject, p.by(), en.Reason),
		Cause:  en.OriginalID, By: p.actor(), At: time.Now().UTC()}
	if err := a.publishDecision(ctx, contracts.EventID("decision", en.LinkID, "re-driven", en.EventID), d); err != nil {
		return en, err
	}
	if err := a.deleteDeadLetter(ctx, seq); err != nil {
		return en, err
	}
	return en, nil
}

// RetryAll re-drives every parked message (see Retry) and returns how many were re-driven; the error joins
// the failures, each naming its sequence, and the others are re-driven still.
func (a *Auditor) RetryAll(ctx context.Context) (int, error) {
	dls, err := a.DeadLetters(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, d := range dls {
		if _, err := a.Retry(ctx, d.Seq); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// Purge removes parked messages for good: the given sequences, or all of them when seqs is empty. It
// returns how many were removed. Each purge is put on its link's timeline with who did it (Who).
func (a *Auditor) Purge(ctx context.Context, seqs ...uint64) (int, error) {
	p := a.who(ctx)
	a.Log.Info("dead letters purged", "seqs", seqs, "all", len(seqs) == 0, "by", p.Name, "role", p.Role, "via", p.Via)
	var entries []DeadLetterEntry
	if len(seqs) == 0 {
		all, err := a.DeadLetters(ctx)
		if err != nil {
			return 0, fmt.Errorf("purge dead letters: %w", err)
		}
		entries = all
	}
	for _, seq := range seqs {
		en, err := a.DeadLetter(ctx, seq)
		if err != nil {
			return 0, err
		}
		entries = append(entries, en)
	}
	n := 0
	for _, en := range entries {
		// Audited first: a purge whose record failed is not made, and is retried whole.
		d := contracts.Decision{LinkID: en.LinkID, Stage: en.Stage, Kind: contracts.DecisionPurged,
			Detail: fmt.Sprintf("dead letter %d purged%s (was: %s)", en.Seq, p.by(), en.Reason),
			Cause:  en.OriginalID, By: p.actor(), At: time.Now().UTC()}
		if err := a.publishDecision(ctx, contracts.EventID("decision", en.LinkID, "purged", en.EventID), d); err != nil {
			return n, err
		}
		if err := a.deleteDeadLetter(ctx, en.Seq); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// who made the change ctx is for: the request's principal, else the Auditor's Actor.
func (a *Auditor) who(ctx context.Context) Principal {
	if p := Who(ctx); p.Name != "" {
		return p
	}
	return a.Actor
}

// RecordDriftFix puts a healed drift finding on its link's timeline with who healed it.
func (a *Auditor) RecordDriftFix(ctx context.Context, linkID, referralID, opportunityID, detail string) error {
	p := a.who(ctx)
	d := contracts.Decision{LinkID: linkID, ReferralID: referralID, OpportunityID: opportunityID, Stage: "cli",
		Kind: contracts.DecisionDriftFixed, Detail: "drift fixed" + p.by() + ": " + detail, By: p.actor(), At: time.Now().UTC()}
	return a.publishDecision(ctx, contracts.EventID("decision", linkID, "drift-fixed", d.At.Format(time.RFC3339Nano)), d)
}

func (a *Auditor) deleteDeadLetter(ctx context.Context, seq uint64) error {
	if err := a.Bus.DeleteMsg(ctx, contracts.StreamDeadLetter, seq); err != nil {
		if _, gerr := a.Bus.GetMsg(ctx, contracts.StreamDeadLetter, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil // already gone: a concurrent retry or purge removed it
		}
		return fmt.Errorf("remove dead letter %d: %w", seq, err)
	}
	return nil
}
