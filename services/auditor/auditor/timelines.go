package auditor

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// The recent timelines, kept in memory so that the Audit write-back, the status page and `cosell links get`
// do not read a link's whole audit subject again for every summary and every view.
//
// The audit stream stays the record: a cached timeline is only ever served after asking the stream what
// it holds on the link's subject past the last sequence the cache has (one batched direct get, no
// consumer; on a replicated stream first the leader's last sequence on the subject), so a timeline from
// memory never misses a decision that is in the stream — whichever replica of the auditor consumed it,
// whether this one restarted, or whether it consumes at all (the CLI's and the page's read-only
// auditors). What the auditor's own durable hands it is kept decoded, so that read costs no JSON decode
// for a decision this replica has seen. Links are evicted least recently used first, within a memory
// budget (Options.TimelineBytes), and a link with more decisions than Options.TimelineEntries is not kept
// (it is read from the stream each time, as before).

// decisionCost is what a cached decision costs beyond its JSON text (the decoded struct, its strings,
// slices and maps, the id kept to drop a decision stored twice), so that with the JSON text it matches the
// heap a cached decision holds (TestTimelineCacheServesFromMemory checks it within a factor of two).
const decisionCost = 800

// timelineStats count how timelines are served, for cosell_audit_timeline_* metrics.
type timelineStats struct {
	reads    *prometheus.CounterVec // by source: memory (nothing new), stream (new messages read)
	messages prometheus.Counter     // audit messages read from the stream for timelines
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

	// through: every message stored on the link's subject up to this sequence is in decisions (a
	// message stored twice or unreadable is left out, as the stream read always did).
	through   uint64
	decisions []contracts.Decision
	ids       map[string]bool // ce-ids of the messages up to through
	// fed are the decisions the auditor's durable delivered past through, by sequence: decoded once,
	// used by the next catch-up.
	fed    map[uint64]fedRecord
	cost   int
	cached bool // still in the cache (not evicted)
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
			Help: "Timelines served, by source: memory (the stream had nothing new on the link), stream (new audit messages read)."}, []string{"source"}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cosell", Name: "audit_timeline_messages_read_total",
			Help: "Audit messages read from the stream to serve timelines."}),
		decoded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cosell", Name: "audit_timeline_messages_decoded_total",
			Help: "Of the audit messages read for timelines, those decoded (not already decoded when the auditor's durable delivered them)."}),
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
		u.decisions += len(e.Value.(*timeline).decisions)
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
	tl := &timeline{link: link, ids: map[string]bool{}, fed: map[uint64]fedRecord{}}
	if t.budget >= 0 {
		tl.cached = true
		t.byLink[link] = t.lru.PushFront(tl)
	}
	return tl
}

// feed keeps a decision the auditor's durable delivered (stream sequence seq, event id, its data size)
// for the next catch-up of its link.
func (t *timelines) feed(link string, seq uint64, id string, ds []contracts.Decision, size int) {
	if seq == 0 || t.budget < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tl := t.touch(link)
	if _, ok := tl.fed[seq]; ok || seq <= tl.through {
		return // a redelivery, or already read from the stream
	}
	tl.fed[seq] = fedRecord{id: id, decisions: ds, size: size}
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

// fedSince copies what the durable delivered for tl past seq. t.mu is not held.
func (t *timelines) fedSince(tl *timeline) (through uint64, fed map[uint64]fedRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fed = make(map[uint64]fedRecord, len(tl.fed))
	for s, r := range tl.fed {
		fed[s] = r
	}
	return tl.through, fed
}

// readRecord is one audit message read from the stream for a catch-up.
type readRecord struct {
	seq       uint64
	id        string
	decisions []contracts.Decision
	size      int
}

// settle appends what a catch-up read to tl, forgets what the durable had delivered up to it, and keeps
// tl within its bounds. tl's read lock is held, t.mu is not.
func (t *timelines) settle(tl *timeline, read []readRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delta := 0
	for _, r := range read {
		if r.seq <= tl.through {
			continue
		}
		tl.through = r.seq
		if r.id != "" {
			if tl.ids[r.id] {
				continue
			}
			tl.ids[r.id] = true
		}
		tl.decisions = append(tl.decisions, r.decisions...)
		delta += r.size + len(r.decisions)*decisionCost + len(r.id)
	}
	for s, r := range tl.fed {
		if s <= tl.through {
			delete(tl.fed, s)
			delta -= r.size + len(r.decisions)*decisionCost
		}
	}
	if len(tl.decisions) > t.perLink {
		// Too long to keep: read from the stream each time (and not fed meanwhile).
		t.evict(tl)
	}
	t.resize(tl, delta)
}

// Timeline is a link's audited decisions, oldest first: every decision the audit stream holds on the
// link's subject (one shown once if it was stored twice, e.g. a replay outside the server's duplicate
// window). It is served from memory after one request to the stream for anything newer than what is
// cached (see timelines), so the Audit write-back, the status page and `cosell links get` cost no
// consumer and no re-read of the link's whole subject. The slice is the caller's.
func (a *Auditor) Timeline(ctx context.Context, linkID string) ([]contracts.Decision, error) {
	t := a.timelines()
	tl := t.acquire(linkID)
	defer tl.read.Unlock()
	err := a.catchUp(ctx, t, tl)
	out := slices.Clone(tl.decisions)
	if err != nil {
		return out, fmt.Errorf("timeline of %s: %w", linkID, err)
	}
	return out, nil
}

// catchUp reads what the stream holds on tl's subject past tl.through into tl. tl's read lock is held.
func (a *Auditor) catchUp(ctx context.Context, t *timelines, tl *timeline) error {
	stream, subject := contracts.StreamAudit, contracts.Subject(contracts.SubjectAudit, tl.link)
	through, fed := t.fedSince(tl)
	var upTo uint64
	replicated, err := a.Bus.Replicated(ctx, stream)
	if err != nil {
		return err
	}
	if replicated {
		// A direct get may come from a follower a moment behind: read up to what the leader holds.
		if upTo, err = a.Bus.LastSeqOnSubject(ctx, stream, subject); err != nil {
			return err
		}
		if upTo <= through {
			t.stats.reads.WithLabelValues("memory").Inc()
			return nil
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
			r.decisions = decodeRecord(m.Data)
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
		err = fmt.Errorf("the audit stream's replicas hold %s up to sequence %d, the leader %d: try again", subject, through, upTo)
	}
	source := "stream"
	if len(read) == 0 {
		source = "memory"
	}
	t.stats.reads.WithLabelValues(source).Inc()
	t.settle(tl, read)
	return err
}

// decodeRecord is the decisions one audit message carries (none when it is unreadable, which a
// timeline skips).
func decodeRecord(data []byte) []contracts.Decision {
	var d contracts.Decision
	if json.Unmarshal(data, &d) != nil {
		return nil
	}
	return []contracts.Decision{d}
}

// timelines is the Auditor's cache, made on first use with its Options.
func (a *Auditor) timelines() *timelines {
	a.tlOnce.Do(func() {
		o := a.Options.withDefaults()
		a.tl = newTimelines(o.TimelineBytes, o.TimelineEntries)
	})
	return a.tl
}
