package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/auditsummary"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// Verdict is what a run found.
type Verdict struct {
	Ops, Kills, NATSRestarts, Faults int
	// SFCDC is sf-ingest's mode (on: Change Data Capture); SFIngestKills how often it was killed.
	SFCDC         string
	SFIngestKills int
	// ViaCDC and ViaPoll count the Opportunity snapshots sf-ingest published from change events and
	// from REST reads (the first start's catch-up, the backstop).
	ViaCDC, ViaPoll int
	// Referrals and Opportunities counted in the emulators' stores; Pairs linked one-to-one.
	Referrals, Opportunities, Pairs int
	Duplicates                      int
	Missing                         int
	// IgnoredClosed counts referrals closed before cosell first saw them (audited as ignored).
	IgnoredClosed         int
	Diverged              int
	Poison, PoisonFlagged int
	// PoisonParked counts the dead letters that hold a poison record's refused command, with its reason.
	PoisonParked             int
	DeadLetters              int
	Commands, Unanswered     int
	Links, LinksWithoutTrail int
	// Problems lists every finding, one line each.
	Problems []string
}

// OK is true when nothing was lost, duplicated, left diverged or unexplained.
func (v Verdict) OK() bool { return len(v.Problems) == 0 }

// String is the one-line verdict.
func (v Verdict) String() string {
	status := "PASS"
	if !v.OK() {
		status = fmt.Sprintf("FAIL (%d problems)", len(v.Problems))
	}
	return fmt.Sprintf("chaos %s: %d referrals ↔ %d opportunities (%d pairs), %d duplicates, %d missing, %d diverged, "+
		"%d closed before first sight, %d/%d poison flagged (%d parked as dead letters with the reason), %d dead letters in all, %d/%d commands answered, %d/%d links with an audit trail; "+
		"injected %d kills (%d of sf-ingest), %d NATS restarts, %d upstream faults over %d operations; sf-ingest CDC %s: %d snapshots from change events, %d by REST",
		status, v.Referrals, v.Opportunities, v.Pairs, v.Duplicates, v.Missing, v.Diverged,
		v.IgnoredClosed, v.PoisonFlagged, v.Poison, v.PoisonParked, v.DeadLetters, v.Commands-v.Unanswered, v.Commands, v.Links-v.LinksWithoutTrail, v.Links,
		v.Kills, v.SFIngestKills, v.NATSRestarts, v.Faults, v.Ops, v.SFCDC, v.ViaCDC, v.ViaPoll)
}

func (v *Verdict) problem(format string, args ...any) {
	v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
}

