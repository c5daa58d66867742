package auditor

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/auditsummary"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// The recent timelines, kept in memory so that the Audit write-back, the status page and `cosell links get`
// do not read a link's whole subjects again for every summary and every view.
//
// A link's timeline is read from two places: its audit subject (the decisions that make no command: echo,
// stale, no change, conflict, held, linked, …, and the auditor's own: dead letters, re-drives) and its
// outcome subjects (each writer's outcome is the audit record of a write: the decision its command carried,
// then what the write did, auditsummary.OfOutcome). The two are merged in time order (decision time, then
// audit before outcomes, then stream order). The streams stay the record: a cached timeline is only ever
// served after asking each stream what it holds on the link's subjects past the last sequence the cache
// has (one batched direct get each, no consumer; on a replicated stream first the leader's last sequence),
// so a timeline from memory never misses a decision that is in the streams — whichever replica of the
// auditor consumed it, whether this one restarted, or whether it consumes at all (the CLI's and the page's
// read-only auditors). What the auditor's own durables hand it is kept decoded, so that read costs no JSON
// decode for a message this replica has seen. Links are evicted least recently used first, within a
// memory budget (Options.TimelineBytes), and a link with more decisions than Options.TimelineEntries is
// not kept (it is read from the streams each time).

// decisionCost is what a cached decision costs beyond its JSON text (the decoded struct, its strings,
// slices and maps, the id kept to drop a message stored twice), so that with the JSON text it matches the
// heap a cached decision holds (BenchmarkTimelineCacheHeap measures it).
const decisionCost = 800

// The sources of a timeline, in the order a tie in time is broken.
const (
	fromAudit = iota
	fromOutcomes
	sources
)

// timelineSource is where one part of a link's timeline is read: a stream, the link's subject filter on
// it, and how one message decodes into timeline entries.
type timelineSource struct {
	stream  string
	subject func(link string) string
	decode  func([]byte) []contracts.Decision
}

var timelineSources = [sources]timelineSource{
	fromAudit:    {contracts.StreamAudit, func(l string) string { return contracts.Subject(contracts.SubjectAudit, l) }, decodeDecision},
	fromOutcomes: {contracts.StreamOutcomes, contracts.OutcomeSubjects, decodeOutcome},
}

// timelineStats count how timelines are served, for cosell_audit_timeline_* metrics.
type timelineStats struct {
	reads    *prometheus.CounterVec // by source: memory (nothing new), stream (new messages read)
	messages prometheus.Counter     // audit and outcome messages read from the streams for timelines
	decoded  prometheus.Counter     // of them, decoded (not already decoded from the durable)
	bytes    prometheus.GaugeFunc
	links    prometheus.GaugeFunc
}

// timelines is the cache: links most recently used first, within a budget of bytes.
type timelines struct {
	budget  int // bytes; < 0: nothing is kept
	perLink int // decisions per link kept at most

	mu     sync.Mutex
	used   int
	lru    *list.List // of *timeline, most recently used at the front
	byLink map[string]*list.Element
	stats  timelineStats
}

// timeline is one link's cached timeline. read serialises its catch-ups (a second reader of the same
// link waits for the first instead of reading the same messages); everything else is guarded by
// timelines.mu.
type timeline struct {
	link string
	read sync.Mutex

	// through: every message stored on the link's subjects of each source up to this sequence is in
	// entries (a message stored twice or unreadable is left out, as the stream read always did).
	through [sources]uint64
	entries []entry         // in timeline order (before)
	ids     map[string]bool // ce-ids of the messages up to through
	// fed are the messages the auditor's durables delivered past through, by source and sequence:
	// decoded once, used by the next catch-up.
	fed    [sources]map[uint64]fedRecord
	cost   int
	cached bool // still in the cache (not evicted)
}

// entry is one decision of a timeline with where it was read, which orders it.
type entry struct {
	d   contracts.Decision
	src int
	seq uint64
	n   int // its place among its message's decisions
}

// before orders a timeline: by decision time, then audit before outcomes, then stream order.
func (e entry) before(o entry) bool {
	if !e.d.At.Equal(o.d.At) {
		return e.d.At.Before(o.d.At)
	}
	if e.src != o.src {
		return e.src < o.src
	}
	if e.seq != o.seq {
		return e.seq < o.seq
	}
	return e.n < o.n
}

// insert puts e in its place, searching from the end (new entries are nearly always the latest).
func (tl *timeline) insert(e entry) {
	i := len(tl.entries)
	for i > 0 && e.before(tl.entries[i-1]) {
		i--
	}
	tl.entries = slices.Insert(tl.entries, i, e)
}

type fedRecord struct {
	id        string
	decisions []contracts.Decision
	size      int
}

