package auditor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/auditsummary"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// Summary renders the Audit field text of a timeline: the last n entries that Summarised keeps, newest
// first, one line each (auditsummary.Of, the text the mapper carries in its Salesforce writes too).
func Summary(timeline []contracts.Decision, n int) string { return auditsummary.Of(timeline, n) }

// AuditCommandID is the id of the command that writes summary to a link's Opportunity: it depends only on
// the text, so writing the same summary again is dropped by the server or skipped by sf-writer.
func AuditCommandID(linkID, summary string) string { return auditsummary.CommandID(linkID, summary) }

// summaries schedules the Audit write-back per link: a link marked by a decision is written once its
// interval has passed since that first mark, whatever else happens to it meanwhile, so a burst of
// decisions costs one write and the writes of many links spread out instead of leaving together on a
// shared tick (each Audit write comes back as an echo snapshot the mapper has to look at). A text equal to
// the one last published for the link is not published again.
type summaries struct {
	every time.Duration
	due   map[string]time.Time // links waiting for a write, and when each is written
	// byCreate are the waiting links marked only by a referral create's written outcome: the mapper's
	// write-back of the new referral's id (purpose link), which folding that outcome makes, carries the Audit
	// text with the create in it, so that write-back's outcome, once it says so, takes the wait away.
	byCreate map[string]bool
	last     map[string]string // the command id last published per link (it names the text)
}

func newSummaries(every time.Duration) *summaries {
	return &summaries{every: every, due: map[string]time.Time{}, byCreate: map[string]bool{}, last: map[string]string{}}
}

// mark schedules a write of link's summary, unless one is already waiting.
func (s *summaries) mark(link string, now time.Time) {
	if _, waiting := s.due[link]; !waiting {
		s.due[link] = now.Add(s.every)
	}
	delete(s.byCreate, link)
}

// markCreate is mark for the decisions of a referral create's written outcome: the wait it makes alone
// ends with the carried outcome of the write-back of the referral's id (linkedBack).
func (s *summaries) markCreate(link string, now time.Time) {
	if _, waiting := s.due[link]; !waiting {
		s.due[link] = now.Add(s.every)
		s.byCreate[link] = true
	}
}

// linkedBack takes away a wait that only a referral create's outcome made: the write-back of the referral's
// id carried the Audit text with the create in it. A wait any other decision made stays.
func (s *summaries) linkedBack(link string) {
	if s.byCreate[link] {
		delete(s.due, link)
		delete(s.byCreate, link)
	}
}

// take returns the links whose write is due at now, oldest first, and forgets them.
func (s *summaries) take(now time.Time) []string {
	var ids []string
	for id, at := range s.due {
		if !at.After(now) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return s.due[ids[i]].Before(s.due[ids[j]]) })
	for _, id := range ids {
		delete(s.due, id)
		delete(s.byCreate, id)
	}
	return ids
}

// unchanged reports whether command id (which names the text) is the one last published for link.
func (s *summaries) unchanged(link, id string) bool { return s.last[link] == id }

// published records the command id last published for link.
func (s *summaries) published(link, id string) { s.last[link] = id }

// tick is how often the loop looks for due links: a quarter of the interval, between 10ms and 1s.
func (s *summaries) tick() time.Duration {
	return min(max(s.every/4, 10*time.Millisecond), time.Second)
}

func (a *Auditor) summaryLoop(ctx context.Context) {
	a.mu.Lock()
	tick := a.summary.tick()
	a.mu.Unlock()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		ids := a.summary.take(time.Now())
		a.mu.Unlock()
		failed, err := a.WriteSummaries(ctx, ids)
		if err != nil {
			a.Log.Warn("audit summaries not written; will retry", "links", len(failed), "err", err)
		}
		for _, id := range failed {
			a.mu.Lock()
			a.summary.mark(id, time.Now())
			a.mu.Unlock()
		}
	}
}

// WriteSummary publishes the command that writes the link's Audit summary to its Opportunity through
// sf-writer. A link whose Opportunity does not exist yet is skipped: the decision that links it marks it
// again.
func (a *Auditor) WriteSummary(ctx context.Context, linkID string) error {
	_, err := a.WriteSummaries(ctx, []string{linkID})
	return err
}

