// Package mapper is the mapper stage: it reads observed snapshots and writers' outcomes, asks the pure
// decision core (package decide) what to do, keeps the link records in KV with compare-and-set, and
// publishes the write commands and the audited decisions.
//
// Commands and decisions are first written into the link record's outbox, in the same compare-and-set
// that changes the link, then published, then cleared. A crash anywhere in between leaves them in the
// outbox, and the next handling of that link publishes them (with the same ids, so the server drops
// copies): a decision is never lost and never sent without the link state that explains it.
package mapper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/mapper/decide"
)

// Service is the mapper stage.
type Service struct {
	Bus   *platform.Bus
	Links jetstream.KeyValue
	// Decide decides with the stage's mapping.
	Decide decide.Decider
	Log    *slog.Logger
	// Now is the clock (tests may fix it).
	Now func() time.Time
	// Consume tunes the consumer loops.
	Consume platform.ConsumeOptions
}

// New builds the mapper on a connected bus.
func New(ctx context.Context, bus *platform.Bus, m mapping.Mapping, log *slog.Logger) (*Service, error) {
	kv, err := bus.KV(ctx, contracts.BucketLinks)
	if err != nil {
		return nil, fmt.Errorf("mapper: links bucket: %w", err)
	}
	return &Service{Bus: bus, Links: kv, Decide: decide.Decider{Mapping: m}, Log: log, Now: time.Now}, nil
}

// Run consumes observed snapshots and outcomes until ctx is cancelled, then drains.
func (s *Service) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.Bus.Consume(ctx, contracts.ConsumerMapperObserved, s.HandleObserved, s.Consume) }()
	go func() { errc <- s.Bus.Consume(ctx, contracts.ConsumerMapperOutcomes, s.HandleOutcome, s.Consume) }()
	return errors.Join(<-errc, <-errc)
}

// HandleObserved decides on one observed snapshot.
func (s *Service) HandleObserved(ctx context.Context, e platform.Event) error {
	var obs decide.Observation
	switch e.Type() {
	case contracts.TypeReferralObserved:
		d, err := platform.DataAs[contracts.ReferralObserved](e)
		if err != nil {
			return platform.Permanent(err)
		}
		if d.Referral.ID == "" {
			return platform.Permanent(fmt.Errorf("event %s: referral has no id", e.ID()))
		}
		obs = s.Decide.ObserveReferral(e.ID(), d.Referral, d.Version)
	case contracts.TypeOpportunityObserved:
		d, err := platform.DataAs[contracts.OpportunityObserved](e)
		if err != nil {
			return platform.Permanent(err)
		}
		if d.Opportunity.ID == "" {
			return platform.Permanent(fmt.Errorf("event %s: opportunity has no id", e.ID()))
		}
		obs = s.Decide.ObserveOpportunity(e.ID(), d.Opportunity, d.Version)
	default:
		return platform.Permanent(fmt.Errorf("event %s: mapper does not handle type %q", e.ID(), e.Type()))
	}
	return s.update(ctx, func(ctx context.Context) (*stored, error) {
		return s.find(ctx, obs.System, obs.EntityID, obs.Counterpart)
	}, func(l *contracts.Link) decide.Result {
		return s.Decide.Observe(l, obs, s.Now().UTC())
	})
}

// HandleOutcome folds a writer's outcome into its link.
func (s *Service) HandleOutcome(ctx context.Context, e platform.Event) error {
	out, err := platform.DataAs[contracts.Outcome](e)
	if err != nil {
		return platform.Permanent(err)
	}
	if out.LinkID == "" {
		return platform.Permanent(fmt.Errorf("outcome %s names no link", e.ID()))
	}
	if out.Purpose == contracts.PurposeAudit && out.Status == contracts.OutcomeWritten {
		// The auditor's Audit write-back is done: nothing of the link depends on it (no pending command, no
		// mapped value, no error it clears), so it costs no link write and no decision; a failed one is
		// still folded in and audited below.
		return nil
	}
	return s.update(ctx, func(ctx context.Context) (*stored, error) {
		return s.get(ctx, out.LinkID)
	}, func(l *contracts.Link) decide.Result {
		if l == nil {
			return decide.Result{}
		}
		return s.Decide.Outcome(*l, out, s.Now().UTC())
	})
}

// stored is a link record as kept in KV, with the outbox of what it still has to publish.
type stored struct {
	contracts.Link
	Outbox []OutboxItem `json:"outbox,omitempty"`
	rev    uint64
}

// OutboxItem is an event waiting to be published.
type OutboxItem struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
}

const maxCASAttempts = 16

// update runs one decision under compare-and-set: load, decide, store with the outbox, publish, clear.
func (s *Service) update(ctx context.Context, load func(context.Context) (*stored, error), decideFn func(*contracts.Link) decide.Result) error {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		cur, err := load(ctx)
		if err != nil {
			return err
		}
		if cur != nil && len(cur.Outbox) > 0 {
			// A previous handling stored a decision and stopped before publishing it.
			if err := s.flush(ctx, cur); err != nil {
				return err
			}
			continue
		}
		var link *contracts.Link
		if cur != nil {
			link = &cur.Link
		}
		res := decideFn(link)
		items, err := s.outbox(res)
		if err != nil {
			return platform.Permanent(err)
		}
		if res.Link == nil {
			// Nothing to remember: publish the decisions (audit) and be done.
			return s.publish(ctx, items)
		}
		next := &stored{Link: *res.Link, Outbox: items}
		next.UpdatedAt = s.Now().UTC()
		if cur != nil {
			next.rev = cur.rev
		}
		rev, err := s.store(ctx, next)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return err
		}
		next.rev = rev
		if err := s.index(ctx, next.Link, res.NewIndexes); err != nil {
			return err
		}
		return s.flush(ctx, next)
	}
	return fmt.Errorf("mapper: link kept changing under %d attempts; will retry", maxCASAttempts)
}

