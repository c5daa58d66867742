// Package mapper is the mapper stage: it reads observed snapshots and writers' outcomes, asks the pure
// decision core (package decide) what to do, keeps the link records in KV with compare-and-set, and
// publishes the write commands and the audited decisions.
//
// One compare-and-set per decision: the link record carries the outbox of the commands and decisions that
// decision produced, they are published after the store, and the triggering message is acked only after
// that. The published outbox stays in the record until the next decision's write replaces it; the next
// handling publishes a stored outbox again (same ids: the server drops the copies inside its duplicate
// window) only while it may not have been published (see resend). A crash anywhere in between leaves the
// outbox stored, and a decision is never lost and never sent without the link state that explains it.
package mapper

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/auditsummary"
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
	// AfterStore, when set, is called between a link's store and the publishing of its outbox: the crash
	// point of the tests.
	AfterStore func(linkID string)
	// Cache holds the links last read or stored here (nil: every decision reads its link from the bucket).
	Cache *linkCache

	// sent remembers, per link, the revision whose outbox this process published, so the next handling
	// of the link does not publish it again. It is only a shortcut: without it (another replica, a
	// restart) resend decides from the stream.
	sentMu sync.Mutex
	sent   map[string]uint64
}

// New builds the mapper on a connected bus.
func New(ctx context.Context, bus *platform.Bus, m mapping.Mapping, log *slog.Logger) (*Service, error) {
	kv, err := bus.KV(ctx, contracts.BucketLinks)
	if err != nil {
		return nil, fmt.Errorf("mapper: links bucket: %w", err)
	}
	return &Service{Bus: bus, Links: kv, Decide: decide.Decider{Mapping: m}, Log: log, Now: time.Now,
		Cache: newLinkCache(DefaultLinkCacheMiB << 20)}, nil
}

// DefaultLinkCacheMiB is the links cache's default budget (COSELL_MAPPER_LINK_CACHE_MIB).
const DefaultLinkCacheMiB = 4

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
		obs.Returned = e.Source() == contracts.StagePCWriter
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
	if decide.Inert(out) {
		// A done Salesforce write-back (link, status, Audit): nothing of the link depends on it, so it costs
		// no link write and no decision; a failed one is still folded in below.
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
	// Indexes are the decision's new indexes (each side's id → this link), kept with its outbox: a
	// handling that stops after the store and before making them (a crash) leaves them here, and the
	// next handling makes them (resend), as it publishes the outbox; its re-decision would not name them
	// again (the link already holds the ids).
	Indexes map[contracts.System]string `json:"indexes,omitempty"`
	rev     uint64
}

// OutboxItem is an event waiting to be published.
type OutboxItem struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
}

const maxCASAttempts = 16

// update runs one decision under compare-and-set: load, publish a stored outbox that may not have been
// published, decide, store the link with its new outbox (one write), publish it.
func (s *Service) update(ctx context.Context, load func(context.Context) (*stored, error), decideFn func(*contracts.Link) decide.Result) error {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		cur, err := load(ctx)
		if err != nil {
			return err
		}
		if cur != nil && (len(cur.Outbox) > 0 || len(cur.Indexes) > 0) {
			// The decision this record holds may have stopped before publishing it or making its
			// indexes: they go before anything decided now replaces it.
			if err := s.resend(ctx, cur); err != nil {
				return err
			}
		}
		var link *contracts.Link
		if cur != nil {
			link = &cur.Link
		}
		res := foldAudit(decideFn(link))
		items, err := s.outbox(res)
		if err != nil {
			return platform.Permanent(err)
		}
		if res.Link == nil {
			// Nothing to remember: publish the decisions (audit) and be done.
			return s.publish(ctx, items)
		}
		next := &stored{Link: *res.Link, Outbox: items, Indexes: toIndex(*res.Link, res.NewIndexes)}
		next.UpdatedAt = s.Now().UTC()
		if cur != nil {
			next.rev = cur.rev
		}
		rev, size, err := s.store(ctx, next)
		if errors.Is(err, errConflict) {
			// Changed since it was read (or since it was cached): decide again on what the bucket holds.
			s.Cache.drop(next.ID)
			continue
		}
		if err != nil {
			s.Cache.drop(next.ID)
			return err
		}
		next.rev = rev
		s.Cache.put(next, size)
		if s.AfterStore != nil {
			s.AfterStore(next.ID)
		}
		if err := s.indexAndPublish(ctx, next.Link, next.Indexes, items); err != nil {
			return err
		}
		s.markSent(next.ID, rev)
		if len(items) > 0 || len(next.Indexes) > 0 {
			// Held from now on without them (a record with none, an outcome's most often, is held as it is).
			s.Cache.put(next.published(), size-outboxSize(items))
		}
		return nil
	}
	return fmt.Errorf("mapper: link kept changing under %d attempts; will retry", maxCASAttempts)
}