// WriteSummaries writes the Audit summaries of the links due at once: their commands leave together
// (Bus.PublishAll), so they reach sf-writer as one batch and cost one Collections call between them, not
// one Salesforce call each. It returns the links whose summary was not published (to retry) and why.
func (a *Auditor) WriteSummaries(ctx context.Context, linkIDs []string) (failed []string, err error) {
	type pending struct{ link, id string }
	var out []platform.Outgoing
	var sent []pending
	for _, linkID := range linkIDs {
		o, id, cerr := a.summaryCommand(ctx, linkID)
		if cerr != nil {
			err = errors.Join(err, fmt.Errorf("link %s: %w", linkID, cerr))
			failed = append(failed, linkID)
			continue
		}
		if o != nil {
			out = append(out, *o)
			sent = append(sent, pending{linkID, id})
		}
	}
	if len(out) == 0 {
		return failed, err
	}
	dups, perr := a.Bus.PublishAll(ctx, out)
	if perr != nil {
		for _, p := range sent {
			failed = append(failed, p.link)
		}
		return failed, errors.Join(err, fmt.Errorf("publish %d audit summaries: %w", len(out), perr))
	}
	a.mu.Lock()
	for _, p := range sent {
		a.summary.published(p.link, p.id)
	}
	a.mu.Unlock()
	if n := len(out) - dups; n > 0 {
		a.summaries.WithLabelValues().Add(float64(n))
	}
	return failed, err
}

// summaryCommand is the command that writes the link's Audit summary, or nil when there is nothing to
// write (no link, no Opportunity yet, the text unchanged or already carried by the mapper's write).
func (a *Auditor) summaryCommand(ctx context.Context, linkID string) (*platform.Outgoing, string, error) {
	l, err := a.Link(ctx, linkID)
	if errors.Is(err, ErrNoLink) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	if l.OpportunityID == "" {
		return nil, "", nil
	}
	tl, err := a.Timeline(ctx, l.ID)
	if err != nil {
		return nil, "", err
	}
	text := Summary(tl, a.Options.withDefaults().SummaryEntries)
	id := AuditCommandID(l.ID, text)
	a.mu.Lock()
	same := a.summary.unchanged(l.ID, id)
	if l.Audit != nil && l.Audit.Sent == id {
		// The mapper's Salesforce write of the change carried this very text: nothing to write.
		same = true
		a.summary.published(l.ID, id)
	}
	a.mu.Unlock()
	if same {
		return nil, "", nil
	}
	cmd := contracts.OpportunityCommand{
		LinkID: l.ID, Op: contracts.OpUpdate, OpportunityID: l.OpportunityID, ReferralID: l.ReferralID,
		Fields: map[string]any{sf.FieldAudit: text}, Purpose: PurposeAudit, Cause: lastCause(tl),
	}
	e, err := platform.NewEvent(id, contracts.TypeOpportunityRequested, contracts.StageAuditor, l.ID, cmd)
	if err != nil {
		return nil, "", err
	}
	return &platform.Outgoing{Subject: contracts.Subject(contracts.SubjectOpportunityRequested, l.ID), Event: e}, id, nil
}

func lastCause(tl []contracts.Decision) string {
	for i := len(tl) - 1; i >= 0; i-- {
		if Summarised(tl[i]) {
			return tl[i].Cause
		}
	}
	return ""
}

// observeLatency observes the end-to-end sync latency of a sync write done: from the source version time
// of the change its command carried (the outcome's CauseVersion) to the moment the writer reported it.
func (a *Auditor) observeLatency(out contracts.Outcome) {
	if out.Status != contracts.OutcomeWritten || (out.Purpose != "" && out.Purpose != "sync") || out.CauseVersion.At.IsZero() {
		return
	}
	at := out.At
	if at.IsZero() {
		at = time.Now()
	}
	if d := at.Sub(out.CauseVersion.At); d >= 0 {
		a.syncLatency.WithLabelValues(string(out.System)).Observe(d.Seconds())
	}
}