var errConflict = errors.New("link changed concurrently")

func (s *Service) store(ctx context.Context, st *stored) (uint64, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, platform.Permanent(err)
	}
	key := contracts.LinkKey(st.ID)
	var rev uint64
	if st.rev == 0 {
		rev, err = s.Links.Create(ctx, key, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, errConflict
		}
	} else {
		rev, err = s.Links.Update(ctx, key, b, st.rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, errConflict
		}
	}
	if err != nil {
		return 0, fmt.Errorf("store link %s: %w", st.ID, err)
	}
	return rev, nil
}

// flush publishes the outbox, then clears it with compare-and-set (a concurrent change that kept the items
// will publish them again: same ids, dropped by the server).
func (s *Service) flush(ctx context.Context, st *stored) error {
	if err := s.publish(ctx, st.Outbox); err != nil {
		return err
	}
	st.Outbox = nil
	if _, err := s.store(ctx, st); err != nil && !errors.Is(err, errConflict) {
		return err
	}
	return nil
}

func (s *Service) publish(ctx context.Context, items []OutboxItem) error {
	for _, it := range items {
		e, err := platform.NewEvent(it.ID, it.Type, contracts.StageMapper, lastToken(it.Subject), it.Data)
		if err != nil {
			return platform.Permanent(err)
		}
		if _, err := s.Bus.Publish(ctx, it.Subject, e); err != nil {
			return fmt.Errorf("publish %s: %w", it.ID, err)
		}
	}
	return nil
}

// outbox turns a result into the events to publish: commands first, then the audit trail.
func (s *Service) outbox(res decide.Result) ([]OutboxItem, error) {
	var items []OutboxItem
	add := func(id, typ, subject string, data any) error {
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("encode %s: %w", id, err)
		}
		items = append(items, OutboxItem{ID: id, Type: typ, Subject: subject, Data: b})
		return nil
	}
	if c := res.Referral; c != nil {
		if err := add(c.ID, contracts.TypeReferralRequested, contracts.Subject(contracts.SubjectReferralRequested, c.Data.LinkID), c.Data); err != nil {
			return nil, err
		}
	}
	for _, c := range []*decide.Command[contracts.OpportunityCommand]{res.Opp, res.LinkBack} {
		if c == nil {
			continue
		}
		if err := add(c.ID, contracts.TypeOpportunityRequested, contracts.Subject(contracts.SubjectOpportunityRequested, c.Data.LinkID), c.Data); err != nil {
			return nil, err
		}
	}
	for i, d := range res.Decisions {
		id := contracts.EventID("decision", d.LinkID, d.Cause, d.Kind, fmt.Sprint(i))
		if err := add(id, contracts.TypeDecision, contracts.Subject(contracts.SubjectAudit, d.LinkID), d); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// index makes each side's id point at the link. Indexes never change once made.
func (s *Service) index(ctx context.Context, l contracts.Link, ids map[contracts.System]string) error {
	for sys, id := range ids {
		if id == "" {
			continue
		}
		_, err := s.Links.Create(ctx, contracts.IndexKey(sys, id), []byte(l.ID))
		if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("index %s %s → %s: %w", sys, id, l.ID, err)
		}
	}
	return nil
}

// find looks a record's link up: by its own index, by the id of its counterpart, and by the id a link
// it started would have (in case a crash came between storing the link and its index).
func (s *Service) find(ctx context.Context, sys contracts.System, id, counterpart string) (*stored, error) {
	if st, err := s.byIndex(ctx, sys, id); st != nil || err != nil {
		return st, err
	}
	if counterpart != "" {
		if st, err := s.byIndex(ctx, sys.Other(), counterpart); st != nil || err != nil {
			return st, err
		}
	}
	return s.get(ctx, contracts.LinkIDFor(sys, id))
}

func (s *Service) byIndex(ctx context.Context, sys contracts.System, id string) (*stored, error) {
	e, err := s.Links.Get(ctx, contracts.IndexKey(sys, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read index %s %s: %w", sys, id, err)
	}
	return s.get(ctx, string(e.Value()))
}

func (s *Service) get(ctx context.Context, linkID string) (*stored, error) {
	e, err := s.Links.Get(ctx, contracts.LinkKey(linkID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read link %s: %w", linkID, err)
	}
	var st stored
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, platform.Permanent(fmt.Errorf("link %s is not valid JSON: %w", linkID, err))
	}
	st.rev = e.Revision()
	return &st, nil
}

func lastToken(subject string) string {
	for i := len(subject) - 1; i >= 0; i-- {
		if subject[i] == '.' {
			return subject[i+1:]
		}
	}
	return subject
}
