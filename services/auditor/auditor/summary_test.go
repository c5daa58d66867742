package auditor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/auditsummary"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

func TestSummaryShowsWhatMattersNewestFirst(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	audit := AuditCommandID("pc-1", "old summary")
	tl := []contracts.Decision{
		{Kind: contracts.DecisionCreated, Target: contracts.Salesforce, Detail: "opportunity requested", At: at},
		{Kind: contracts.DecisionEcho, At: at.Add(time.Second)},
		{Kind: contracts.DecisionWritten, Detail: "sf update done", Cause: audit, At: at.Add(2 * time.Second)},
		{Kind: contracts.DecisionApplied, Target: contracts.Salesforce, Fields: []string{"dealValue"}, Detail: "sent to sf", At: at.Add(3 * time.Second)},
		{Kind: contracts.DecisionNoChange, At: at.Add(4 * time.Second)},
		{Kind: contracts.DecisionFailed, Detail: "sf update: FIELD_INTEGRITY_EXCEPTION: bad", At: at.Add(5 * time.Second)},
	}
	got := Summary(tl, 2)
	want := "cosell audit — latest 2 of 3 entries, newest first\n" +
		"2026-01-02 03:04:10Z failed: sf update: FIELD_INTEGRITY_EXCEPTION: bad\n" +
		"2026-01-02 03:04:08Z applied → sf [dealValue]: sent to sf"
	if got != want {
		t.Errorf("Summary =\n%s\nwant\n%s", got, want)
	}
	if Summary(tl, 2) != got || AuditCommandID("pc-1", got) != AuditCommandID("pc-1", Summary(tl, 2)) {
		t.Error("the same timeline must give the same text and command id")
	}
	if AuditCommandID("pc-1", got) == AuditCommandID("pc-1", Summary(tl, 3)) {
		t.Error("a different summary must get a different command id")
	}
	if !IsAuditCommand(audit) || IsAuditCommand("cmd/sf/pc-1/status/x") {
		t.Error("IsAuditCommand does not tell Audit commands apart")
	}
	long := make([]contracts.Decision, 0, 2000)
	for i := 0; i < 2000; i++ {
		long = append(long, contracts.Decision{Kind: contracts.DecisionApplied, Detail: strings.Repeat("x", 100), At: at})
	}
	if n := len(Summary(long, 2000)); n > 32768 {
		t.Errorf("summary of %d characters does not fit the Audit field", n)
	}
}

func TestChartIsSelfContainedSVGSizedToItsData(t *testing.T) {
	now := time.Now().UTC()
	samples := []Sample{
		{At: now.Add(-time.Minute), Lag: map[string]uint64{contracts.ConsumerSFWriter: 4}, Throughput: map[string]float64{}},
		{At: now, Lag: map[string]uint64{contracts.ConsumerSFWriter: 12}, Throughput: map[string]float64{contracts.ConsumerSFWriter: 30}},
	}
	svg := string(chart("Consumer lag <x>", "messages", samples, func(s Sample, n string) float64 { return float64(s.Lag[n]) }))
	// A minute of samples spans the whole plot (not a sliver of an hour), the value axis tops out at the
	// nicest number above the largest value, and consumers without traffic are named idle, not drawn.
	for _, want := range []string{"<svg", `<polyline fill="none" stroke="#2563eb" stroke-width="1.5" points="44.0,`, " 552.0,",
		"Consumer lag &lt;x&gt;", "2 samples over 1m0s", contracts.ConsumerSFWriter, ">20<", "idle: " + contracts.ConsumerMapperObserved} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q:\n%s", want, svg)
		}
	}
	if n := strings.Count(svg, "<polyline"); n != 1 {
		t.Errorf("chart draws %d lines for one consumer with traffic", n)
	}
	if strings.Contains(svg, "<script") || strings.Contains(svg, "href") {
		t.Error("chart references scripts or links")
	}
	if empty := string(chart("t", "u", nil, func(Sample, string) float64 { return 0 })); !strings.Contains(empty, "no samples yet") || !strings.Contains(empty, "every consumer idle") {
		t.Errorf("a chart without samples does not say so:\n%s", empty)
	}
}

