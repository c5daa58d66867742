package auditor

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cosell-dev/cosell/contracts"
)

// Records says where the page links a record to: the Partner Center referral and the Salesforce
// Opportunity. A format holds %s for the record id; an empty one shows the id without a link.
type Records struct {
	// ReferralURL is the referral in Partner Center, the same format the mapping writes to the
	// Opportunity's Referral Link.
	ReferralURL string
	// OpportunityURL is the Opportunity in Salesforce (the org's Lightning record page).
	OpportunityURL string
}

func (r Records) link(format, id string) string {
	if format == "" || id == "" || !strings.Contains(format, "%s") {
		return ""
	}
	return fmt.Sprintf(format, id)
}

// LinkView is a link as a co-sell operations person reads it: who and what the deal is, where each side
// stands, and what needs a person.
type LinkView struct {
	LinkRecord
	// Deal is the deal name, Customer the customer's name, Value the deal value with its currency.
	Deal     string `json:"deal"`
	Customer string `json:"customer"`
	Value    string `json:"value"`
	// PCStatus and SFStatus are each side's status as last observed (the mapping's canonical status:
	// new, active, won, lost, declined).
	PCStatus string `json:"pcStatus"`
	SFStatus string `json:"sfStatus"`
	// ReferralURL and OpportunityURL open the record in Partner Center and in Salesforce.
	ReferralURL    string `json:"referralUrl,omitempty"`
	OpportunityURL string `json:"opportunityUrl,omitempty"`
	// Attention says why the link needs a person (held, conflict for review, paused, failed, still being
	// created); empty when both sides are in step.
	Attention string `json:"attention,omitempty"`
	// Fix is the command that shows the record and what to do about it.
	Fix string `json:"fix,omitempty"`
}

// View builds the LinkView of l.
func (r Records) View(l LinkRecord) LinkView {
	v := LinkView{LinkRecord: l,
		Deal: text(l.value("name")), Customer: text(l.value("customerName")),
		PCStatus: text(l.PC.Latest["status"]), SFStatus: text(l.SF.Latest["status"]),
		ReferralURL: r.link(r.ReferralURL, l.ReferralID), OpportunityURL: r.link(r.OpportunityURL, l.OpportunityID),
	}
	v.Value = money(l.value("dealValue"), text(l.value("currency")))
	var why []string
	switch {
	case l.State == contracts.LinkFailed:
		why = append(why, "create failed: "+l.LastError)
	case l.LastError != "":
		why = append(why, "write failed: "+l.LastError)
	}
	if l.Held != nil {
		h := "held: " + l.Held.Reason
		if len(l.Held.Fields) > 0 {
			h += " (" + strings.Join(l.Held.Fields, ", ") + ")"
		}
		why = append(why, h)
	}
	if len(l.Review) > 0 {
		var fs []string
		for f, rv := range l.Review {
			fs = append(fs, fmt.Sprintf("%s (Partner Center %v, Salesforce %v)", f, show(rv.PC), show(rv.SF)))
		}
		sort.Strings(fs)
		why = append(why, "conflict parked for review: "+strings.Join(fs, "; ")+"; edit the field on the side that is right")
	}
	if l.Paused && (l.Held == nil || !strings.Contains(l.Held.Reason, "Sync with Partner Center")) {
		why = append(why, "paused: Sync with Partner Center is off on the Opportunity")
	}
	if (l.State == contracts.LinkCreatingOpportunity || l.State == contracts.LinkCreatingReferral) && time.Since(l.UpdatedAt) > time.Minute {
		why = append(why, l.State+" for "+time.Since(l.UpdatedAt).Round(time.Second).String())
	}
	if len(why) > 0 {
		v.Attention = strings.Join(why, "; ")
		v.Fix = "cosell links get " + l.ID
	}
	return v
}

// Parked adds the dead letters of v's link (from dls) to why it needs attention, with the command that
// re-drives the first.
func (v LinkView) Parked(dls []DeadLetterEntry) LinkView {
	var seqs []string
	for _, d := range dls {
		if d.LinkID == v.ID {
			seqs = append(seqs, strconv.FormatUint(d.Seq, 10))
		}
	}
	if len(seqs) == 0 {
		return v
	}
	why := fmt.Sprintf("%d message(s) parked in the dead letters (%s): fix the cause, then re-drive", len(seqs), strings.Join(seqs, ", "))
	if v.Attention != "" {
		why = v.Attention + "; " + why
	}
	v.Attention, v.Fix = why, "cosell dlq retry "+strings.Join(seqs, " ")
	return v
}

// value is a field's value as the link knows it: the agreed one, else the newest either side showed.
func (l LinkRecord) value(name string) any {
	for _, m := range []map[string]any{l.Synced, l.PC.Latest, l.SF.Latest} {
		if x, ok := m[name]; ok && x != nil && x != "" {
			return x
		}
	}
	return nil
}