func newTimelines(budget, perLink int) *timelines {
	t := &timelines{budget: budget, perLink: perLink, lru: list.New(), byLink: map[string]*list.Element{}}
	t.stats = timelineStats{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cosell", Name: "audit_timeline_reads_total",
			Help: "Timelines served, by source: memory (the streams had nothing new on the link), stream (new audit or outcome messages read)."}, []string{"source"}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cosell", Name: "audit_timeline_messages_read_total",
			Help: "Audit and outcome messages read from the streams to serve timelines."}),
		decoded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cosell", Name: "audit_timeline_messages_decoded_total",
			Help: "Of the messages read for timelines, those decoded (not already decoded when the auditor's durables delivered them)."}),
		bytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cosell", Name: "audit_timeline_cache_bytes",
			Help: "Estimated memory held by the cached timelines."}, func() float64 { return float64(t.usage().bytes) }),
		links: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cosell", Name: "audit_timeline_cache_links",
			Help: "Links whose timeline is cached."}, func() float64 { return float64(t.usage().links) }),
	}
	return t
}

func (t *timelines) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.stats.reads, t.stats.messages, t.stats.decoded, t.stats.bytes, t.stats.links}
}

// cacheUsage is what the cache holds now.
type cacheUsage struct{ bytes, links, decisions int }

func (t *timelines) usage() cacheUsage {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := cacheUsage{bytes: t.used, links: t.lru.Len()}
	for e := t.lru.Front(); e != nil; e = e.Next() {
		u.decisions += len(e.Value.(*timeline).entries)
	}
	return u
}

// acquire returns link's timeline, cached (as most recently used) if it was not, with its read lock held.
func (t *timelines) acquire(link string) *timeline {
	t.mu.Lock()
	tl := t.touch(link)
	t.mu.Unlock()
	tl.read.Lock()
	return tl
}

// touch finds or makes link's timeline and moves it to the front. t.mu is held.
func (t *timelines) touch(link string) *timeline {
	if el, ok := t.byLink[link]; ok {
		t.lru.MoveToFront(el)
		return el.Value.(*timeline)
	}
	tl := &timeline{link: link, ids: map[string]bool{}}
	for i := range tl.fed {
		tl.fed[i] = map[uint64]fedRecord{}
	}
	if t.budget >= 0 {
		tl.cached = true
		t.byLink[link] = t.lru.PushFront(tl)
	}
	return tl
}

// feed keeps what the auditor's durable of source src delivered (stream sequence seq, event id, the
// message's timeline entries, its data size) for the next catch-up of its link.
func (t *timelines) feed(src int, link string, seq uint64, id string, ds []contracts.Decision, size int) {
	if seq == 0 || t.budget < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tl := t.touch(link)
	if _, ok := tl.fed[src][seq]; ok || seq <= tl.through[src] {
		return // a redelivery, or already read from the stream
	}
	tl.fed[src][seq] = fedRecord{id: id, decisions: ds, size: size}
	t.resize(tl, size+len(ds)*decisionCost)
}

// resize adds delta to tl's cost and evicts the least recently used links while over budget. t.mu is held.
func (t *timelines) resize(tl *timeline, delta int) {
	tl.cost += delta
	if tl.cached {
		t.used += delta
	}
	for t.used > t.budget && t.lru.Len() > 0 {
		t.evict(t.lru.Back().Value.(*timeline))
	}
}

// evict drops tl from the cache. t.mu is held.
func (t *timelines) evict(tl *timeline) {
	if !tl.cached {
		return
	}
	tl.cached = false
	t.used -= tl.cost
	if el, ok := t.byLink[tl.link]; ok {
		t.lru.Remove(el)
		delete(t.byLink, tl.link)
	}
}

// fedSince copies what the durables delivered for tl past its sequences. t.mu is not held.
func (t *timelines) fedSince(tl *timeline) (through [sources]uint64, fed [sources]map[uint64]fedRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for src := range fed {
		fed[src] = make(map[uint64]fedRecord, len(tl.fed[src]))
		for s, r := range tl.fed[src] {
			fed[src][s] = r
		}
	}
	return tl.through, fed
}

// readRecord is one message read from a stream for a catch-up.
type readRecord struct {
	seq       uint64
	id        string
	decisions []contracts.Decision
	size      int
}

// settle puts what a catch-up read of each source into tl, forgets what the durables had delivered up to
// it, and keeps tl within its bounds. tl's read lock is held, t.mu is not.
func (t *timelines) settle(tl *timeline, read [sources][]readRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delta := 0
	for src, records := range read {
		for _, r := range records {
			if r.seq <= tl.through[src] {
				continue
			}
			tl.through[src] = r.seq
			if r.id != "" {
				if tl.ids[r.id] {
					continue
				}
				tl.ids[r.id] = true
			}
			for n, d := range r.decisions {
				tl.insert(entry{d: d, src: src, seq: r.seq, n: n})
			}
			delta += r.size + len(r.decisions)*decisionCost + len(r.id)
		}
		for s, r := range tl.fed[src] {
			if s <= tl.through[src] {
				delete(tl.fed[src], s)
				delta -= r.size + len(r.decisions)*decisionCost
			}
		}
	}
	if len(tl.entries) > t.perLink {
		// Too long to keep: read from the streams each time (and not fed meanwhile).
		t.evict(tl)
	}
	t.resize(tl, delta)
}

