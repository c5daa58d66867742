// Package auditsummary is the text of the Audit field on a linked Opportunity: the latest decisions that
// matter to its reader, newest first, one line each. The mapper carries it in the Salesforce write a
// change causes anyway (the Audit write-back then costs no command of its own); the auditor writes it
// through sf-writer for the changes that cause no Salesforce write. Both render it here, so the same
// decisions give the same text whoever renders them, and the auditor knows when the mapper wrote it.
//
// It also says what a writer's outcome stands for on a link's timeline (OfOutcome): the commanded path has
// no audit message of its own, its outcome is the audit record of the write, so the mapper's Audit lines
// and the auditor's timelines read the same decisions out of it here.
package auditsummary

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
)

// Entries is how many decisions the Audit field shows.
const Entries = 10

// maxChars keeps the summary well inside Audit__c (a 32,768 character long text area).
const maxChars = 30000

// Summarised reports whether a decision belongs in the Audit summary: what changed, failed, conflicted or
// waits. Echoes, stale and unchanged snapshots are left out, and so is everything caused by an Audit
// write itself, so writing the summary can never make another summary (no loop). A Salesforce write done
// is left out too: the Opportunity shows it, and its summary went with it (the write of the change carries
// the text), so confirming it would cost a write-back per change; a Partner Center write done is shown.
func Summarised(d contracts.Decision) bool {
	switch d.Kind {
	case contracts.DecisionEcho, contracts.DecisionStale, contracts.DecisionNoChange, contracts.DecisionIgnored:
		return false
	case contracts.DecisionWritten:
		if strings.HasPrefix(d.Cause, "cmd/"+string(contracts.Salesforce)+"/") {
			return false
		}
	}
	return !IsAuditCommand(d.Cause)
}

// OfOutcome is what a writer's outcome stands for on its link's timeline: the decision its command carried
// (applied or created, made by the mapper when it sent the command), then what the write did (Result).
func OfOutcome(out contracts.Outcome) []contracts.Decision {
	var ds []contracts.Decision
	if out.Decision != nil {
		ds = append(ds, *out.Decision)
	}
	if d, ok := Result(out); ok {
		ds = append(ds, d)
	}
	return ds
}

// Result is the writer's decision an outcome records: written ("<system> <op> done|created") or failed
// with the reason, made by the writer at the outcome's time. A done Audit write-back records nothing (it
// changes nothing of the link), and neither does a 412 that carries the referral (Redecided: the mapper
// decides again on it, and its conflict decision is on the audit subject).
func Result(out contracts.Outcome) (contracts.Decision, bool) {
	if Redecided(out) || (out.Purpose == contracts.PurposeAudit && out.Status == contracts.OutcomeWritten) {
		return contracts.Decision{}, false
	}
	d := contracts.Decision{
		LinkID: out.LinkID, ReferralID: out.ReferralID, OpportunityID: out.OpportunityID,
		Stage: contracts.StageSFWriter, Kind: contracts.DecisionWritten, Cause: out.CommandID, At: out.At,
		Detail: fmt.Sprintf("%s %s %s", out.System, out.Op, map[bool]string{true: "created", false: "done"}[out.Created]),
	}
	if out.System == contracts.PartnerCenter {
		d.Stage = contracts.StagePCWriter
	}
	if out.Status == contracts.OutcomeFailed {
		d.Kind, d.Detail = contracts.DecisionFailed, FailedWrite(out)
	}
	return d, true
}

// FailedWrite is the reason of a failed outcome as the link's LastError and the failed decision say it:
// "<system> <op>: <code>: <message>".
func FailedWrite(out contracts.Outcome) string {
	msg := "write failed"
	if out.Error != nil {
		msg = fmt.Sprintf("%s: %s", out.Error.Code, out.Error.Message)
	}
	return fmt.Sprintf("%s %s: %s", out.System, out.Op, msg)
}

// Redecided reports a patch Partner Center refused with 412 Precondition Failed whose outcome carries the
// referral as it is now: nothing was written, and the mapper decides again on that referral.
func Redecided(out contracts.Outcome) bool {
	return out.Status == contracts.OutcomeFailed && out.System == contracts.PartnerCenter && out.Error != nil &&
		out.Error.Code == partnercenter.ErrorCodePreconditionFailed && out.Referral != nil && out.Referral.ID != ""
}

// IsAuditCommand reports whether id is the id of an Audit write-back command.
func IsAuditCommand(id string) bool { return strings.Contains(id, "/"+contracts.PurposeAudit+"/") }

// Line is a summarised decision's line: when, what, to which side, the fields, the detail.
func Line(d contracts.Decision) string {
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
	return line
}

// Text renders the summary of lines (the latest summarised decisions' lines, oldest first, at most n of
// them shown) out of total summarised decisions. It holds no clock of its own, so the same decisions always
// render the same text (and a replay produces the same command, which costs no write).
func Text(lines []string, total, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cosell audit — latest %d of %d entries, newest first\n", len(lines), total)
	for i := len(lines) - 1; i >= 0; i-- {
		if b.Len()+len(lines[i])+1 > maxChars {
			break
		}
		b.WriteString(lines[i] + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// Of renders the Audit field text of a timeline: the last n entries that Summarised keeps.
func Of(timeline []contracts.Decision, n int) string {
	var lines []string
	for _, d := range timeline {
		if Summarised(d) {
			lines = append(lines, Line(d))
		}
	}
	return Text(lines, len(lines), n)
}

// CommandID is the id of the auditor's command that writes text to a link's Opportunity: it depends only on
// the text, so writing the same summary again is dropped by the server or skipped by sf-writer. A link
// remembers the one of the text the mapper last carried (contracts.AuditTrail.Sent) under the same id.
func CommandID(linkID, text string) string {
	h := sha256.Sum256([]byte(text))
	return contracts.EventID("cmd", "sf", linkID, contracts.PurposeAudit, hex.EncodeToString(h[:12]))
}