// check compares both emulators' stores and the streams.
func check(ctx context.Context, js jetstream.JetStream, _ any, w *workload, v *Verdict) error {
	refs, err := w.referrals(ctx)
	if err != nil {
		return err
	}
	opps, err := w.records(ctx, "Opportunity")
	if err != nil {
		return err
	}
	sols, err := w.records(ctx, "Microsoft_Solution__c")
	if err != nil {
		return err
	}
	v.Referrals, v.Opportunities = len(refs), len(opps)
	byRef := map[string][]map[string]any{}
	oppByID := map[string]map[string]any{}
	for _, o := range opps {
		oppByID[fmt.Sprint(o["Id"])] = o
		if id, _ := o["Referral_Identifier__c"].(string); id != "" {
			byRef[id] = append(byRef[id], o)
		}
	}
	refByExt := map[string][]referral{}
	refByID := map[string]referral{}
	for _, r := range refs {
		refByID[r.ID] = r
		if r.ExternalReferenceID != "" {
			refByExt[r.ExternalReferenceID] = append(refByExt[r.ExternalReferenceID], r)
		}
	}
	solsByOpp := map[string][]string{}
	for _, s := range sols {
		opp := fmt.Sprint(s["Opportunity__c"])
		solsByOpp[opp] = append(solsByOpp[opp], fmt.Sprint(s["Solution_Id__c"]))
	}
	for id, os := range byRef {
		if len(os) > 1 {
			v.Duplicates += len(os) - 1
			v.problem("referral %s has %d opportunities", id, len(os))
		}
	}
	for id, rs := range refByExt {
		if len(rs) > 1 {
			v.Duplicates += len(rs) - 1
			v.problem("opportunity %s has %d referrals", id, len(rs))
		}
	}
	type pair struct {
		r referral
		o map[string]any
	}
	var pairs []pair
	for _, id := range w.pcOrigin {
		os := byRef[id]
		if len(os) == 0 && refByID[id].Status == "Closed" && decided(ctx, js, contracts.LinkIDFor(contracts.PartnerCenter, id), contracts.DecisionIgnored) {
			// Closed before cosell first saw it: audited as ignored, by design no Opportunity.
			v.IgnoredClosed++
			continue
		}
		if len(os) == 0 {
			v.Missing++
			v.problem("referral %s (from Microsoft) has no opportunity (%s)", id, trace(ctx, js, contracts.PartnerCenter, id))
			continue
		}
		pairs = append(pairs, pair{refByID[id], os[0]})
	}
	for _, id := range w.sfOrigin {
		rs := refByExt[id]
		if len(rs) == 0 {
			v.Missing++
			v.problem("opportunity %s (Sync on) has no referral (%s)", id, trace(ctx, js, contracts.Salesforce, id))
			continue
		}
		o := oppByID[id]
		if o["Referral_Identifier__c"] != rs[0].ID {
			v.problem("opportunity %s: Referral Identifier %v, want %s", id, o["Referral_Identifier__c"], rs[0].ID)
		}
		pairs = append(pairs, pair{rs[0], o})
	}
	v.Pairs = len(pairs)
	for _, p := range pairs {
		if p.r.Status == "Closed" {
			// A closed referral takes no more changes; what a user edits afterwards is held by design.
			continue
		}
		var diffs []string
		if p.r.Details == nil || p.r.Details.DealValue == nil {
			diffs = append(diffs, "no deal value")
		} else if a, ok := p.o["Amount"].(float64); !ok || math.Abs(a-*p.r.Details.DealValue) > 0.005 {
			diffs = append(diffs, fmt.Sprintf("dealValue %v ≠ Amount %v", *p.r.Details.DealValue, p.o["Amount"]))
		}
		if p.r.Details != nil {
			if p.r.Details.Currency != p.o["CurrencyIsoCode"] {
				diffs = append(diffs, fmt.Sprintf("currency %s ≠ %v", p.r.Details.Currency, p.o["CurrencyIsoCode"]))
			}
			if cd := p.r.Details.ClosingDateTime; len(cd) < 10 || cd[:10] != p.o["CloseDate"] {
				diffs = append(diffs, fmt.Sprintf("closingDateTime %s ≠ CloseDate %v", cd, p.o["CloseDate"]))
			}
			if want := solsByOpp[fmt.Sprint(p.o["Id"])]; len(want) > 0 {
				var have []string
				if p.r.Details.Requirements != nil {
					for _, s := range p.r.Details.Requirements.Solutions {
						have = append(have, s.ID)
					}
				}
				if !sameSet(want, have) {
					diffs = append(diffs, fmt.Sprintf("solutions %v ≠ %v", have, want))
				}
			}
		}
		stage, _ := p.o["StageName"].(string)
		switch {
		case p.r.Status == "New" && stage != "Prospecting":
			diffs = append(diffs, "referral New but stage "+stage)
		case p.r.Status == "Active" && (stage == "Prospecting" || strings.HasPrefix(stage, "Closed")):
			diffs = append(diffs, "referral Active but stage "+stage)
		}
		if len(diffs) > 0 {
			v.Diverged++
			v.problem("pair %s ↔ %v diverged: %s; timeline: %s", p.r.ID, p.o["Id"], strings.Join(diffs, "; "),
				timeline(ctx, js, p.r.ID, fmt.Sprint(p.o["Id"])))
		}
	}
	v.Poison = len(w.poison)
	for _, id := range w.poison {
		o := oppByID[id]
		status, _ := o["Partner_Center_Sync_Status__c"].(string)
		switch {
		case len(refByExt[id]) > 0:
			v.problem("poison opportunity %s reached Partner Center", id)
		case !strings.HasPrefix(status, "✖"):
			v.problem("poison opportunity %s not flagged (sync status %q)", id, status)
		default:
			v.PoisonFlagged++
		}
	}
	parked := map[string]bool{}
	for _, id := range w.poison {
		parked[contracts.Subject(contracts.SubjectReferralRequested, contracts.LinkIDFor(contracts.Salesforce, id))] = true
	}
	return checkStreams(ctx, js, v, parked)
}