// Matches reports whether q (case-insensitive) is in the deal name, the customer or one of the ids.
func (v LinkView) Matches(q string) bool {
	q = strings.ToLower(strings.TrimSpace(q))
	if q == "" {
		return true
	}
	for _, s := range []string{v.Deal, v.Customer, v.ID, v.ReferralID, v.OpportunityID} {
		if strings.Contains(strings.ToLower(s), q) {
			return true
		}
	}
	return false
}

func text(x any) string {
	switch t := x.(type) {
	case nil:
		return ""
	case string:
		return t
	}
	return fmt.Sprint(x)
}

// show renders a field value for a reader: blank as —, numbers without exponent.
func show(x any) string {
	switch t := x.(type) {
	case nil:
		return "—"
	case string:
		if t == "" {
			return "—"
		}
		return t
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		if t {
			return "yes"
		}
		return "no"
	case []any:
		var parts []string
		for _, e := range t {
			parts = append(parts, show(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		for _, k := range []string{"name", "email", "id"} {
			if s, ok := t[k].(string); ok && s != "" {
				return s
			}
		}
	}
	return fmt.Sprint(x)
}

// money renders a deal value with thousands separators and its currency: 125,000 USD.
func money(x any, currency string) string {
	f, ok := x.(float64)
	if !ok {
		if x == nil {
			return ""
		}
		return strings.TrimSpace(text(x) + " " + currency)
	}
	neg := f < 0
	f = math.Abs(f)
	whole := strconv.FormatFloat(math.Trunc(f), 'f', 0, 64)
	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	s := b.String()
	if frac := f - math.Trunc(f); frac > 0.004 {
		s += strings.TrimPrefix(strconv.FormatFloat(frac, 'f', 2, 64), "0")
	}
	if neg {
		s = "-" + s
	}
	return strings.TrimSpace(s + " " + currency)
}

// Change is one row of "recent changes": a decision that changed something (or a run of snapshots that
// changed nothing), with the steps that followed it folded in: the writer's outcome, the echo of our own
// write coming back, the sync status and Audit field write-backs.
type Change struct {
	At     time.Time `json:"at"`
	LinkID string    `json:"linkId"`
	// From is the side the change came from (Partner Center, Salesforce), or the stage that made it.
	From string `json:"from"`
	// Outcome is where the change ended: written, in flight, failed, conflict, held, dead letter,
	// re-driven, linked, ignored, no change.
	Outcome string `json:"outcome"`
	// Stages are the stages that decided or wrote it, each once, in the order they first did (mapper,
	// then sf-writer, ...).
	Stages []string `json:"stages"`
	// Fields are the fields it changed; Detail the first decision's explanation.
	Fields []string `json:"fields,omitempty"`
	Detail string   `json:"detail,omitempty"`
	// Values are the field changes the row's decisions carry (before → after, and from which side).
	Values []ShownChange `json:"values,omitempty"`
	// Steps are the decisions folded into the row, oldest first.
	Steps []Step `json:"steps"`

	cause string
}

// Step is one decision folded into a Change.
type Step struct {
	At     time.Time `json:"at"`
	Stage  string    `json:"stage"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail,omitempty"`
}

// Outcomes are the values Change.Outcome takes, in the order the page's filter lists them.
var Outcomes = []string{"written", "in flight", "failed", "conflict", "held", "dead letter", "re-driven", "linked", "ignored", "no change"}

// DecidedBy is the stage a decision is shown under: for the mapper's decision on a writer's outcome, the
// writer that wrote (or failed to write) it; else the stage that made it.
func DecidedBy(d contracts.Decision) string {
	if w := writerOf(d.Cause); w != "" && d.Stage == contracts.StageMapper && (d.Kind == contracts.DecisionWritten || d.Kind == contracts.DecisionFailed) {
		return w
	}
	return d.Stage
}

// writerOf is the writer that carries out the command id names ("" for anything else).
func writerOf(id string) string {
	switch {
	case strings.HasPrefix(id, "cmd/"+string(contracts.PartnerCenter)+"/"):
		return contracts.StagePCWriter
	case strings.HasPrefix(id, "cmd/"+string(contracts.Salesforce)+"/"):
		return contracts.StageSFWriter
	}
	return ""
}

// SideOf names where a decision's cause came from: the observed snapshot's system, a writer's outcome,
// a command to a writer (parked or re-driven), else "".
func SideOf(d contracts.Decision) string {
	switch {
	case strings.HasPrefix(d.Cause, string(contracts.PartnerCenter)+"/"):
		return "Partner Center"
	case strings.HasPrefix(d.Cause, string(contracts.Salesforce)+"/"):
		return "Salesforce"
	case writerOf(d.Cause) != "" && (d.Kind == contracts.DecisionDeadLetter || d.Kind == contracts.DecisionRedriven):
		return "command to " + writerOf(d.Cause)
	case writerOf(d.Cause) != "":
		return writerOf(d.Cause) + "'s outcome"
	}
	return ""
}

// step reports whether a decision continues the change before it on the same link rather than starting
// one: an outcome of a write, an echo, an unchanged or stale snapshot, an Audit or status write-back.
func step(d contracts.Decision) bool {
	if IsAuditCommand(d.Cause) || strings.HasPrefix(d.Cause, "cmd/") {
		return true
	}
	switch d.Kind {
	case contracts.DecisionWritten, contracts.DecisionEcho, contracts.DecisionNoChange, contracts.DecisionStale:
		return true
	}
	return false
}

// Changes folds decisions (oldest first) into changes, newest first.
func Changes(decisions []contracts.Decision) []Change {
	var out []*Change
	current := map[string]*Change{}
	for _, d := range decisions {
		c := current[d.LinkID]
		switch {
		case c == nil:
		case step(d):
			// continues c
		case d.Cause == c.cause:
			// another decision on the same snapshot
		default:
			c = nil
		}
		if c == nil {
			c = &Change{At: d.At, LinkID: d.LinkID, From: SideOf(d), Detail: d.Detail}
			if c.From == "" {
				c.From = d.Stage
			}
			out = append(out, c)
			current[d.LinkID] = c
		}
		c.add(d)
	}
	res := make([]Change, len(out))
	for i, c := range out {
		res[len(out)-1-i] = *c
	}
	return res
}

func (c *Change) add(d contracts.Decision) {
	if len(c.Steps) == 0 {
		c.cause = d.Cause
	}
	by := DecidedBy(d)
	if !contains(c.Stages, by) {
		c.Stages = append(c.Stages, by)
	}
	kind := d.Kind
	if IsAuditCommand(d.Cause) {
		kind = auditStep(kind)
	}
	c.Steps = append(c.Steps, Step{At: d.At, Stage: by, Kind: kind, Detail: d.Detail})
	if !IsAuditCommand(d.Cause) {
		for _, f := range d.Fields {
			if !contains(c.Fields, f) {
				c.Fields = append(c.Fields, f)
			}
		}
		c.Values = append(c.Values, shown(d.Changes)...)
	}
	c.Outcome = outcomeOf(c.Steps)
}

// auditStep names a step of the Audit field write-back.
func auditStep(kind string) string { return "Audit field " + kind }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// outcomeOf says where a change ended, the gravest state first.
func outcomeOf(steps []Step) string {
	has := map[string]bool{}
	parked := false
	for _, s := range steps {
		if strings.HasPrefix(s.Kind, auditStep("")) {
			continue
		}
		has[s.Kind] = true
		switch s.Kind {
		case contracts.DecisionDeadLetter:
			parked = true
		case contracts.DecisionRedriven:
			parked = false
		}
	}
	switch {
	case parked:
		return "dead letter"
	case has[contracts.DecisionFailed]:
		return "failed"
	case has[contracts.DecisionConflict]:
		return "conflict"
	case has[contracts.DecisionHeld]:
		return "held"
	case has[contracts.DecisionWritten]:
		return "written"
	case has[contracts.DecisionApplied] || has[contracts.DecisionCreated]:
		return "in flight"
	case has[contracts.DecisionRedriven]:
		return "re-driven"
	case has[contracts.DecisionLinked]:
		return "linked"
	case has[contracts.DecisionIgnored]:
		return "ignored"
	}
	return "no change"
}

// RecordView is what the API answers for one record: the link as the page shows it (nil when there is
// none yet) and its timeline, oldest first.
type RecordView struct {
	Link     *LinkView            `json:"link"`
	Timeline []contracts.Decision `json:"timeline"`
}

// TimelineRow is one decision of a record's timeline as the page shows it.
type TimelineRow struct {
	contracts.Decision
	// By is the stage that decided or wrote it; From the side its cause came from; What the kind of
	// decision and where it writes.
	By, From, What string
	// Changes are its field changes with the values rendered for a reader.
	Changes []ShownChange
}

// ShownChange is a FieldChange rendered for a reader.
type ShownChange struct {
	Field  string `json:"field"`
	Before string `json:"before"`
	After  string `json:"after"`
	From   string `json:"from"`
}

func timelineRows(tl []contracts.Decision) []TimelineRow {
	rows := make([]TimelineRow, 0, len(tl))
	for _, d := range tl {
		r := TimelineRow{Decision: d, By: DecidedBy(d), From: SideOf(d), What: d.Kind}
		if IsAuditCommand(d.Cause) {
			r.What = auditStep(d.Kind)
		}
		if d.Target != "" {
			r.What += " → " + sideName(d.Target)
		}
		r.Changes = shown(d.Changes)
		rows = append(rows, r)
	}
	return rows
}

func shown(cs []contracts.FieldChange) []ShownChange {
	var out []ShownChange
	for _, c := range cs {
		out = append(out, ShownChange{Field: c.Field, Before: show(c.Before), After: show(c.After), From: sideName(c.From)})
	}
	return out
}

func sideName(s contracts.System) string {
	switch s {
	case contracts.PartnerCenter:
		return "Partner Center"
	case contracts.Salesforce:
		return "Salesforce"
	}
	return string(s)
}
