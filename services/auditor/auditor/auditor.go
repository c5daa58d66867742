// Package auditor is the auditor stage: it consumes every audited decision, every writer's outcome (the
// audit record of a write) and every dead letter, keeps
// counts, the most recent entries and an hour of lag and throughput samples, writes a short Audit summary
// back to each linked Opportunity through sf-writer, and serves the status API and page.
//
// The durable per-link timeline is the audit stream and the outcomes stream themselves (one audit subject
// and the outcome subjects per link), so nothing is lost when the auditor restarts; recent timelines are
// kept in memory and brought up to date from the streams with one request each before each use
// (timelines.go). Dead letters are put on their link's timeline by the
// auditor, so a timeline shows every decision, failure and parked message of a record in one place.
package auditor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/auditsummary"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// Options tune the auditor; zero values take the defaults.
type Options struct {
	// SummaryEvery is how long after its first change a link's Audit field is rewritten (one write per link
	// per interval; an unchanged text is not written); 0 turns the write-back off.
	SummaryEvery time.Duration
	// SummaryEntries is how many timeline entries the Audit field shows (default 10).
	SummaryEntries int
	// SampleEvery is how often lag and throughput are sampled for the charts (default 10s).
	SampleEvery time.Duration
	// History is how far back the charts go (default 1h).
	History time.Duration
	// TimelineBytes is the memory the recent timelines may hold (default 4 MiB; negative: none is kept,
	// every timeline is read from the stream).
	TimelineBytes int
	// TimelineEntries is the most decisions a link's cached timeline holds (default 500); a longer one is
	// read from the stream each time.
	TimelineEntries int
}

func (o Options) withDefaults() Options {
	if o.SummaryEntries <= 0 {
		o.SummaryEntries = auditsummary.Entries
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 10 * time.Second
	}
	if o.History <= 0 {
		o.History = time.Hour
	}
	if o.TimelineBytes == 0 {
		o.TimelineBytes = 4 << 20
	}
	if o.TimelineEntries <= 0 {
		o.TimelineEntries = 500
	}
	return o
}

// Auditor is the auditor stage.
type Auditor struct {
	Bus     *platform.Bus
	Links   jetstream.KeyValue
	Log     *slog.Logger
	Consume platform.ConsumeOptions
	Options Options
	// Guard lets callers into the status page and API; nil refuses everyone.
	Guard *Guard
	// Records says where the page links each side's record to.
	Records Records
	// Actor is who the re-drives, purges and drift fixes made through this Auditor are audited as when
	// the context names nobody (Who): the CLI sets its user (CLIOperator); the page's come from the Guard.
	Actor Principal

	syncLatency *prometheus.HistogramVec
	summaries   *prometheus.CounterVec

	mu      sync.Mutex
	recent  []contracts.Decision
	counts  map[string]int
	summary *summaries
	history *history

	tlOnce sync.Once
	tl     *timelines
}

// New builds the auditor on a connected bus.
func New(ctx context.Context, bus *platform.Bus, log *slog.Logger) (*Auditor, error) {
	kv, err := bus.KV(ctx, contracts.BucketLinks)
	if err != nil {
		return nil, fmt.Errorf("auditor: links bucket: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Auditor{
		Bus: bus, Links: kv, Log: log, counts: map[string]int{}, summary: newSummaries(0),
		syncLatency: platform.SyncLatency(),
		summaries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cosell", Name: "audit_summaries_published_total",
			Help: "Audit field write-back commands published to sf-writer (duplicates dropped by the server excluded).",
		}, []string{}),
	}, nil
}

// Register adds the auditor's collectors to reg: consumer lag, stream and dead-letter depth (read from
// JetStream at scrape time), end-to-end sync latency, the Audit write-backs and the timeline cache.
func (a *Auditor) Register(reg prometheus.Registerer) error {
	cs := append([]prometheus.Collector{platform.NewLagCollector(a.Bus), a.syncLatency, a.summaries}, a.timelines().collectors()...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("auditor metrics: %w", err)
		}
	}
	return nil
}

const keepRecent = 200