func TestSummariesAreDebouncedPerLink(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := newSummaries(time.Second)
	s.mark("a", t0)
	s.mark("a", t0.Add(300*time.Millisecond)) // the same burst: still one write, at the first mark's interval
	s.mark("b", t0.Add(600*time.Millisecond))
	if got := s.take(t0.Add(999 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("written before its interval: %v", got)
	}
	if got := s.take(t0.Add(time.Second)); len(got) != 1 || got[0] != "a" {
		t.Fatalf("due at 1s: %v, want [a]", got)
	}
	if got := s.take(t0.Add(1200 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("a link is written once per burst; b not yet due: %v", got)
	}
	s.mark("a", t0.Add(1100*time.Millisecond)) // after its write: the next one waits a whole interval
	if got := s.take(t0.Add(2 * time.Second)); len(got) != 1 || got[0] != "b" {
		t.Fatalf("due at 2s: %v, want [b]", got)
	}
	if got := s.take(t0.Add(2100 * time.Millisecond)); len(got) != 1 || got[0] != "a" {
		t.Fatalf("due at 2.1s: %v, want [a]", got)
	}
	s.mark("c", t0)
	s.mark("d", t0.Add(-time.Millisecond))
	if got := s.take(t0.Add(time.Minute)); len(got) != 2 || got[0] != "d" || got[1] != "c" {
		t.Fatalf("due links come oldest first: %v", got)
	}
	if s.unchanged("a", "cmd-1") {
		t.Error("nothing published yet, yet unchanged")
	}
	s.published("a", "cmd-1")
	if !s.unchanged("a", "cmd-1") || s.unchanged("a", "cmd-2") || s.unchanged("b", "cmd-1") {
		t.Error("unchanged must hold only for the command last published for that link")
	}
	if s.tick() != 250*time.Millisecond || newSummaries(time.Hour).tick() != time.Second || newSummaries(time.Millisecond).tick() != 10*time.Millisecond {
		t.Error("tick is a quarter of the interval, between 10ms and 1s")
	}
}

// TestOutcomeThatCarriedTheSummaryMarksNothing: a Salesforce write that carried the Audit text the mapper
// rendered with its decision in it (AuditSent) needs no write-back of the auditor's, so its outcome marks no
// link; the same outcome without it (a Partner Center write, say) marks the link as its decision would.
func TestOutcomeThatCarriedTheSummaryMarksNothing(t *testing.T) {
	a := &Auditor{counts: map[string]int{}, summary: newSummaries(time.Second), Options: Options{SummaryEvery: time.Second},
		syncLatency: platform.SyncLatency()}
	sent := &contracts.Decision{LinkID: "pc-r1", Stage: contracts.StageMapper, Kind: contracts.DecisionApplied, Target: contracts.Salesforce,
		Fields: []string{"dealValue"}, Cause: "pc/r1/e2", At: time.Now().UTC()}
	for _, c := range []struct {
		link, auditSent string
		marked          bool
	}{{"pc-r1", auditsummary.CommandID("pc-r1", "text"), false}, {"pc-r2", "", true}} {
		d := *sent
		d.LinkID = c.link
		out := contracts.Outcome{CommandID: "cmd/sf/" + c.link + "/pc/r/e2", LinkID: c.link, System: contracts.Salesforce, Op: contracts.OpUpdate,
			Purpose: "sync", Status: contracts.OutcomeWritten, Decision: &d, AuditSent: c.auditSent, At: time.Now().UTC()}
		e, err := platform.NewEvent(contracts.EventID("outcome", out.CommandID, out.Status), contracts.TypeOpportunityWritten, contracts.StageSFWriter, c.link, out)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.HandleOutcome(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if _, marked := a.summary.due[c.link]; marked != c.marked {
			t.Errorf("%s (audit sent %q): marked %v, want %v", c.link, c.auditSent, marked, c.marked)
		}
		if c.auditSent != "" && !a.summary.unchanged(c.link, c.auditSent) {
			t.Errorf("%s: the text the write carried is not the one the auditor knows on the Opportunity", c.link)
		}
	}
	if n := a.Counts()[contracts.DecisionApplied]; n != 2 {
		t.Errorf("%d changes sent counted, want 2 (both outcomes' decisions)", n)
	}
}

// TestCreateWaitsOnlyForTheWriteBackOfItsReferral: a referral create's outcome marks its link, and the
// carried outcome of the write-back of the new referral's id (which the mapper makes when it folds that
// outcome, the Audit text with the create in it) takes the mark away: no link read, timeline read or render
// per new Opportunity. A mark any other decision made (a conflict on the audit stream) stays.
func TestCreateWaitsOnlyForTheWriteBackOfItsReferral(t *testing.T) {
	a := &Auditor{counts: map[string]int{}, summary: newSummaries(time.Second), Options: Options{SummaryEvery: time.Second},
		syncLatency: platform.SyncLatency()}
	handle := func(out contracts.Outcome) {
		t.Helper()
		typ := contracts.TypeReferralWritten
		if out.System == contracts.Salesforce {
			typ = contracts.TypeOpportunityWritten
		}
		e, err := platform.NewEvent(contracts.EventID("outcome", out.CommandID, out.Status), typ, contracts.StagePCWriter, out.LinkID, out)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.HandleOutcome(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		link     string
		conflict bool
		marked   bool
	}{{"sf-o1", false, false}, {"sf-o2", true, true}} {
		created := &contracts.Decision{LinkID: c.link, Stage: contracts.StageMapper, Kind: contracts.DecisionCreated, Target: contracts.PartnerCenter,
			Cause: "sf/o/v1", At: time.Now().UTC()}
		handle(contracts.Outcome{CommandID: "cmd/pc/" + c.link + "/create", LinkID: c.link, System: contracts.PartnerCenter, Op: contracts.OpCreate,
			Status: contracts.OutcomeWritten, Created: true, ReferralID: "r-" + c.link, Decision: created, At: time.Now().UTC()})
		if _, marked := a.summary.due[c.link]; !marked {
			t.Fatalf("%s: the create's outcome marked nothing", c.link)
		}
		if c.conflict {
			d := contracts.Decision{LinkID: c.link, Stage: contracts.StageMapper, Kind: contracts.DecisionConflict, Cause: "pc/r/e2", At: time.Now().UTC()}
			e, err := platform.NewEvent("decision/"+c.link+"/pc/r/e2/conflict/1", contracts.TypeDecision, contracts.StageMapper, c.link, d)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Handle(context.Background(), e); err != nil {
				t.Fatal(err)
			}
		}
		handle(contracts.Outcome{CommandID: "cmd/sf/" + c.link + "/link/r-" + c.link, LinkID: c.link, System: contracts.Salesforce, Op: contracts.OpUpdate,
			Purpose: contracts.PurposeLink, Status: contracts.OutcomeWritten, AuditSent: auditsummary.CommandID(c.link, "text"), At: time.Now().UTC()})
		if _, marked := a.summary.due[c.link]; marked != c.marked {
			t.Errorf("%s (a conflict too: %v): marked after the write-back of the referral's id %v, want %v", c.link, c.conflict, marked, c.marked)
		}
	}
}