var errConflict = errors.New("link changed concurrently")

// store writes the link with its outbox by compare-and-set; it returns the new revision and the
// encoding's size.
func (s *Service) store(ctx context.Context, st *stored) (uint64, int, error) {
	buf := linkBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= linkBufferKeep {
			linkBuffers.Put(buf)
		}
	}()
	if err := encodeLink(buf, st); err != nil {
		return 0, 0, platform.Permanent(err)
	}
	b := buf.Bytes()
	var err error
	key := contracts.LinkKey(st.ID)
	var rev uint64
	if st.rev == 0 {
		rev, err = s.Links.Create(ctx, key, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, 0, errConflict
		}
	} else {
		rev, err = s.Links.Update(ctx, key, b, st.rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, 0, errConflict
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("store link %s: %w", st.ID, err)
	}
	return rev, len(b), nil
}

// resendSkew is how much earlier than the record's own time its outbox may have been stored by the
// stream's clock (the mapper's and the server's clocks differ a little).
const resendSkew = time.Minute

// resend publishes a stored outbox again when it may not have been published. The decision that stored it
// published it before its triggering message was acked, so it is unpublished only after a crash (or a
// lost connection) between the store and the publish; its trigger then comes again after AckWait, or any
// other event of the link comes first. Either way the next handling of the link publishes it:
//
//   - published by this process (the revision it remembers): nothing to do, the hot path;
//   - stored less than half the duplicate window ago: publish again; had it been published, the server
//     drops every copy (same Nats-Msg-Id), so nothing is stored twice and a redelivery that comes within
//     AckWait, at the latest after MaxDeliver back-offs (well inside the window), always lands here;
//   - older (a stage down past the window, an outage, a replay of the streams much later): the stream
//     decides, not the clock: the outbox's items are looked for on their subjects since the record was
//     stored. All found: it was published, and nothing is published twice past the window. Any missing:
//     publish it now.
func (s *Service) resend(ctx context.Context, st *stored) error {
	if s.wasSent(st.ID, st.rev) {
		return nil
	}
	if err := s.index(ctx, st.Link, st.Indexes); err != nil {
		return err
	}
	if len(st.Outbox) == 0 {
		s.markSent(st.ID, st.rev)
		return nil
	}
	window := s.Bus.Config().DuplicateWindow
	if window <= 0 || s.Now().Sub(st.UpdatedAt) >= window/2 {
		done, err := s.published(ctx, st)
		if err != nil {
			return err
		}
		if done {
			s.markSent(st.ID, st.rev)
			return nil
		}
	}
	if err := s.publish(ctx, st.Outbox); err != nil {
		return err
	}
	s.markSent(st.ID, st.rev)
	return nil
}

