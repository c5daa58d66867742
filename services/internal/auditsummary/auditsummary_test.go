package auditsummary

import (
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
)

func TestWhatTheAuditFieldShows(t *testing.T) {
	for _, c := range []struct {
		d    contracts.Decision
		want bool
	}{
		{contracts.Decision{Kind: contracts.DecisionApplied, Cause: "pc/r1/e2"}, true},
		{contracts.Decision{Kind: contracts.DecisionFailed, Cause: "cmd/sf/pc-r1/pc/r1/e2"}, true},
		// Salesforce shows its own write, and the write carried the summary: not a line of its own.
		{contracts.Decision{Kind: contracts.DecisionWritten, Cause: "cmd/sf/pc-r1/pc/r1/e2"}, false},
		// Partner Center's write done is news to the Opportunity's reader.
		{contracts.Decision{Kind: contracts.DecisionWritten, Cause: "cmd/pc/sf-006A/create"}, true},
		{contracts.Decision{Kind: contracts.DecisionEcho}, false},
		{contracts.Decision{Kind: contracts.DecisionFailed, Cause: CommandID("pc-r1", "text")}, false},
	} {
		if got := Summarised(c.d); got != c.want {
			t.Errorf("Summarised(%s caused by %s) = %v, want %v", c.d.Kind, c.d.Cause, got, c.want)
		}
	}
}

// TestTextOfLinesIsTheTextOfTheTimeline: the mapper renders the Audit text from the lines a link keeps,
// the auditor from the timeline; the same decisions must give the same text (and command id).
func TestTextOfLinesIsTheTextOfTheTimeline(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var tl []contracts.Decision
	var lines []string
	total := 0
	for i := 0; i < 14; i++ {
		d := contracts.Decision{Kind: contracts.DecisionApplied, Target: contracts.Salesforce, Fields: []string{"dealValue"},
			Detail: "sent to Salesforce", Cause: "pc/r1/e", At: at.Add(time.Duration(i) * time.Second)}
		if i%3 == 0 {
			d.Kind = contracts.DecisionEcho
		}
		tl = append(tl, d)
		if Summarised(d) {
			lines = append(lines, Line(d))
			total++
		}
		if len(lines) > Entries {
			lines = lines[len(lines)-Entries:]
		}
		if a, b := Of(tl, Entries), Text(lines, total, Entries); a != b || CommandID("pc-r1", a) != CommandID("pc-r1", b) {
			t.Fatalf("after %d decisions the timeline's text\n%s\nis not the lines' text\n%s", i+1, a, b)
		}
	}
}

// TestOfOutcome: an outcome stands on its link's timeline for the decision its command carried and what the
// write did, by the writer; a done Audit write-back and a 412 the mapper decides again record no result.
func TestOfOutcome(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sent := &contracts.Decision{LinkID: "pc-r1", Stage: contracts.StageMapper, Kind: contracts.DecisionApplied, Target: contracts.Salesforce,
		Fields: []string{"dealValue"}, Cause: "pc/r1/e2", At: at}
	refusal := &contracts.Failure{Code: "INVALID_FIELD", Message: "bad amount", Permanent: true}
	for _, c := range []struct {
		name string
		out  contracts.Outcome
		want string // kind/stage/detail of each entry
	}{
		{"sync write done", contracts.Outcome{CommandID: "cmd/sf/pc-r1/pc/r1/e2", LinkID: "pc-r1", System: contracts.Salesforce, Op: contracts.OpUpdate,
			Purpose: "sync", Status: contracts.OutcomeWritten, Decision: sent, At: at.Add(time.Second)},
			"applied/mapper/ written/sf-writer/sf update done"},
		{"create made the record", contracts.Outcome{CommandID: "cmd/pc/sf-1/create", LinkID: "sf-1", System: contracts.PartnerCenter, Op: contracts.OpCreate,
			Status: contracts.OutcomeWritten, Created: true, At: at}, "written/pc-writer/pc create created"},
		{"refused", contracts.Outcome{CommandID: "cmd/sf/pc-r1/x", LinkID: "pc-r1", System: contracts.Salesforce, Op: contracts.OpUpdate,
			Status: contracts.OutcomeFailed, Error: refusal, Decision: sent, At: at},
			"applied/mapper/ failed/sf-writer/sf update: INVALID_FIELD: bad amount"},
		{"Audit write-back done", contracts.Outcome{CommandID: CommandID("pc-r1", "text"), LinkID: "pc-r1", System: contracts.Salesforce, Op: contracts.OpUpdate,
			Purpose: contracts.PurposeAudit, Status: contracts.OutcomeWritten, At: at}, ""},
		{"Audit write-back failed", contracts.Outcome{CommandID: CommandID("pc-r1", "text"), LinkID: "pc-r1", System: contracts.Salesforce, Op: contracts.OpUpdate,
			Purpose: contracts.PurposeAudit, Status: contracts.OutcomeFailed, At: at}, "failed/sf-writer/sf update: write failed"},
		{"412 decided again", contracts.Outcome{CommandID: "cmd/pc/pc-r1/sf/1/t", LinkID: "pc-r1", System: contracts.PartnerCenter, Op: contracts.OpUpdate,
			Status: contracts.OutcomeFailed, Error: &contracts.Failure{Code: partnercenter.ErrorCodePreconditionFailed}, Referral: &partnercenter.Referral{ID: "r1"},
			Decision: sent, At: at}, "applied/mapper/"},
	} {
		var got []string
		for _, d := range OfOutcome(c.out) {
			got = append(got, d.Kind+"/"+d.Stage+"/"+d.Detail)
			if d.LinkID != c.out.LinkID {
				t.Errorf("%s: entry of link %q, want %q", c.name, d.LinkID, c.out.LinkID)
			}
		}
		if s := strings.Join(got, " "); s != c.want {
			t.Errorf("%s: %q, want %q", c.name, s, c.want)
		}
	}
}