// trail is a link's audit trail as the auditor's timeline reads it: the decisions on its audit subject,
// then what each of its outcomes records (auditsummary.OfOutcome: the decision its command carried and
// what the write did), each in stream order.
func trail(ctx context.Context, js jetstream.JetStream, linkID string) []contracts.Decision {
	var out []contracts.Decision
	_ = each(ctx, js, contracts.StreamAudit, []string{contracts.Subject(contracts.SubjectAudit, linkID)}, func(m platform.Stored) {
		var d contracts.Decision
		if json.Unmarshal(m.Data, &d) == nil {
			out = append(out, d)
		}
	})
	_ = each(ctx, js, contracts.StreamOutcomes, []string{contracts.OutcomeSubjects(linkID)}, func(m platform.Stored) {
		var o contracts.Outcome
		if json.Unmarshal(m.Data, &o) == nil {
			out = append(out, auditsummary.OfOutcome(o)...)
		}
	})
	return out
}

// decided reports whether a link's audit trail holds a decision of kind.
func decided(ctx context.Context, js jetstream.JetStream, linkID, kind string) bool {
	for _, d := range trail(ctx, js, linkID) {
		if d.Kind == kind {
			return true
		}
	}
	return false
}

// trace says how far a record got: notifications, snapshots and commands about it in the streams.
func trace(ctx context.Context, js jetstream.JetStream, sys contracts.System, id string) string {
	count := func(stream, subject string) int {
		n := 0
		_ = each(ctx, js, stream, []string{subject}, func(platform.Stored) { n++ })
		return n
	}
	link := contracts.LinkIDFor(sys, id)
	if sys == contracts.PartnerCenter {
		return fmt.Sprintf("notified %d, observed %d, commands %d, outcomes %d, decisions %d",
			count(contracts.StreamObserved, contracts.Subject(contracts.SubjectReferralNotified, id)),
			count(contracts.StreamObserved, contracts.Subject(contracts.SubjectReferralObserved, id)),
			count(contracts.StreamRequested, contracts.Subject(contracts.SubjectOpportunityRequested, link)),
			count(contracts.StreamOutcomes, contracts.OutcomeSubjects(link)), len(trail(ctx, js, link)))
	}
	return fmt.Sprintf("observed %d, commands %d, outcomes %d, decisions %d",
		count(contracts.StreamObserved, contracts.Subject(contracts.SubjectOpportunityObserved, id)),
		count(contracts.StreamRequested, contracts.Subject(contracts.SubjectReferralRequested, link)),
		count(contracts.StreamOutcomes, contracts.OutcomeSubjects(link)), len(trail(ctx, js, link)))
}

// timeline lists a pair's decisions (kind, fields, cause; the audit subject's, then the outcomes'), to show
// how a divergence came about.
func timeline(ctx context.Context, js jetstream.JetStream, referralID, opportunityID string) string {
	var out []string
	for _, link := range []string{contracts.LinkIDFor(contracts.PartnerCenter, referralID), contracts.LinkIDFor(contracts.Salesforce, opportunityID)} {
		for _, d := range trail(ctx, js, link) {
			out = append(out, fmt.Sprintf("%s %s%v (%s) [%s]", d.Stage, d.Kind, d.Fields, d.Cause, d.Detail))
		}
	}
	return strings.Join(out, " | ")
}