// Run consumes decisions, outcomes and dead letters, samples lag and writes Audit summaries, until ctx is
// cancelled.
func (a *Auditor) Run(ctx context.Context) error {
	a.Options = a.Options.withDefaults()
	a.mu.Lock()
	if a.summary == nil {
		a.summary = newSummaries(0)
	}
	a.summary.every = a.Options.SummaryEvery
	a.mu.Unlock()
	var wg sync.WaitGroup
	consumers := []struct {
		durable string
		handle  platform.Handler
	}{
		{contracts.ConsumerAuditor, a.Handle},
		{contracts.ConsumerAuditorOutcomes, a.HandleOutcome},
		{contracts.ConsumerAuditorDeadLetters, a.HandleDeadLetter},
	}
	errs := make(chan error, len(consumers))
	for _, c := range consumers {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- a.Bus.Consume(ctx, c.durable, c.handle, a.Consume) }()
	}
	go a.sampleLoop(ctx)
	if a.Options.SummaryEvery > 0 {
		go a.summaryLoop(ctx)
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Handle records one decision of the audit stream and marks its link for an Audit summary rewrite when the
// decision matters to a reader of the Opportunity.
func (a *Auditor) Handle(ctx context.Context, e platform.Event) error {
	d, err := platform.DataAs[contracts.Decision](e)
	if err != nil {
		return platform.Permanent(err)
	}
	ds := []contracts.Decision{d}
	a.timelines().feed(fromAudit, d.LinkID, platform.StreamSeq(ctx), e.ID(), ds, len(e.Data()))
	a.record(ds, markLink)
	return nil
}

// HandleOutcome records a writer's outcome, the audit record of its write: the decision its command
// carried and what the write did (auditsummary.OfOutcome) go on the link's timeline, into the counts and
// the recent changes, and mark the link for an Audit summary rewrite as a decision would; a sync write
// done observes the end-to-end sync latency.
func (a *Auditor) HandleOutcome(ctx context.Context, e platform.Event) error {
	out, err := readOutcome(e.Data())
	if err != nil {
		return platform.Permanent(fmt.Errorf("outcome %s: %w", e.ID(), err))
	}
	if out.LinkID == "" {
		return platform.Permanent(fmt.Errorf("outcome %s names no link", e.ID()))
	}
	ds := auditsummary.OfOutcome(out)
	a.timelines().feed(fromOutcomes, out.LinkID, platform.StreamSeq(ctx), e.ID(), ds, len(e.Data()))
	carried := out.Status == contracts.OutcomeWritten && out.AuditSent != ""
	// A referral created: folding its outcome, the mapper writes the referral's id back to the Opportunity
	// with the Audit text, this outcome's decisions in it, so the link waits only for that write-back's outcome.
	created := out.System == contracts.PartnerCenter && out.Op == contracts.OpCreate && out.Status == contracts.OutcomeWritten
	if carried {
		// The write carried the Audit summary the mapper rendered with this very decision in it (the
		// text's id, which the auditor's own write of it would have): nothing for the auditor to write for
		// it, so the link is not marked (no link read, timeline read or render for the change).
		a.mu.Lock()
		if a.summary != nil {
			a.summary.published(out.LinkID, out.AuditSent)
			if out.Purpose == contracts.PurposeLink {
				a.summary.linkedBack(out.LinkID)
			}
		}
		a.mu.Unlock()
	}
	a.record(ds, markFor(carried, created))
	a.observeLatency(out)
	return nil
}

// marking says how record marks the links of the decisions it records for the Audit summary.
type marking int

const (
	noMark     marking = iota
	markLink           // a decision the auditor's write-back must show
	markCreate         // a referral create's outcome: shown by the write-back of its id (summaries.markCreate)
)

func markFor(carried, created bool) marking {
	switch {
	case carried:
		return noMark
	case created:
		return markCreate
	}
	return markLink
}

// record counts decisions, keeps them among the recent ones and marks their links for the summary as mark
// says.
func (a *Auditor) record(ds []contracts.Decision, mark marking) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.counts == nil {
		a.counts = map[string]int{}
	}
	for _, d := range ds {
		a.counts[d.Kind]++
		a.recent = append(a.recent, d)
		if mark == noMark || !Summarised(d) || a.summary == nil || a.Options.SummaryEvery <= 0 {
			continue
		}
		if mark == markCreate {
			a.summary.markCreate(d.LinkID, time.Now())
		} else {
			a.summary.mark(d.LinkID, time.Now())
		}
	}
	if len(a.recent) > keepRecent {
		a.recent = a.recent[len(a.recent)-keepRecent:]
	}
}

// Summarised reports whether a decision belongs in the Audit summary (auditsummary.Summarised: what
// changed, failed, conflicted or waits, nothing an Audit write caused).
func Summarised(d contracts.Decision) bool { return auditsummary.Summarised(d) }

// IsAuditCommand reports whether id is the id of an Audit write-back command.
func IsAuditCommand(id string) bool { return auditsummary.IsAuditCommand(id) }

// PurposeAudit is the OpportunityCommand purpose of the Audit write-back.
const PurposeAudit = contracts.PurposeAudit

// Counts returns how many decisions of each kind were seen.
func (a *Auditor) Counts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.counts {
		out[k] = v
	}
	return out
}

// Recent returns the latest decisions, newest first.
func (a *Auditor) Recent() []contracts.Decision {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]contracts.Decision, len(a.recent))
	for i, d := range a.recent {
		out[len(a.recent)-1-i] = d
	}
	return out
}

// LinkRecord is a link as the status API shows it.
type LinkRecord struct {
	contracts.Link
	Outbox []json.RawMessage `json:"outbox,omitempty"`
}

// ListLinks lists every link, most recently changed first.
func (a *Auditor) ListLinks(ctx context.Context) ([]LinkRecord, error) {
	lister, err := a.Links.ListKeysFiltered(ctx, "link.>")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	var out []LinkRecord
	for k := range lister.Keys() {
		e, err := a.Links.Get(ctx, k)
		if err != nil {
			continue
		}
		var l LinkRecord
		if json.Unmarshal(e.Value(), &l) == nil {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UpdatedAt.After(out[j].UpdatedAt) })
	return out, nil
}