// published reports whether every item of a stored outbox is on its stream, stored since the record (the
// items leave together, so a failed publish may have stored some of them and not others).
func (s *Service) published(ctx context.Context, st *stored) (bool, error) {
	missing := map[string]bool{}
	bySubject := map[string]string{} // subject → stream
	for _, it := range st.Outbox {
		missing[it.ID] = true
		bySubject[it.Subject] = contracts.StreamRequested
		if it.Type == contracts.TypeDecision {
			bySubject[it.Subject] = contracts.StreamAudit
		}
	}
	for subject, stream := range bySubject {
		err := s.Bus.Read(ctx, stream, func(m platform.Stored) error {
			delete(missing, m.Header.Get(jetstream.MsgIDHeader))
			return nil
		}, platform.Subjects(subject), platform.Since(st.UpdatedAt.Add(-resendSkew)))
		if err != nil {
			return false, fmt.Errorf("link %s: look for its outbox on %s: %w", st.ID, stream, err)
		}
	}
	return len(missing) == 0, nil
}

// sentKeep bounds the memory of published outboxes; past it the memory starts again (resend then asks
// the stream, or publishes copies the server drops).
const sentKeep = 1 << 16

func (s *Service) markSent(linkID string, rev uint64) {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	if s.sent == nil || len(s.sent) >= sentKeep {
		s.sent = map[string]uint64{}
	}
	s.sent[linkID] = rev
}

func (s *Service) wasSent(linkID string, rev uint64) bool {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	return s.sent[linkID] == rev && rev != 0
}

func (s *Service) publish(ctx context.Context, items []OutboxItem) error {
	if len(items) == 0 {
		return nil
	}
	out := make([]platform.Outgoing, 0, len(items))
	for _, it := range items {
		// As bytes, not json.RawMessage: the encoded data is taken as it is, not re-encoded (validated
		// and copied) by encoding/json.
		e, err := platform.NewEvent(it.ID, it.Type, contracts.StageMapper, lastToken(it.Subject), []byte(it.Data))
		if err != nil {
			return platform.Permanent(err)
		}
		// Decided behind a backlog (the snapshot's mark or this delivery's own pending count): sf-writer
		// fills its batches for it. The mark is no part of the decision or the event's id.
		platform.MarkBehind(&e, platform.Behind(ctx))
		out = append(out, platform.Outgoing{Subject: it.Subject, Event: e})
	}
	// All at once (one round trip); on an error some may be stored: the handling fails, and the record's
	// outbox is published again in full (the server drops the copies).
	if _, err := s.Bus.PublishAll(ctx, out); err != nil {
		return fmt.Errorf("publish %d events of %s: %w", len(out), items[0].ID, err)
	}
	return nil
}