// Timeline is a link's audited decisions, oldest first: every decision the audit stream holds on the
// link's subject and every write its outcomes record (each message shown once if it was stored twice,
// e.g. a replay outside the server's duplicate window), in time order. It is served from memory after
// one request to each stream for anything newer than what is cached (see timelines), so the Audit
// write-back, the status page and `cosell links get` cost no consumer and no re-read of the link's whole
// subjects. The slice is the caller's.
func (a *Auditor) Timeline(ctx context.Context, linkID string) ([]contracts.Decision, error) {
	t := a.timelines()
	tl := t.acquire(linkID)
	defer tl.read.Unlock()
	err := a.catchUp(ctx, t, tl)
	var out []contracts.Decision
	if len(tl.entries) > 0 {
		out = make([]contracts.Decision, len(tl.entries))
		for i, e := range tl.entries {
			out[i] = e.d
		}
	}
	if err != nil {
		return out, fmt.Errorf("timeline of %s: %w", linkID, err)
	}
	return out, nil
}

// catchUp reads what the streams hold on tl's subjects past its sequences into tl. tl's read lock is held.
func (a *Auditor) catchUp(ctx context.Context, t *timelines, tl *timeline) error {
	through, fed := t.fedSince(tl)
	var read [sources][]readRecord
	var errs []error
	for src, source := range timelineSources {
		var err error
		read[src], err = a.readSource(ctx, t, source, source.subject(tl.link), through[src], fed[src])
		errs = append(errs, err)
	}
	source := "stream"
	if len(read[fromAudit])+len(read[fromOutcomes]) == 0 {
		source = "memory"
	}
	t.stats.reads.WithLabelValues(source).Inc()
	t.settle(tl, read)
	return errors.Join(errs...)
}

// readSource reads what source's stream holds on subject past through, taking what the durable fed
// decoded already.
func (a *Auditor) readSource(ctx context.Context, t *timelines, source timelineSource, subject string, through uint64, fed map[uint64]fedRecord) ([]readRecord, error) {
	stream := source.stream
	var upTo uint64
	replicated, err := a.Bus.Replicated(ctx, stream)
	if err != nil {
		return nil, err
	}
	if replicated {
		// A direct get may come from a follower a moment behind: read up to what the leader holds.
		if upTo, err = a.Bus.LastSeqOnSubject(ctx, stream, subject); err != nil {
			return nil, err
		}
		if upTo <= through {
			return nil, nil
		}
	}
	var read []readRecord
	keep := func(m platform.Stored) error {
		if m.Seq <= through {
			return nil
		}
		t.stats.messages.Inc()
		r := readRecord{seq: m.Seq, id: m.Header.Get("ce-id"), size: len(m.Data)}
		if f, ok := fed[m.Seq]; ok {
			r.decisions = f.decisions
		} else {
			t.stats.decoded.Inc()
			r.decisions = source.decode(m.Data)
		}
		read = append(read, r)
		through = m.Seq
		return nil
	}
	_, err = a.Bus.ReadSubject(ctx, stream, subject, through, upTo, keep)
	for attempt := 0; err == nil && replicated && through < upTo && attempt < 3; attempt++ {
		// The replica that answered was behind the leader: ask again (another may answer), then through
		// an ordered consumer; a timeline short of what the leader holds is never served.
		if attempt < 2 {
			_, err = a.Bus.ReadSubject(ctx, stream, subject, through, upTo, keep)
		} else {
			err = a.Bus.Read(ctx, stream, keep, platform.FromSeq(through+1), platform.Subjects(subject))
		}
	}
	if err == nil && through < upTo {
		err = fmt.Errorf("the %s stream's replicas hold %s up to sequence %d, the leader %d: try again", stream, subject, through, upTo)
	}
	return read, err
}

// decodeDecision is the decision one audit message carries (none when it is unreadable, which a
// timeline skips).
func decodeDecision(data []byte) []contracts.Decision {
	var d contracts.Decision
	if json.Unmarshal(data, &d) != nil {
		return nil
	}
	return []contracts.Decision{d}
}

// decodeOutcome is what one outcome message stands for on the timeline (auditsummary.OfOutcome; none
// when it is unreadable).
func decodeOutcome(data []byte) []contracts.Decision {
	out, err := readOutcome(data)
	if err != nil {
		return nil
	}
	return auditsummary.OfOutcome(out)
}

// readOutcome decodes an outcome without the referral a Partner Center outcome carries (the timeline
// needs only its id: auditsummary.Redecided), which is most of its size.
func readOutcome(data []byte) (contracts.Outcome, error) {
	var o struct {
		contracts.Outcome
		Referral *struct {
			ID string `json:"id"`
		} `json:"referral,omitempty"`
	}
	if err := json.Unmarshal(data, &o); err != nil {
		return contracts.Outcome{}, err
	}
	if o.Referral != nil {
		o.Outcome.Referral = &partnercenter.Referral{ID: o.Referral.ID}
	}
	return o.Outcome, nil
}

// timelines is the Auditor's cache, made on first use with its Options.
func (a *Auditor) timelines() *timelines {
	a.tlOnce.Do(func() {
		o := a.Options.withDefaults()
		a.tl = newTimelines(o.TimelineBytes, o.TimelineEntries)
	})
	return a.tl
}