func sameSet(a, b []string) bool {
	set := func(xs []string) string {
		m := map[string]bool{}
		for _, x := range xs {
			m[x] = true
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return strings.Join(keys, ",")
	}
	return set(a) == set(b)
}

// checkStreams checks the audit trail: every command has an outcome or a dead letter, every link has
// decisions on its audit subject or its outcomes, and every dead letter says why.
// Dead letters on the subjects in poison are expected: a record the other side refuses is parked there with
// the reason; any other dead letter is a finding.
func checkStreams(ctx context.Context, js jetstream.JetStream, v *Verdict, poison map[string]bool) error {
	commands := map[string]string{}
	if err := each(ctx, js, contracts.StreamRequested, nil, func(m platform.Stored) {
		commands[m.Header.Get("ce-id")] = m.Subject
	}); err != nil {
		return err
	}
	answered := map[string]bool{}
	if err := each(ctx, js, contracts.StreamOutcomes, nil, func(m platform.Stored) {
		var o contracts.Outcome
		if json.Unmarshal(m.Data, &o) == nil {
			answered[o.CommandID] = true
		}
	}); err != nil {
		return err
	}
	if err := each(ctx, js, contracts.StreamDeadLetter, nil, func(m platform.Stored) {
		var d contracts.DeadLetter
		if json.Unmarshal(m.Data, &d) != nil {
			v.problem("dead letter %s is not readable", m.Header.Get("ce-id"))
			return
		}
		v.DeadLetters++
		if strings.TrimSpace(d.Reason) == "" {
			v.problem("dead letter of %s has no reason", d.Subject)
		}
		if id := firstHeader(d.Header, "ce-id"); id != "" {
			answered[id] = true
		}
		if poison[d.Subject] {
			v.PoisonParked++
			return
		}
		v.problem("dead letter from %s (%s): %s", d.Stage, d.Subject, d.Reason)
	}); err != nil {
		return err
	}
	if v.PoisonParked < len(poison) {
		v.problem("%d of %d poison records parked in the dead-letter stream", v.PoisonParked, len(poison))
	}
	v.Commands = len(commands)
	for id, subj := range commands {
		if !answered[id] {
			v.Unanswered++
			v.problem("command %s on %s has no outcome", id, subj)
		}
	}
	if err := each(ctx, js, contracts.StreamObserved, []string{contracts.SubjectOpportunityObserved + ".>"}, func(m platform.Stored) {
		var o contracts.OpportunityObserved
		if json.Unmarshal(m.Data, &o) == nil {
			switch o.Via {
			case "cdc":
				v.ViaCDC++
			case "poll":
				v.ViaPoll++
			}
		}
	}); err != nil {
		return err
	}
	if v.SFCDC == "on" && v.ViaCDC == 0 {
		v.problem("CDC mode: no snapshot came from a change event")
	}
	// A link's trail is its audit subject and its outcomes (each the audit record of a write).
	trails := map[string]int{}
	if err := each(ctx, js, contracts.StreamAudit, nil, func(m platform.Stored) {
		trails[m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]]++
	}); err != nil {
		return err
	}
	if err := each(ctx, js, contracts.StreamOutcomes, nil, func(m platform.Stored) {
		var o contracts.Outcome
		if json.Unmarshal(m.Data, &o) == nil {
			trails[contracts.Token(o.LinkID)] += len(auditsummary.OfOutcome(o))
		}
	}); err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, contracts.BucketLinks)
	if err != nil {
		return err
	}
	keys, err := kv.ListKeysFiltered(ctx, "link.>")
	if err != nil {
		return err
	}
	for k := range keys.Keys() {
		v.Links++
		id := strings.TrimPrefix(k, "link.")
		if trails[id] == 0 {
			v.LinksWithoutTrail++
			v.problem("link %s has no audit trail", id)
		}
	}
	return nil
}

func firstHeader(h map[string][]string, name string) string {
	for k, vs := range h {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// each reads a whole stream (optionally filtered) to its end.
func each(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, fn func(platform.Stored)) error {
	return platform.ReadStream(ctx, js, stream, func(m platform.Stored) error { fn(m); return nil }, platform.Subjects(subjects...))
}