// outbox turns a result into the events to publish: commands first (each carrying the decision it carries
// out), then the decisions no command or outcome records (echo, stale, no change, conflict, held, …).
func (s *Service) outbox(res decide.Result) ([]OutboxItem, error) {
	var items []OutboxItem
	add := func(id, typ, subject string, data any) error {
		b, err := encodeJSON(data)
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
		if res.Carried(d) || d.Stage != contracts.StageMapper {
			// A command carries it to its outcome, or it is the writer's own, read off its outcome: the
			// outcome is its audit record (auditsummary.OfOutcome), so the commanded path costs no audit
			// message.
			continue
		}
		id := contracts.EventID("decision", d.LinkID, d.Cause, d.Kind, fmt.Sprint(i))
		if err := add(id, contracts.TypeDecision, contracts.Subject(contracts.SubjectAudit, d.LinkID), d); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// indexAndPublish makes the decision's indexes and publishes its outbox side by side (neither waits for
// the other: both are done before the triggering message is acked, and a failure of either fails the
// handling, which makes both again).
func (s *Service) indexAndPublish(ctx context.Context, l contracts.Link, ids map[contracts.System]string, items []OutboxItem) error {
	if len(ids) == 0 || len(items) == 0 {
		return errors.Join(s.index(ctx, l, ids), s.publish(ctx, items))
	}
	indexed := make(chan error, 1)
	go func() { indexed <- s.index(ctx, l, ids) }()
	err := s.publish(ctx, items)
	return errors.Join(<-indexed, err)
}

// published is the record as cached once its outbox is published and its indexes made: without them,
// which only a handling that does not know they were reads (resend), so the cache holds no copy of a
// command.
func (st *stored) published() *stored {
	return &stored{Link: st.Link, rev: st.rev}
}

// outboxSize is about what items add to their record's encoding.
func outboxSize(items []OutboxItem) int {
	n := 0
	for _, it := range items {
		n += len(it.ID) + len(it.Type) + len(it.Subject) + len(it.Data) + 40
	}
	return n
}

// toIndex is the ids of ids that need an index pointing at l: every side's but the one that started it,
// whose id names the link (contracts.LinkIDFor), so find needs no index for it.
func toIndex(l contracts.Link, ids map[contracts.System]string) map[contracts.System]string {
	var need map[contracts.System]string
	for sys, id := range ids {
		if id == "" || contracts.LinkIDFor(sys, id) == l.ID {
			continue
		}
		if need == nil {
			need = map[contracts.System]string{}
		}
		need[sys] = id
	}
	return need
}

// index makes each id of ids (toIndex's) point at the link. Indexes never change once made.
func (s *Service) index(ctx context.Context, l contracts.Link, ids map[contracts.System]string) error {
	for sys, id := range ids {
		key := contracts.IndexKey(sys, id)
		if s.Cache.index(key) == l.ID {
			continue
		}
		_, err := s.Links.Create(ctx, key, []byte(l.ID))
		if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("index %s %s → %s: %w", sys, id, l.ID, err)
		}
		if err == nil {
			s.Cache.putIndex(key, l.ID)
		}
	}
	return nil
}

// find looks a record's link up: by the id a link it started has, by its index (a link the other side
// started), and the same two ways by the id of its counterpart (the record names its partner before the
// link's outcome made the index). The first of those that names a link wins; the keys the cache cannot
// answer are read from the bucket all at once (one round trip, not one per miss: a new record misses
// every one).
func (s *Service) find(ctx context.Context, sys contracts.System, id, counterpart string) (*stored, error) {
	var ways []findWay
	for _, k := range []struct {
		sys contracts.System
		id  string
	}{{sys, id}, {sys.Other(), counterpart}} {
		if k.id == "" {
			continue
		}
		if linkID := s.Cache.index(contracts.IndexKey(k.sys, k.id)); linkID != "" {
			// Known here: the link the other side started (no read of the id's own key, which is not there).
			ways = append(ways, findWay{link: linkID})
		}
		ways = append(ways, findWay{link: contracts.LinkIDFor(k.sys, k.id)}, findWay{index: contracts.IndexKey(k.sys, k.id)})
	}
	r := s.prefetch(ctx, ways)
	for _, w := range ways {
		if w.index != "" {
			linkID, err := r.index(ctx, w.index)
			if linkID == "" || err != nil {
				if err != nil {
					return nil, err
				}
				continue
			}
			w.link = linkID
		}
		if st, err := r.link(ctx, w.link); st != nil || err != nil {
			return st, err
		}
	}
	return nil, nil
}

// findWay is one way find looks: the link of that id, or the link the index key names.
type findWay struct{ link, index string }

// prefetch reads, all at once, the keys of ways up to the first the cache answers.
func (s *Service) prefetch(ctx context.Context, ways []findWay) *linkReads {
	r := &linkReads{s: s}
	var keys []string
	for _, w := range ways {
		if w.index == "" && s.Cache.get(w.link) != nil {
			break
		}
		if w.index != "" && s.Cache.index(w.index) != "" {
			break
		}
		keys = append(keys, cmp.Or(w.index, contracts.LinkKey(w.link)))
	}
	if len(keys) < 2 {
		return r // one read or none: nothing to overlap
	}
	r.got = make(map[string]kvRead, len(keys))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, key := range keys {
		wg.Go(func() {
			e, err := s.Links.Get(ctx, key)
			mu.Lock()
			r.got[key] = kvRead{e, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return r
}

// linkReads answers find's reads from what prefetch read, else from the cache and the bucket.
type linkReads struct {
	s   *Service
	got map[string]kvRead
}

type kvRead struct {
	e   jetstream.KeyValueEntry
	err error
}

func (r *linkReads) read(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if g, ok := r.got[key]; ok {
		return g.e, g.err
	}
	return r.s.Links.Get(ctx, key)
}

// index is the link id an index key names ("" when there is no such index).
func (r *linkReads) index(ctx context.Context, key string) (string, error) {
	if linkID := r.s.Cache.index(key); linkID != "" {
		return linkID, nil
	}
	e, err := r.read(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read index %s: %w", key, err)
	}
	r.s.Cache.putIndex(key, string(e.Value()))
	return string(e.Value()), nil
}

// link reads a link: as cached, else as prefetched or from the bucket (and then cached).
func (r *linkReads) link(ctx context.Context, linkID string) (*stored, error) {
	if st := r.s.Cache.get(linkID); st != nil {
		return st, nil
	}
	e, err := r.read(ctx, contracts.LinkKey(linkID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read link %s: %w", linkID, err)
	}
	var st stored
	if err := decodeLink(e.Value(), &st); err != nil {
		return nil, platform.Permanent(fmt.Errorf("link %s is not valid JSON: %w", linkID, err))
	}
	st.rev = e.Revision()
	r.s.Cache.put(&st, len(e.Value()))
	return &st, nil
}

// get reads a link: as cached, else from the bucket (and then cached).
func (s *Service) get(ctx context.Context, linkID string) (*stored, error) {
	return (&linkReads{s: s}).link(ctx, linkID)
}

func lastToken(subject string) string {
	for i := len(subject) - 1; i >= 0; i-- {
		if subject[i] == '.' {
			return subject[i+1:]
		}
	}
	return subject
}

// foldAudit adds the result's decisions that the Audit field shows to the link's trail, and when the
// result writes to Salesforce anyway, its last Salesforce command carries the Audit text: the summary costs
// no command of its own (the auditor writes one only when the text is not the one carried last, e.g. for a
// change that writes only to Partner Center, or a dead letter on the timeline).
func foldAudit(res decide.Result) decide.Result {
	l := res.Link
	if l == nil {
		return res
	}
	var tr contracts.AuditTrail
	if l.Audit != nil {
		tr = *l.Audit
	}
	var added []string
	for _, d := range res.Decisions {
		if auditsummary.Summarised(d) {
			added = append(added, auditsummary.Line(d))
		}
	}
	if len(added) > 0 {
		// The trail's last lines and the new ones, in a new slice of exactly their length (the link's
		// record is shared, and a slice grown by append would be twice it).
		keep := tr.Lines[max(0, len(tr.Lines)+len(added)-auditsummary.Entries):]
		lines := append(make([]string, 0, len(keep)+len(added)), keep...)
		tr.Lines = append(lines, added...)
		tr.Lines = tr.Lines[max(0, len(tr.Lines)-auditsummary.Entries):]
		tr.Total += len(added)
	}
	cmd := res.LinkBack
	if cmd == nil {
		cmd = res.Opp
	}
	if cmd != nil && tr.Total > 0 && (cmd.Data.OpportunityID != "" || cmd.Data.Op == contracts.OpCreate) {
		text := auditsummary.Text(tr.Lines, tr.Total, auditsummary.Entries)
		if id := auditsummary.CommandID(l.ID, text); id != tr.Sent {
			fields := maps.Clone(cmd.Data.Fields)
			if fields == nil {
				fields = map[string]any{}
			}
			fields[sf.FieldAudit] = text
			c := *cmd
			c.Data.Fields = fields
			c.Data.AuditSent = id
			if cmd == res.LinkBack {
				res.LinkBack = &c
			} else {
				res.Opp = &c
			}
			tr.Sent = id
		}
	}
	if tr.Total > 0 {
		next := *l
		next.Audit = &tr
		res.Link = &next
	}
	return res
}
