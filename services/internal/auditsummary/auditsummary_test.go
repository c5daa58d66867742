package auditsummary

import (
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
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
