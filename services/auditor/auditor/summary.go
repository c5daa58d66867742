package auditor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// maxAuditChars keeps the summary well inside Audit__c (a 32,768 character long text area).
const maxAuditChars = 30000

// Summary renders the Audit field text of a timeline: the last n entries that Summarised keeps, newest
// first, one line each. It holds no clock of its own, so the same timeline always renders the same text
// (and a replay produces the same command, which costs no write).
func Summary(timeline []contracts.Decision, n int) string {
	var kept []contracts.Decision
	for _, d := range timeline {
		if Summarised(d) {
			kept = append(kept, d)
		}
	}
	total := len(kept)
	if len(kept) > n {
		kept = kept[len(kept)-n:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cosell audit — latest %d of %d entries, newest first\n", len(kept), total)
	for i := len(kept) - 1; i >= 0; i-- {
		d := kept[i]
		line := d.At.UTC().Format("2006-01-02 15:04:05Z") + " " + d.Kind
		if d.Target != "" {
			line += " → " + string(d.Target)
		}
		if len(d.Fields) > 0 {
			line += " [" + strings.Join(d.Fields, ", ") + "]"
		}
		if d.Detail != "" {
			line += ": " + d.Detail
		}
		if b.Len()+len(line)+1 > maxAuditChars {
			break
		}
		b.WriteString(line + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// AuditCommandID is the id of the command that writes summary to a link's Opportunity: it depends only on
// the text, so writing the same summary again is dropped by the server or skipped by sf-writer.
func AuditCommandID(linkID, summary string) string {
	h := sha256.Sum256([]byte(summary))
	return contracts.EventID("cmd", "sf", linkID, PurposeAudit, hex.EncodeToString(h[:12]))
}

func (a *Auditor) summaryLoop(ctx context.Context) {
	t := time.NewTicker(a.Options.SummaryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		ids := make([]string, 0, len(a.dirty))
		for id := range a.dirty {
			ids = append(ids, id)
		}
		a.dirty = map[string]bool{}
		a.mu.Unlock()
		for _, id := range ids {
			if err := a.WriteSummary(ctx, id); err != nil {
				a.Log.Warn("audit summary not written; will retry", "link_id", id, "err", err)
				a.mu.Lock()
				a.dirty[id] = true
				a.mu.Unlock()
			}
		}
	}
}

// WriteSummary publishes the command that writes the link's Audit summary to its Opportunity through
// sf-writer. A link whose Opportunity does not exist yet is skipped: the decision that links it marks it
// again.
func (a *Auditor) WriteSummary(ctx context.Context, linkID string) error {
	l, err := a.Link(ctx, linkID)
	if errors.Is(err, ErrNoLink) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.OpportunityID == "" {
		return nil
	}
	tl, err := a.Timeline(ctx, l.ID)
	if err != nil {
		return err
	}
	text := Summary(tl, a.Options.withDefaults().SummaryEntries)
	id := AuditCommandID(l.ID, text)
	cmd := contracts.OpportunityCommand{
		LinkID: l.ID, Op: contracts.OpUpdate, OpportunityID: l.OpportunityID, ReferralID: l.ReferralID,
		Fields: map[string]any{sf.FieldAudit: text}, Purpose: PurposeAudit, Cause: lastCause(tl),
	}
	e, err := platform.NewEvent(id, contracts.TypeOpportunityRequested, contracts.StageAuditor, l.ID, cmd)
	if err != nil {
		return err
	}
	dup, err := a.Bus.Publish(ctx, contracts.Subject(contracts.SubjectOpportunityRequested, l.ID), e)
	if err != nil {
		return err
	}
	if !dup {
		a.summaries.WithLabelValues().Inc()
	}
	return nil
}

func lastCause(tl []contracts.Decision) string {
	for i := len(tl) - 1; i >= 0; i-- {
		if Summarised(tl[i]) {
			return tl[i].Cause
		}
	}
	return ""
}

// watchOutcomes follows new written outcomes and observes the end-to-end sync latency: from the source
// version time of the change the command carried to the moment the writer reported the write.
func (a *Auditor) watchOutcomes(ctx context.Context) {
	for ctx.Err() == nil {
		err := a.Bus.Read(ctx, contracts.StreamOutcomes, func(m platform.Stored) error {
			var out contracts.Outcome
			if json.Unmarshal(m.Data, &out) == nil {
				a.observeLatency(ctx, out)
			}
			return nil
		}, platform.Subjects(contracts.SubjectReferralWritten+".>", contracts.SubjectOpportunityWritten+".>"),
			platform.OnlyNew(), platform.Follow())
		if err == nil {
			return // ctx ended
		}
		a.Log.Warn("sync latency: cannot follow outcomes; will try again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (a *Auditor) observeLatency(ctx context.Context, out contracts.Outcome) {
	if out.Purpose != "" && out.Purpose != "sync" {
		return
	}
	root := contracts.SubjectOpportunityRequested
	if out.System == contracts.PartnerCenter {
		root = contracts.SubjectReferralRequested
	}
	m, err := a.Bus.LastMsg(ctx, contracts.StreamRequested, contracts.Subject(root, out.LinkID))
	if err != nil || m.Header.Get("ce-id") != out.CommandID {
		return
	}
	var cmd struct {
		CauseVersion contracts.Version `json:"causeVersion"`
	}
	if json.Unmarshal(m.Data, &cmd) != nil || cmd.CauseVersion.At.IsZero() {
		return
	}
	at := out.At
	if at.IsZero() {
		at = time.Now()
	}
	if d := at.Sub(cmd.CauseVersion.At); d >= 0 {
		a.syncLatency.WithLabelValues(string(out.System)).Observe(d.Seconds())
	}
}