// ErrNoLink is returned when no link matches an id.
var ErrNoLink = errors.New("no link")

// Link finds the link of a referral id, an opportunity id or a link id: a link id (what the Audit
// write-back and the page's links pass) is read at once, one KV get; else the link the record started (its
// id names it: the mapper keeps no index for that side), or the index of the other side's.
func (a *Auditor) Link(ctx context.Context, id string) (*LinkRecord, error) {
	linkID := id
	e, err := a.Links.Get(ctx, contracts.LinkKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		candidates := []string{contracts.LinkIDFor(contracts.PartnerCenter, id), contracts.LinkIDFor(contracts.Salesforce, id)}
		for _, sys := range []contracts.System{contracts.PartnerCenter, contracts.Salesforce} {
			if ix, ierr := a.Links.Get(ctx, contracts.IndexKey(sys, id)); ierr == nil {
				candidates = []string{string(ix.Value())}
				break
			}
		}
		for _, linkID = range candidates {
			if e, err = a.Links.Get(ctx, contracts.LinkKey(linkID)); !errors.Is(err, jetstream.ErrKeyNotFound) {
				break
			}
		}
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w for %q", ErrNoLink, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read link %q: %w", id, err)
	}
	var l LinkRecord
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return nil, fmt.Errorf("link %q: %w", linkID, err)
	}
	return &l, nil
}

// Record is what the API answers for one id: the link (nil when there is none yet, e.g. a first event
// that was dead-lettered) and its timeline, oldest first.
type Record struct {
	Link     *LinkRecord          `json:"link"`
	Timeline []contracts.Decision `json:"timeline"`
}

// Lookup finds the link and timeline of a referral id, opportunity id or link id. Without a link it still
// looks for a timeline under the link ids the record would get, so a record whose first event was parked
// is explainable too.
func (a *Auditor) Lookup(ctx context.Context, id string) (Record, error) {
	l, err := a.Link(ctx, id)
	if err != nil && !errors.Is(err, ErrNoLink) {
		return Record{}, err
	}
	candidates := []string{id, contracts.LinkIDFor(contracts.PartnerCenter, id), contracts.LinkIDFor(contracts.Salesforce, id)}
	if l != nil {
		candidates = []string{l.ID}
	}
	for _, c := range candidates {
		tl, err := a.Timeline(ctx, c)
		if err != nil {
			return Record{}, err
		}
		if len(tl) > 0 || l != nil {
			if l != nil {
				tl = InFlight(tl, l)
			}
			return Record{Link: l, Timeline: tl}, nil
		}
	}
	return Record{}, fmt.Errorf("%w and no timeline for %q", ErrNoLink, id)
}

// InFlightNote ends the detail of a decision whose command the writer has not answered yet.
const InFlightNote = "in flight: no outcome from the writer yet"

// InFlight adds to a link's timeline the decisions its stored commands carry that no outcome answers yet.
// A command's decision reaches the audit trail with its outcome (the outcome is the write's audit record),
// so while the writer has not written it (a backlog, a Salesforce or Partner Center outage, a retry) the
// link's outbox is where the decision is; shown with InFlightNote, it leaves the timeline once the
// outcome (or a dead letter of the command) is on it.
func InFlight(tl []contracts.Decision, l *LinkRecord) []contracts.Decision {
	answered := map[string]bool{}
	for _, d := range tl {
		switch d.Kind {
		case contracts.DecisionWritten, contracts.DecisionFailed, contracts.DecisionDeadLetter:
			answered[d.Cause] = true
		}
	}
	added := false
	for _, raw := range l.Outbox {
		var item struct {
			ID   string          `json:"id"`
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if json.Unmarshal(raw, &item) != nil || answered[item.ID] ||
			(item.Type != contracts.TypeReferralRequested && item.Type != contracts.TypeOpportunityRequested) {
			continue
		}
		var cmd struct {
			Decision *contracts.Decision `json:"decision"`
		}
		if json.Unmarshal(item.Data, &cmd) != nil || cmd.Decision == nil {
			continue // an Audit or status write-back: no decision of its own
		}
		d := *cmd.Decision
		d.Detail = strings.TrimSpace(d.Detail + " (" + InFlightNote + ")")
		tl = append(tl, d)
		added = true
	}
	if added {
		sort.SliceStable(tl, func(i, j int) bool { return tl[i].At.Before(tl[j].At) })
	}
	return tl
}

// publishDecision puts a decision the auditor makes itself (a dead letter, a re-drive) on the audit stream.
func (a *Auditor) publishDecision(ctx context.Context, id string, d contracts.Decision) error {
	e, err := platform.NewEvent(id, contracts.TypeDecision, contracts.StageAuditor, d.LinkID, d)
	if err != nil {
		return platform.Permanent(err)
	}
	if _, err := a.Bus.Publish(ctx, contracts.Subject(contracts.SubjectAudit, d.LinkID), e); err != nil {
		return fmt.Errorf("publish decision %s: %w", id, err)
	}
	return nil
}
