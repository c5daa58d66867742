// Package decide is the mapper's pure decision core: given an observed snapshot (or a writer's outcome)
// and the link record, it decides what to write to the other side and how the link changes. It does no
// I/O; the mapper service reads and compare-and-sets the link around it. What a field is, how it is read
// and written, and how two values compare is the mapping's (services/internal/mapping); decide only
// decides over it.
package decide

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/auditsummary"
	"github.com/cosell-dev/cosell/services/internal/mapping"
)

// Decider decides with one mapping: Decider{Mapping: m}. The mapping's fields, stage rules and
// transforms are promoted, so a Decider reads and writes values like the mapping it holds.
type Decider struct {
	mapping.Mapping
}

// Observation is one observed snapshot, already read into mapped values.
type Observation struct {
	System   contracts.System
	EventID  string
	EntityID string
	Version  contracts.Version
	Values   mapping.Values
	// Counterpart is the other side's id as this record names it: the referral's externalReferenceId, or
	// the Opportunity's Referral Identifier.
	Counterpart string
	// Eligible is false for a record that must not start a new link: an Opportunity without
	// "Sync with Partner Center", or a referral already closed.
	Eligible bool
	// Deleted marks a record deleted on its side.
	Deleted bool
	// CustomerIDs are a referral customer's ids by profile type (customerProfile.ids), which an Account
	// match by external id uses.
	CustomerIDs map[string]string
	// Lead marks a lead referral (mapping.IsLeadReferral) or a Lead's snapshot; ConvertedTo is the
	// Opportunity a converted Lead became.
	Lead        bool
	ConvertedTo string
	// Returned marks a referral snapshot pc-writer published from what its own create or patch returned:
	// the write's outcome, published right after it, carries the same referral.
	Returned bool
}

// ObserveReferral reads a referral snapshot into an Observation.
func (m Decider) ObserveReferral(eventID string, r partnercenter.Referral, v contracts.Version) Observation {
	vals := m.FromReferral(r)
	o := Observation{
		System: contracts.PartnerCenter, EventID: eventID, EntityID: r.ID, Version: v, Values: vals,
		Counterpart: r.ExternalReferenceID,
		Eligible:    r.Status != partnercenter.StatusClosed,
		Lead:        mapping.IsLeadReferral(r),
	}
	if r.CustomerProfile != nil {
		for _, id := range r.CustomerProfile.IDs {
			if id.ID != "" && id.ProfileType != "" {
				if o.CustomerIDs == nil {
					o.CustomerIDs = map[string]string{}
				}
				o.CustomerIDs[id.ProfileType] = id.ID
			}
		}
	}
	return o
}

// ObserveOpportunity reads an Opportunity snapshot into an Observation.
func (m Decider) ObserveOpportunity(eventID string, o contracts.Opportunity, v contracts.Version) Observation {
	if o.Object == sf.ObjectLead {
		obs := m.ObserveOpportunity(eventID, m.LeadAsOpportunity(contracts.Opportunity{ID: o.ID, Fields: o.Fields, Deleted: o.Deleted}), v)
		obs.Values = m.FromOpportunity(m.LeadAsOpportunity(o))
		obs.Lead, obs.ConvertedTo = true, o.ConvertedOpportunityID
		return obs
	}
	return Observation{
		System: contracts.Salesforce, EventID: eventID, EntityID: o.ID, Version: v,
		Values:      m.FromOpportunity(o),
		Counterpart: text(o.Fields[sf.FieldReferralIdentifier]),
		Eligible:    o.Fields[sf.FieldSyncWithPartnerCenter] == true,
		Deleted:     o.Deleted,
	}
}

// Result is what a decision produced. The caller stores Link (when not nil) with compare-and-set, then
// publishes the commands and decisions; command ids are deterministic, so a retry publishes duplicates the
// server drops.
type Result struct {
	// Link is the new link state; nil leaves the stored link as it is.
	Link *contracts.Link
	// NewIndexes are the entity ids that must now point at Link (each side's index key).
	NewIndexes map[contracts.System]string
	Referral   *Command[contracts.ReferralCommand]
	Opp        *Command[contracts.OpportunityCommand]
	// LinkBack is a write-back of the referral id, link and sync status to the Opportunity.
	LinkBack  *Command[contracts.OpportunityCommand]
	Decisions []contracts.Decision
}

// Command is a write command with its deterministic id.
type Command[T any] struct {
	ID   string
	Data T
}

// Observe decides on one observed snapshot. link is nil when no link exists for the record yet.
func (m Decider) Observe(link *contracts.Link, o Observation, now time.Time) Result {
	return m.forLead(link, m.observe(link, o, now))
}

// forLead writes the Opportunity commands of a link whose Salesforce side is a Lead as the Lead's
// (mapping.LeadCommand).
func (m Decider) forLead(link *contracts.Link, res Result) Result {
	l := res.Link
	if l == nil {
		l = link
	}
	if l == nil || l.SFObject != sf.ObjectLead {
		return res
	}
	for _, c := range []*Command[contracts.OpportunityCommand]{res.Opp, res.LinkBack} {
		if c != nil && c.Data.Object != sf.ObjectLead {
			c.Data = m.LeadCommand(c.Data)
		}
	}
	return res
}

// leadObserved decides on a Lead's snapshot for a linked referral: a Lead the link no longer follows (it
// was converted) is ignored; a converted Lead moves the link to its Opportunity, which gets every synced
// field, the referral's id and the flag (the conversion is on the timeline), without a second referral;
// otherwise the fields a Lead does not carry keep their agreed values (done=false: decide on as usual).
func (m Decider) leadObserved(l *contracts.Link, o *Observation, now time.Time) (Result, bool) {
	if l.SFObject != sf.ObjectLead || (l.OpportunityID != "" && l.OpportunityID != o.EntityID) {
		return Result{Decisions: []contracts.Decision{m.decision(*l, *o, contracts.DecisionIgnored,
			fmt.Sprintf("Lead %s is not the link's Salesforce record any more (it follows Opportunity %s)", o.EntityID, l.OpportunityID), nil, now)}}, true
	}
	if o.ConvertedTo == "" {
		vals := mapping.Values{}
		for k, v := range o.Values {
			if m.LeadCarries(k) {
				vals[k] = v
			}
		}
		for _, name := range m.fieldNames() {
			if v, ok := l.Synced[name]; ok && !m.LeadCarries(name) {
				vals[name] = v
			}
		}
		o.Values = vals
		return Result{}, false
	}
	lead := o.EntityID
	l.OpportunityID, l.SFObject = o.ConvertedTo, ""
	l.SF = contracts.Side{}
	l.Held, l.Paused = nil, false
	to := m.project(l.Synced, contracts.Salesforce)
	fields := m.OpportunityFields(to, true, now)
	sols, setSols := m.OpportunitySolutions(to, true)
	contacts, setContacts := m.OpportunityContacts(to, true)
	fields[sf.FieldReferralIdentifier] = l.ReferralID
	fields[sf.FieldReferralLink] = fmt.Sprintf(m.ReferralLinkFormat, l.ReferralID)
	fields[sf.FieldSyncWithPartnerCenter] = true
	fields[sf.FieldSyncStatus] = StatusInStep
	l.Status = StatusInStep
	m.markName(*l, fields, StatusInStep)
	id := contracts.EventID("cmd", "sf", l.ID, "convert", o.EventID)
	l.SF.Pending = id
	l.SF.WrittenFingerprint = m.fingerprint(l.Synced, contracts.Salesforce)
	l.UpdatedAt = now
	res := Result{Link: l, NewIndexes: map[contracts.System]string{contracts.Salesforce: o.ConvertedTo}}
	res.Opp = &Command[contracts.OpportunityCommand]{ID: id, Data: contracts.OpportunityCommand{
		LinkID: l.ID, Op: contracts.OpUpdate, OpportunityID: o.ConvertedTo, ReferralID: l.ReferralID, Fields: fields,
		Solutions: sols, SetSolutions: setSols, Contacts: contacts, SetContacts: setContacts,
		Purpose: "sync", Cause: o.EventID, CauseVersion: o.Version,
	}}
	res.Decisions = append(res.Decisions, m.decision(*l, *o, contracts.DecisionLinked,
		fmt.Sprintf("Lead %s converted to Opportunity %s: the link follows it (no second referral)", lead, o.ConvertedTo),
		slices.Sorted(maps.Keys(l.Synced)), now))
	return res, true
}

func (m Decider) observe(link *contracts.Link, o Observation, now time.Time) Result {
	if link == nil {
		return m.firstSight(o, now)
	}
	l := cloneLink(*link)
	if o.System == contracts.Salesforce && o.Lead {
		if res, done := m.leadObserved(&l, &o, now); done {
			return res
		}
	}
	res := Result{}
	if m.awaitsOutcome(l, o) {
		return res
	}
	// The record that a create made, seen before the writer's outcome (read by pc-ingest, say): it
	// completes the link.
	if idOf(l, o.System) == "" {
		setIDOf(&l, o.System, o.EntityID)
		l.State = contracts.LinkLinked
		res.NewIndexes = map[contracts.System]string{o.System: o.EntityID}
		res.Link = &l
	}
	side := sideOf(&l, o.System)
	if side.Seen.Tag != "" && side.Seen.Tag == o.Version.Tag {
		if o.Returned && res.Link == nil {
			// The referral our own write returned, its outcome decided on first (the two consumer
			// loops do not wait for each other): the outcome, its audit record, said it all.
			return res
		}
		res.Decisions = append(res.Decisions, m.decision(l, o, contracts.DecisionNoChange, "version already decided on", nil, now))
		return res
	}
	if !o.Version.Newer(side.Seen) {
		res.Decisions = append(res.Decisions, m.decision(l, o, contracts.DecisionStale,
			fmt.Sprintf("snapshot of %s is older than %s already applied", o.Version.At.Format(time.RFC3339Nano), side.Seen.At.Format(time.RFC3339Nano)), nil, now))
		return res
	}
	vals := m.adjust(l, o.System, o.Values)
	prev := side.Latest
	side.Seen = o.Version
	side.Latest = vals
	res.Link = &l
	if o.Deleted {
		l.LastError = fmt.Sprintf("%s record %s was deleted", o.System, o.EntityID)
		res.Decisions = append(res.Decisions, m.decision(l, o, contracts.DecisionHeld, l.LastError, nil, now))
		return res
	}
	pausing := false
	if o.System == contracts.Salesforce {
		switch {
		case !o.Eligible && !l.Paused:
			l.Paused, pausing = true, true
		case o.Eligible && l.Paused:
			l.Paused = false
			if l.Held != nil && l.Held.Reason == ReasonPaused {
				l.Held = nil
			}
			res.Decisions = append(res.Decisions, m.decision(l, o, contracts.DecisionLinked,
				"resumed: Sync with Partner Center is on again; what changed in Salesforce since the last sync is sent (three-way)", nil, now))
		}
	}
	m.propagate(&l, &res, o.System, vals, prev, o.EventID, o.Version, now)
	if pausing && (l.Held == nil || l.Held.Reason != ReasonPaused) {
		m.hold(&l, &res, o, ReasonPaused, nil, now)
	}
	m.showStatus(&l, &res, o.EventID)
	return res
}

// awaitsOutcome reports a referral snapshot that is the result of our pending Partner Center write, which
// the write's outcome carries and is decided on with (a create's completes the link): deciding on it here
// too would cost the link a write of its own for what the outcome's decision does anyway, and there is
// nothing to audit ("our own write came back" is what the outcome, the write's audit record, says). Two
// such snapshots: the one pc-writer published from what its create or patch returned, and the same
// referral read by pc-ingest while a patch is pending, when Partner Center's webhook about it came before
// pc-writer published (the two share their id, so the stream keeps whichever came first) and it holds
// exactly what the patch wrote. The outcome's own referral, decided with the command's id as its event while
// the command still counts as pending (a 412's redecision), is not one of them.
func (m Decider) awaitsOutcome(l contracts.Link, o Observation) bool {
	if o.System != contracts.PartnerCenter || l.PC.Pending == "" {
		return false
	}
	if o.Returned {
		return l.ReferralID == o.EntityID || (l.ReferralID == "" && o.Counterpart == l.OpportunityID)
	}
	return !o.Deleted && o.EventID != l.PC.Pending && l.ReferralID == o.EntityID && l.PC.WrittenFingerprint != "" &&
		m.fingerprint(m.adjust(l, o.System, o.Values), o.System) == l.PC.WrittenFingerprint && m.onlyOurWrite(l.PC, o.Values)
}

// onlyOurWrite reports values of a side that are its latest ones with our write in flight to it, and no
// other change: the fingerprint holds only the fields we write there, so a change made meanwhile to a
// field that never travels to the side (Microsoft's CRM id, say) would otherwise be taken for our own
// write and wait for an outcome that does not carry it.
func (m Decider) onlyOurWrite(side contracts.Side, v mapping.Values) bool {
	for _, f := range m.Fields {
		want, writing := side.InFlight[f.Name]
		if !writing {
			want = side.Latest[f.Name]
		}
		if !m.Same(f.Name, v[f.Name], want) {
			return false
		}
	}
	return true
}

// Reasons a change is held back, the ⏸ of the sync status.
const (
	// ReasonPaused: Sync with Partner Center is off on a linked Opportunity.
	ReasonPaused = "paused: Sync with Partner Center is off on the Opportunity; its changes wait until it is on again (Partner Center's changes still reach it)"
	// ReasonClosed: the referral is closed in Partner Center.
	ReasonClosed = "the referral is closed in Partner Center and takes no more changes"
)

// hold holds back fields (canonical values) for reason. The same values held for the same reason again
// (a snapshot that changed nothing mapped, such as cosell's own Audit or status write coming back) are
// decided once: no new held entry, no new write.
func (m Decider) hold(l *contracts.Link, res *Result, o Observation, reason string, held mapping.Values, now time.Time) {
	fields := slices.Sorted(maps.Keys(held))
	b, _ := json.Marshal(struct {
		Reason string
		Values mapping.Values
	}{reason, held})
	h := sha256.Sum256(b)
	fp := hex.EncodeToString(h[:12])
	if l.Held != nil && l.Held.Fingerprint == fp {
		res.Decisions = append(res.Decisions, m.decision(*l, o, contracts.DecisionNoChange, "still held: "+reason, fields, now))
		return
	}
	l.Held = &contracts.Held{Reason: reason, Fields: fields, Fingerprint: fp, Since: now}
	d := m.decision(*l, o, contracts.DecisionHeld, reason, fields, now)
	d.Changes = m.changes(*l, o.System, held)
	res.Decisions = append(res.Decisions, d)
}

// changes lists what a decision carries from side from: each field's agreed value before and the new
// one, for the timeline (the status page's before → after).
func (m Decider) changes(l contracts.Link, from contracts.System, v mapping.Values) []contracts.FieldChange {
	if len(v) == 0 {
		return nil
	}
	out := make([]contracts.FieldChange, 0, len(v))
	for _, k := range slices.Sorted(maps.Keys(v)) {
		out = append(out, contracts.FieldChange{Field: k, Before: l.Synced[k], After: v[k], From: from})
	}
	return out
}

// outOfStep reports a closed referral whose Opportunity's stage says otherwise (a partner-originated
// Opportunity's stage is the seller's, so cosell does not move it).
func (m Decider) outOfStep(l contracts.Link) bool {
	name := m.StatusName()
	return name != "" && m.locked(l.PC.Latest) && len(l.SF.Latest) > 0 && !m.Same(name, l.SF.Latest[name], l.PC.Latest[name])
}

// showStatus writes the sync status the link is in to the Opportunity when it differs from the one last
// written: ✔ in step, ⏸ with the reason while something is held. ✖ (a failed write) is written by
// Outcome and stays until a write to that side succeeds.
func (m Decider) showStatus(l *contracts.Link, res *Result, cause string) {
	if l.OpportunityID == "" || l.ReferralID == "" || res.LinkBack != nil || l.LastError != "" {
		return
	}
	want := StatusInStep
	if l.Held != nil {
		want = "⏸ " + l.Held.Reason
	}
	cur := l.Status
	if cur == "" {
		cur = StatusInStep
	}
	if cur == want {
		return
	}
	res.LinkBack = m.statusBack(l, cause, want)
}

// StatusInStep is the sync status of a link whose two sides are in step.
const StatusInStep = "✔"

// adjust applies the side-specific readings of values: for a link that Salesforce started, the hold stage
// means nothing (hold is for referrals received from Partner Center), so it reads as active.
func (m Decider) adjust(l contracts.Link, sys contracts.System, v mapping.Values) mapping.Values {
	name := m.StatusName()
	if sys != contracts.Salesforce || l.Origin != contracts.Salesforce || name == "" {
		return v
	}
	switch v[name] {
	case mapping.StatusNew:
		c := cloneValues(v)
		c[name] = mapping.StatusActive
		return c
	case mapping.StatusDeclined:
		// A partner does not decline its own referral: its decline stage reads as lost.
		c := cloneValues(v)
		c[name] = mapping.StatusLost
		return c
	}
	return v
}

// propagate sends the fields that changed on side from since the last sync to the other side. Where both
// sides changed a field since then, the field's owner decides: the newer change, one side, or a person
// (the conflict is parked on the link and nothing is written). prev is the side's previous snapshot (nil
// when there is none to compare with).
func (m Decider) propagate(l *contracts.Link, res *Result, from contracts.System, vals, prev mapping.Values, cause string, ver contracts.Version, now time.Time) {
	to := from.Other()
	obs := Observation{System: from, EventID: cause, Version: ver}
	if idOf(*l, to) == "" {
		m.awaitCreate(l, res, from, vals, prev, cause, ver, now)
		return
	}
	src, other := sideOf(l, from), sideOf(l, to)
	changed, back := mapping.Values{}, mapping.Values{}
	var conflicts, parked, resolved, unlanded, refused []string
	// Both sides' edits of each conflicting field, for the timeline: what each side changed it to.
	var rivals, parkedRivals []contracts.FieldChange
	var stageKept mapping.Values
	owners := map[mapping.Owner]bool{}
	for _, r := range m.Fields {
		name := r.Name
		nv, has := vals[name]
		if r.Kind == mapping.KindStatus && to == contracts.Salesforce && l.Origin == contracts.Salesforce {
			// A partner-originated Opportunity's stage is the seller's: Partner Center's status is not
			// written to it. A referral closed there while the Opportunity is open is shown as held.
			if m.locked(vals) && !m.Same(name, nv, other.Latest[name]) && (prev == nil || !m.Same(name, nv, prev[name])) {
				stageKept = mapping.Values{name: nv}
			}
			continue
		}
		if want, ok := src.InFlight[name]; ok && src.Pending != "" {
			switch {
			case m.Same(name, nv, want):
				src.InFlight = without(src.InFlight, name) // our write shows: from now on the field is this side's again
			case prev != nil && m.Same(name, nv, prev[name]):
				// Unchanged since this side's previous snapshot while our write is not visible yet: the
				// snapshot predates our write, and its older value must not go back over the newer one.
				unlanded = append(unlanded, name)
				continue
			default:
				src.InFlight = without(src.InFlight, name) // edited again right after our write: a real change
			}
		}
		if rv, ok := l.Review[name]; ok {
			mine := rv.SF
			if from == contracts.PartnerCenter {
				mine = rv.PC
			}
			switch {
			case m.Same(name, nv, other.Latest[name]):
				// Both sides agree now: the conflict resolved itself.
				l.Review = without(l.Review, name)
				m.agree(l, name, nv)
				resolved = append(resolved, name)
			case m.Same(name, nv, mine):
				// Still parked: nothing is written until a person acts.
			default:
				// A person edited the field again on this side: that edit settles the conflict.
				l.Review = without(l.Review, name)
				resolved = append(resolved, name)
				if m.Reach(name, to) == mapping.Always {
					changed[name] = nv
				}
			}
			continue
		}
		if m.Reach(name, to) != mapping.Always {
			continue
		}
		if _, once := mapping.OnceTrue[r.PC]; once && to == contracts.PartnerCenter && !has && (l.Synced[name] == true || other.Latest[name] == true) {
			// Partner Center never turns the flag off again: refuse the untick and show the truth.
			refused = append(refused, name)
			back[name] = true
			continue
		}
		if !has && !r.BlankTravels(to) {
			// A value that disappeared is not propagated as a blank where the other side refuses blanks.
			continue
		}
		base := l.Synced[name]
		if m.Same(name, nv, base) {
			continue
		}
		ov, seen := other.Latest[name]
		if _, writing := other.InFlight[name]; seen && !writing && m.Same(name, nv, ov) {
			// The other side holds this value already: nothing to write, both agree.
			m.agree(l, name, nv)
			continue
		}
		if seen && m.Reach(name, from) == mapping.Always && !m.Same(name, ov, base) && !m.Same(name, ov, nv) {
			// Both sides changed the field since the last sync.
			owner := r.Owner
			if owner == "" {
				owner = mapping.OwnerNewest
			}
			owners[owner] = true
			both := []contracts.FieldChange{{Field: name, Before: base, After: nv, From: from}, {Field: name, Before: base, After: ov, From: to}}
			switch m.winner(owner, from, ver, other.Seen) {
			case "":
				rv := contracts.Review{At: now}
				if from == contracts.PartnerCenter {
					rv.PC, rv.SF = nv, ov
				} else {
					rv.PC, rv.SF = ov, nv
				}
				l.Review = with(l.Review, name, rv)
				parked = append(parked, name)
				parkedRivals = append(parkedRivals, both...)
			case to:
				conflicts = append(conflicts, name)
				rivals = append(rivals, both...)
				if m.Reach(name, from) == mapping.Always {
					back[name] = ov
				}
			default:
				conflicts = append(conflicts, name)
				rivals = append(rivals, both...)
				changed[name] = nv
			}
			continue
		}
		changed[name] = nv
	}
	if len(refused) > 0 {
		res.Decisions = append(res.Decisions, m.decision(*l, obs, contracts.DecisionFailed,
			"refused: the referral is visible to Microsoft sellers, and Partner Center never makes a visible referral invisible again; the tick is written back to the Opportunity", refused, now))
	}
	if len(resolved) > 0 {
		res.Decisions = append(res.Decisions, m.decision(*l, obs, contracts.DecisionConflict,
			fmt.Sprintf("conflict parked for review settled by the %s record", from), resolved, now))
	}
	if len(conflicts) > 0 {
		d := m.decision(*l, obs, contracts.DecisionConflict, "both sides changed since the last sync; "+ownerRule(owners), conflicts, now)
		d.Changes = rivals
		res.Decisions = append(res.Decisions, d)
	}
	if len(parked) > 0 {
		d := m.decision(*l, obs, contracts.DecisionConflict,
			"both sides changed since the last sync; parked for review (owner both-with-review): nothing written until one side is edited again or both agree", parked, now)
		d.Changes = parkedRivals
		res.Decisions = append(res.Decisions, d)
	}
	if stageKept != nil {
		m.hold(l, res, obs, fmt.Sprintf("the referral is %s in Partner Center; the stage of a partner-originated Opportunity is the seller's, so cosell does not change it", text(vals[m.StatusName()])), stageKept, now)
	}
	if len(changed) == 0 && len(back) == 0 {
		if from == contracts.Salesforce && !l.Paused && l.Held != nil && !m.outOfStep(*l) {
			l.Held = nil // nothing is held back any more
		}
		if len(conflicts)+len(parked)+len(resolved) > 0 {
			return
		}
		kind, detail := contracts.DecisionNoChange, "no mapped field changed"
		if fp := m.fingerprint(vals, from); fp != "" && fp == src.WrittenFingerprint {
			kind, detail = contracts.DecisionEcho, "snapshot equals what cosell last wrote"
		}
		if len(unlanded) > 0 {
			detail += "; cosell's write of " + strings.Join(unlanded, ", ") + " does not show yet"
		}
		res.Decisions = append(res.Decisions, m.decision(*l, obs, kind, detail, unlanded, now))
		return
	}
	status := m.StatusName()
	if len(changed) > 0 {
		m.send(l, res, from, vals[status], changed, cause, ver, now)
	}
	if len(back) > 0 {
		// The owner's value goes back to the side whose change lost.
		m.send(l, res, to, other.Latest[status], back, cause, ver, now)
	}
}

// winner says which side's value a field takes when both changed it: a system, or "" to park it.
func (m Decider) winner(owner mapping.Owner, from contracts.System, ver contracts.Version, otherSeen contracts.Version) contracts.System {
	switch owner {
	case mapping.OwnerPC:
		return contracts.PartnerCenter
	case mapping.OwnerSF:
		return contracts.Salesforce
	case mapping.OwnerReview:
		return ""
	}
	if ver.At.Before(otherSeen.At) {
		return from.Other()
	}
	return from
}

func ownerRule(owners map[mapping.Owner]bool) string {
	var parts []string
	for _, o := range []mapping.Owner{mapping.OwnerNewest, mapping.OwnerPC, mapping.OwnerSF} {
		if !owners[o] {
			continue
		}
		switch o {
		case mapping.OwnerNewest:
			parts = append(parts, "the newer change wins")
		case mapping.OwnerPC:
			parts = append(parts, "Partner Center owns the field and wins")
		case mapping.OwnerSF:
			parts = append(parts, "Salesforce owns the field and wins")
		}
	}
	return strings.Join(parts, "; ")
}

// agree records a value both sides hold as the agreed one.
func (m Decider) agree(l *contracts.Link, name string, v any) {
	l.Synced = agreed(l.Synced, mapping.Values{name: v})
}

// agreed is synced with the values of vals agreed on (a blank one forgets its field), as a new map.
func agreed(synced, vals mapping.Values) mapping.Values {
	next := cloneValues(synced)
	for name, v := range vals {
		if mapping.IsBlank(v) {
			delete(next, name)
		} else {
			next[name] = v
		}
	}
	return next
}

// send writes changed (canonical values from side from, whose status is fromStatus) to the other side,
// unless a hold stage or a closed referral holds it, and records it as agreed.
func (m Decider) send(l *contracts.Link, res *Result, from contracts.System, fromStatus any, changed mapping.Values, cause string, ver contracts.Version, now time.Time) {
	to := from.Other()
	obs := Observation{System: from, EventID: cause, Version: ver}
	other := sideOf(l, to)
	if to == contracts.PartnerCenter && l.Paused {
		m.hold(l, res, obs, ReasonPaused, changed, now)
		return
	}
	if from == contracts.Salesforce && fromStatus == mapping.StatusNew {
		m.hold(l, res, obs, fmt.Sprintf("the Opportunity is in the hold stage %q: changes wait until it leaves it", m.Stages.Hold), changed, now)
		return
	}
	if to == contracts.PartnerCenter && m.locked(other.Latest) {
		m.hold(l, res, obs, ReasonClosed, changed, now)
		return
	}
	if to == contracts.PartnerCenter && !m.outOfStep(*l) {
		l.Held = nil // what was held goes now
	}
	id := contracts.EventID("cmd", string(to), l.ID, cause)
	switch to {
	case contracts.PartnerCenter:
		ops := m.ReferralPatch(changed, text(other.Latest[m.StatusName()]))
		if len(ops) == 0 {
			res.Decisions = append(res.Decisions, m.decision(*l, obs, contracts.DecisionNoChange, "nothing Partner Center can take changed", slices.Sorted(maps.Keys(changed)), now))
			return
		}
		res.Referral = &Command[contracts.ReferralCommand]{ID: id, Data: contracts.ReferralCommand{
			LinkID: l.ID, Op: contracts.OpUpdate, ReferralID: l.ReferralID, OpportunityID: l.OpportunityID,
			Patch: ops, Cause: cause, CauseVersion: ver, BaseETag: other.Seen.Tag,
		}}
	case contracts.Salesforce:
		fields := m.OpportunityFields(changed, false, ver.At)
		sols, setSols := m.OpportunitySolutions(changed, false)
		contacts, setContacts := m.OpportunityContacts(changed, false)
		if len(fields) == 0 && !setSols && !setContacts {
			res.Decisions = append(res.Decisions, m.decision(*l, obs, contracts.DecisionNoChange, "nothing Salesforce can take changed", slices.Sorted(maps.Keys(changed)), now))
			return
		}
		if _, renamed := fields[sf.FieldName]; renamed {
			m.markName(*l, fields, l.Status)
		}
		res.Opp = &Command[contracts.OpportunityCommand]{ID: id, Data: contracts.OpportunityCommand{
			LinkID: l.ID, Op: contracts.OpUpdate, OpportunityID: l.OpportunityID, ReferralID: l.ReferralID,
			Fields: fields, Solutions: sols, SetSolutions: setSols, Contacts: contacts, SetContacts: setContacts,
			Purpose: "sync", Cause: cause, CauseVersion: ver,
		}}
	}
	carried := m.changes(*l, from, changed)
	l.Synced = agreed(l.Synced, changed)
	inFlight := cloneValues(other.InFlight)
	maps.Copy(inFlight, changed)
	other.InFlight = inFlight
	// What the side holds once the write lands: its last snapshot (or, never observed, the agreed values)
	// with the written fields.
	expected := cloneValues(other.Latest)
	if len(other.Latest) == 0 {
		expected = cloneValues(l.Synced)
	}
	for k, v := range changed {
		expected[k] = v
	}
	other.WrittenFingerprint = m.fingerprint(expected, to)
	other.Pending = id
	d := m.decision(*l, obs, contracts.DecisionApplied, "sent to "+string(to), slices.Sorted(maps.Keys(changed)), now)
	d.Changes = carried
	res.Decisions = append(res.Decisions, d)
	res.carry(d)
}

// carry puts decision d (applied or created) on the command it sends to its target, which carries it to
// the writer and the writer into the outcome: the write's audit record (auditsummary.OfOutcome).
func (r *Result) carry(d contracts.Decision) {
	c := &d
	switch {
	case d.Target == contracts.PartnerCenter && r.Referral != nil:
		r.Referral.Data.Decision = c
	case d.Target == contracts.Salesforce && r.Opp != nil:
		r.Opp.Data.Decision = c
	}
}

// Carried reports whether d is the decision one of the result's commands carries: the command's outcome
// records it, so it goes on no audit subject of its own.
func (r Result) Carried(d contracts.Decision) bool {
	var c *contracts.Decision
	switch {
	case d.Kind != contracts.DecisionApplied && d.Kind != contracts.DecisionCreated:
		return false
	case d.Target == contracts.PartnerCenter && r.Referral != nil:
		c = r.Referral.Data.Decision
	case d.Target == contracts.Salesforce && r.Opp != nil:
		c = r.Opp.Data.Decision
	}
	return c != nil && c.Kind == d.Kind && c.Cause == d.Cause && c.At.Equal(d.At) && c.Detail == d.Detail && slices.Equal(c.Fields, d.Fields)
}

// locked reports a referral that takes no more changes: closed (won, lost, declined or expired).
func (m Decider) locked(v map[string]any) bool {
	s := v[m.StatusName()]
	return s == mapping.StatusWon || s == mapping.StatusLost || s == mapping.StatusDeclined
}

// firstSight decides on a record no link knows yet.
// awaitCreate decides on a snapshot of a link whose other side does not exist yet. While the create is on
// its way the change waits in Latest. When the create failed (Partner Center refused the values, say), a
// snapshot whose mapped values changed since then tries the create again; an unchanged one (our own ✖
// status or Audit write coming back) is no change, so it neither retries a create bound to fail nor adds
// to the audit trail.
func (m Decider) awaitCreate(l *contracts.Link, res *Result, from contracts.System, vals, prev mapping.Values, cause string, ver contracts.Version, now time.Time) {
	to := from.Other()
	obs := Observation{System: from, EventID: cause, Version: ver}
	fp := m.fingerprint(vals, to)
	refused := strings.HasPrefix(sideOf(l, to).WrittenFingerprint, refusedPrefix)
	if refused {
		fp = m.refusedFingerprint(vals) // a refused create waits for any value it takes to change
	}
	if l.State == contracts.LinkFailed && l.Origin == from && fp != sideOf(l, to).WrittenFingerprint {
		retry := m.firstSight(Observation{System: from, EventID: cause, EntityID: idOf(*l, from), Version: ver, Values: vals, Eligible: true}, now)
		if retry.Link != nil && (retry.Opp != nil || retry.Referral != nil) {
			id := contracts.EventID("cmd", string(to), l.ID, "create", cause)
			if retry.Opp != nil {
				retry.Opp.ID = id
				res.Opp = retry.Opp
			}
			if retry.Referral != nil {
				retry.Referral.ID = id
				res.Referral = retry.Referral
			}
			next := *retry.Link
			next.LastError = l.LastError
			sideOf(&next, to).Pending = id
			*l = next
			for _, d := range retry.Decisions {
				d.Detail = "the record changed since the create failed: trying again"
				res.Decisions = append(res.Decisions, d)
				res.carry(d)
			}
			return
		}
	}
	kind, detail := contracts.DecisionHeld, fmt.Sprintf("waiting for the %s record to be created", to)
	if l.State == contracts.LinkFailed {
		detail = fmt.Sprintf("the %s create failed (%s); change the record to try again", to, l.LastError)
	}
	if (prev != nil && fp == m.fingerprint(prev, to)) || (refused && fp == sideOf(l, to).WrittenFingerprint) {
		kind, detail = contracts.DecisionNoChange, "no mapped field changed"
	}
	if reason := m.refuseCreate(vals); refused && reason != "" && fp != sideOf(l, to).WrittenFingerprint {
		// Changed, and still refused (the reason may be another one now).
		sideOf(l, to).WrittenFingerprint = m.refusedFingerprint(vals)
		l.LastError = fmt.Sprintf("%s %s: %s", to, contracts.OpCreate, reason)
		if want := FailedStatus(reason, l.OpportunityID); l.Status != want {
			res.LinkBack = m.statusBack(l, cause, want)
		}
		kind, detail = contracts.DecisionFailed, reason
	}
	res.Decisions = append(res.Decisions, m.decision(*l, obs, kind, detail, nil, now))
}

// refusedPrefix marks the fingerprint of the values a create was refused for (refuseCreate).
const refusedPrefix = "refused:"

// refusedFingerprint identifies every value a referral create takes, so a refused create is tried again
// when any of them changes, and our own ✖ status write coming back is no change.
func (m Decider) refusedFingerprint(v mapping.Values) string {
	b, _ := json.Marshal(m.project(v, contracts.PartnerCenter)) // map keys marshal sorted
	h := sha256.Sum256(b)
	return refusedPrefix + hex.EncodeToString(h[:12])
}

// refuseCreate says why an Opportunity's values must not become a referral, or "". An Opportunity without
// a customer (no Account, or an Account without a name) is not shared under a customer named after the
// deal: Partner Center would show Microsoft sellers a customer that does not exist.
func (m Decider) refuseCreate(v mapping.Values) string {
	for _, r := range m.Fields {
		if r.PC == "customerProfile.name" && r.ToPC != mapping.Never && mapping.IsBlank(v[r.Name]) {
			return fmt.Sprintf("refused: the Opportunity has no customer Account (%s is empty), and cosell does not share a deal with Microsoft under a customer named after the deal; set the Opportunity's Account and cosell creates the referral", r.SF)
		}
	}
	if help := m.coSell(v); help != "" {
		if r, ok := m.RuleByKind(mapping.KindContacts); ok && r.ToPC != mapping.Never && mapping.IsBlank(v[r.Name]) {
			return fmt.Sprintf("refused: a co-sell referral (How can Microsoft help: %s) needs at least one customer contact, and Partner Center refuses one without; add a Contact role to the Opportunity (or clear How can Microsoft help) and cosell creates the referral", help)
		}
	}
	return ""
}

// coSell is the assistance a co-sell referral asks Microsoft for, or "" when the values ask for none
// (an empty How can Microsoft help, or Unknown): only a co-sell referral needs a customer contact.
func (m Decider) coSell(v mapping.Values) string {
	for _, r := range m.Fields {
		if r.PC == "inviteContext.assistanceRequestCode" {
			if s := text(v[r.Name]); s != "" && s != "Unknown" {
				return s
			}
		}
	}
	return ""
}

func (m Decider) firstSight(o Observation, now time.Time) Result {
	to := o.System.Other()
	l := contracts.Link{
		ID: contracts.LinkIDFor(o.System, o.EntityID), Origin: o.System, UpdatedAt: now,
		Synced: m.project(o.Values, to),
	}
	setIDOf(&l, o.System, o.EntityID)
	o.Values = m.adjust(l, o.System, o.Values)
	l.Synced = m.project(o.Values, to)
	side := sideOf(&l, o.System)
	side.Seen = o.Version
	side.Latest = o.Values
	res := Result{NewIndexes: map[contracts.System]string{o.System: o.EntityID}}
	if o.System == contracts.Salesforce && o.Lead {
		// A referral comes from a Lead only through cosell: a Lead of its own (or one whose link is gone)
		// starts nothing.
		return Result{Decisions: []contracts.Decision{m.decision(l, o, contracts.DecisionIgnored, "a Lead starts no referral (only a lead referral makes a Lead)", nil, now)}}
	}
	if o.System == contracts.Salesforce && !o.Eligible {
		// Outbound sync happens only while the flag is on, even for an Opportunity that names a referral
		// (what an upsert by the Referral Identifier External ID produces).
		return Result{Decisions: []contracts.Decision{m.decision(l, o, contracts.DecisionIgnored, "Sync with Partner Center is off", nil, now)}}
	}
	if o.Counterpart != "" {
		// The record already names its partner on the other side: adopt the pair instead of creating.
		setIDOf(&l, to, o.Counterpart)
		l.State = contracts.LinkLinked
		res.NewIndexes[to] = o.Counterpart
		res.Link = &l
		res.Decisions = append(res.Decisions, m.decision(l, o, contracts.DecisionLinked,
			fmt.Sprintf("%s record names %s %s: linked without creating", o.System, to, o.Counterpart), nil, now))
		return res
	}
	if !o.Eligible || o.Deleted {
		reason := "the referral is closed"
		if o.System == contracts.Salesforce {
			reason = "Sync with Partner Center is off"
		}
		return Result{Decisions: []contracts.Decision{m.decision(l, o, contracts.DecisionIgnored, reason, nil, now)}}
	}
	id := contracts.EventID("cmd", string(to), l.ID, "create")
	switch to {
	case contracts.Salesforce:
		l.State = contracts.LinkCreatingOpportunity
		fields := m.OpportunityFields(m.project(o.Values, to), true, o.Version.At)
		sols, setSols := m.OpportunitySolutions(m.project(o.Values, to), true)
		contacts, setContacts := m.OpportunityContacts(m.project(o.Values, to), true)
		fields[sf.FieldReferralIdentifier] = o.EntityID
		fields[sf.FieldReferralLink] = fmt.Sprintf(m.ReferralLinkFormat, o.EntityID)
		fields[sf.FieldSyncStatus] = StatusInStep
		l.Status = StatusInStep
		m.markName(l, fields, StatusInStep)
		res.Opp = &Command[contracts.OpportunityCommand]{ID: id, Data: contracts.OpportunityCommand{
			LinkID: l.ID, Op: contracts.OpCreate, ReferralID: o.EntityID, Fields: fields,
			Account: m.Account(o.Values, o.CustomerIDs), Solutions: sols, SetSolutions: setSols,
			Contacts: contacts, SetContacts: setContacts,
			Purpose: "sync", Cause: o.EventID, CauseVersion: o.Version,
		}}
		if o.Lead && !m.CoSellOnly {
			// coSellOnly off: a lead referral comes in as a Salesforce Lead.
			l.SFObject = sf.ObjectLead
			res.Opp.Data = m.LeadCommand(res.Opp.Data)
		}
	case contracts.PartnerCenter:
		if reason := m.refuseCreate(o.Values); reason != "" {
			// Nothing is shared with Microsoft under a made-up customer: the link waits, failed, with the
			// reason on the Opportunity, until the seller fixes the record.
			l.State = contracts.LinkFailed
			l.LastError = fmt.Sprintf("%s %s: %s", to, contracts.OpCreate, reason)
			sideOf(&l, to).WrittenFingerprint = m.refusedFingerprint(o.Values)
			res.Link = &l
			res.LinkBack = m.statusBack(&l, o.EventID, FailedStatus(reason, o.EntityID))
			res.Decisions = append(res.Decisions, m.decision(l, o, contracts.DecisionFailed, reason, nil, now))
			return res
		}
		l.State = contracts.LinkCreatingReferral
		r := m.ReferralCreate(o.EntityID, o.Values)
		res.Referral = &Command[contracts.ReferralCommand]{ID: id, Data: contracts.ReferralCommand{
			LinkID: l.ID, Op: contracts.OpCreate, OpportunityID: o.EntityID, Create: &r,
			Cause: o.EventID, CauseVersion: o.Version,
		}}
	}
	other := sideOf(&l, to)
	other.Pending = id
	other.WrittenFingerprint = m.fingerprint(l.Synced, to)
	res.Link = &l
	d := m.decision(l, o, contracts.DecisionCreated, "creating the "+string(to)+" record", slices.Sorted(maps.Keys(l.Synced)), now)
	d.Changes = m.changes(contracts.Link{}, o.System, l.Synced)
	res.Decisions = append(res.Decisions, d)
	res.carry(d)
	return res
}

// Outcome folds a writer's outcome into the link: it completes a link after a create, writes the referral
// id back to the Opportunity, and sends changes that waited for the create.
//
// An outcome already folded (the outcomes stream replayed, past the duplicate window too) changes
// nothing: no link change, no command, no decision.
func (m Decider) Outcome(link contracts.Link, out contracts.Outcome, now time.Time) Result {
	return m.forLead(&link, m.outcome(link, out, now))
}

func (m Decider) outcome(link contracts.Link, out contracts.Outcome, now time.Time) Result {
	if Refolded(link.Folded, out) {
		return Result{}
	}
	l := cloneLink(link)
	l.Folded = fold(l.Folded, out)
	res := Result{Link: &l}
	side := sideOf(&l, out.System)
	answered := side.Pending == out.CommandID
	if answered {
		side.Pending = ""
	}
	if auditsummary.Redecided(out) {
		return m.redecide(l, out, now)
	}
	if answered {
		// The write is done (or refused): what it carried is no longer under way. Done, the side holds
		// what it carried: its own snapshot of our write may never come (Change Data Capture drops
		// cosell's writes from the header), so the side's latest values are ours now, as that snapshot
		// would have made them, and the next change made on the other side is not taken for a conflict.
		if out.Status == contracts.OutcomeWritten && len(side.InFlight) > 0 {
			latest := cloneValues(side.Latest)
			for k, v := range side.InFlight {
				if mapping.IsBlank(v) {
					delete(latest, k)
				} else {
					latest[k] = v
				}
			}
			side.Latest = latest
		}
		side.InFlight = nil
	}
	if out.Status == contracts.OutcomeFailed {
		msg := "write failed"
		if out.Error != nil {
			msg = fmt.Sprintf("%s: %s", out.Error.Code, out.Error.Message)
		}
		l.LastError = auditsummary.FailedWrite(out)
		if out.Op == contracts.OpCreate && idOf(l, out.System) == "" {
			l.State = contracts.LinkFailed
		}
		res.Decisions = append(res.Decisions, writeResult(out, now)...)
		if out.System == contracts.PartnerCenter && l.OpportunityID != "" {
			res.LinkBack = m.statusBack(&l, out.CommandID, FailedStatus(msg, l.OpportunityID))
		}
		return res
	}
	// Only a successful sync write to the side that failed clears its error: an Audit or status write-back
	// to Salesforce says nothing about a Partner Center refusal.
	hadError := false
	if strings.HasPrefix(l.LastError, string(out.System)+" ") && (out.Purpose == "" || out.Purpose == "sync") {
		hadError, l.LastError = true, ""
	}
	res.Decisions = append(res.Decisions, writeResult(out, now)...)
	completed := false
	if id := out.ReferralID; out.System == contracts.PartnerCenter && id != "" && l.ReferralID == "" {
		l.ReferralID, completed = id, true
	}
	if id := out.OpportunityID; out.System == contracts.Salesforce && id != "" && l.OpportunityID == "" {
		l.OpportunityID, completed = id, true
	}
	if completed {
		l.State = contracts.LinkLinked
		res.NewIndexes = map[contracts.System]string{out.System: idOf(l, out.System)}
	}
	if out.System == contracts.PartnerCenter && out.Op == contracts.OpCreate && l.OpportunityID != "" {
		res.LinkBack = &Command[contracts.OpportunityCommand]{
			ID: contracts.EventID("cmd", "sf", l.ID, "link", l.ReferralID),
			Data: contracts.OpportunityCommand{
				LinkID: l.ID, Op: contracts.OpUpdate, OpportunityID: l.OpportunityID, ReferralID: l.ReferralID,
				Purpose: PurposeLink, Cause: out.CommandID,
				Fields: map[string]any{
					sf.FieldReferralIdentifier: l.ReferralID,
					sf.FieldReferralLink:       fmt.Sprintf(m.ReferralLinkFormat, l.ReferralID),
					sf.FieldSyncStatus:         StatusInStep,
				},
			},
		}
		l.Status = StatusInStep
		m.markName(l, res.LinkBack.Data.Fields, StatusInStep)
	} else if hadError && out.System == contracts.PartnerCenter && l.OpportunityID != "" {
		res.LinkBack = m.statusBack(&l, out.CommandID, StatusInStep)
	}
	if out.Referral != nil && out.Referral.ID != "" {
		// What Partner Center answered is a snapshot like any other: decide on it, so an edit made there
		// just before ours is not lost, and our own write is recognised as ours.
		o := m.ObserveReferral(out.CommandID, *out.Referral, out.Version)
		more := m.Observe(&l, o, now)
		if more.Link != nil {
			l = *more.Link
			res.Link = &l
		}
		res.Opp = more.Opp
		res.Referral = more.Referral
		if res.LinkBack == nil {
			res.LinkBack = more.LinkBack
		} else if more.LinkBack != nil {
			l.Status = res.LinkBack.Data.Fields[sf.FieldSyncStatus].(string) // the write-back that goes wins
		}
		for _, d := range more.Decisions {
			// That it showed nothing new (our own write, as an echo or no change) is what the outcome, the
			// write's audit record, says already: no audit message of its own for every create and patch.
			// One that names fields (our write of them does not show yet) still goes.
			if (d.Kind == contracts.DecisionEcho || d.Kind == contracts.DecisionNoChange) && len(d.Fields) == 0 {
				continue
			}
			res.Decisions = append(res.Decisions, d)
		}
	}
	if completed && res.Opp == nil && res.Referral == nil {
		// Changes that arrived while the record was being created wait in Latest: send them now. None
		// waiting is no decision of its own (the create's outcome is on the timeline).
		from := out.System.Other()
		waiting := Result{}
		m.propagate(&l, &waiting, from, sideOf(&l, from).Latest, nil, out.CommandID, sideOf(&l, from).Seen, now)
		res.Opp, res.Referral = waiting.Opp, waiting.Referral
		for _, d := range waiting.Decisions {
			if d.Kind != contracts.DecisionNoChange {
				res.Decisions = append(res.Decisions, d)
			}
		}
	}
	return res
}

// writeResult is the writer's decision the outcome records (auditsummary.Result: written, or failed with
// the reason), the one the auditor reads off the outcome for the link's timeline, so the mapper publishes
// no decision for it and its Audit lines show it as the auditor's timeline does. An outcome without a
// time (never one the writers published) is dated now.
func writeResult(out contracts.Outcome, now time.Time) []contracts.Decision {
	d, ok := auditsummary.Result(out)
	if !ok {
		return nil
	}
	if d.At.IsZero() {
		d.At = now
	}
	return []contracts.Decision{d}
}

// Purposes of the Salesforce write-backs the mapper sends besides its sync commands: the referral's id and
// link after a create, and the sync status.
const (
	PurposeLink   = contracts.PurposeLink
	PurposeStatus = "status"
)

// Inert reports an outcome that changes nothing of its link: a done Salesforce write-back (the referral's
// id and link, the sync status, the auditor's Audit summary). The link already shows what it wrote (the
// status is set when the write-back is decided), no command waits for it (a write-back is never a side's
// pending command), it clears no error (only a sync write does) and the write itself is on the
// timeline as its outcome. Folding it would cost the link a write for nothing, and a replay of it decides
// nothing either way.
func Inert(out contracts.Outcome) bool {
	return out.Status == contracts.OutcomeWritten && out.System == contracts.Salesforce &&
		(out.Purpose == contracts.PurposeAudit || out.Purpose == PurposeLink || out.Purpose == PurposeStatus)
}

// foldKeep is how many folded outcomes a link remembers by id; foldSkew is how much older than the
// newest forgotten one an outcome must be written to count as folded without its id (outcomes of one
// link may be folded a little out of the order they were written in).
const (
	foldKeep = 64
	foldSkew = 10 * time.Minute
)

// Refolded reports an outcome the link has folded already.
func Refolded(f *contracts.Folded, out contracts.Outcome) bool {
	if f == nil {
		return false
	}
	if slices.Contains(f.IDs, foldID(out)) {
		return true
	}
	return !f.Before.IsZero() && !out.At.IsZero() && out.At.Before(f.Before.Add(-foldSkew))
}

// fold remembers out as folded, forgetting the oldest id beyond foldKeep (its write time then bounds
// what counts as folded).
func fold(f *contracts.Folded, out contracts.Outcome) *contracts.Folded {
	next := &contracts.Folded{}
	var ids []string
	if f != nil {
		ids, next.Before = f.IDs, f.Before
	}
	if len(ids) >= foldKeep {
		ids = ids[len(ids)-foldKeep+1:]
		if out.At.After(next.Before) {
			// The forgotten id's own time is not kept; it was folded before out, so out's time bounds it.
			next.Before = out.At
		}
	}
	// A new slice of exactly its length (the link's record is shared: never append to its ids).
	next.IDs = append(make([]string, 0, len(ids)+1), ids...)
	next.IDs = append(next.IDs, foldID(out))
	return next
}

// foldID is a short hash of an outcome's identity (its command and status).
func foldID(out contracts.Outcome) string {
	h := sha256.Sum256([]byte(out.CommandID + "\x00" + out.Status))
	return hex.EncodeToString(h[:8])
}

// CodePreconditionFailed is the failure code of a patch Partner Center refused with 412 because the
// referral changed since the patch was decided; such an outcome carries the referral as it is now.
const CodePreconditionFailed = partnercenter.ErrorCodePreconditionFailed

// redecide folds the fresh referral of a 412: Microsoft edited the referral after the patch was decided,
// so nothing was written. The fresh snapshot is decided on like any other (Microsoft's edits go to
// Salesforce; a field both sides changed goes to the newer change), then what is still ours, agreed
// values Partner Center does not hold, is proposed again against the fresh eTag. Microsoft's edit is
// never overwritten blindly, and our change is not lost.
func (m Decider) redecide(l contracts.Link, out contracts.Outcome, now time.Time) Result {
	res := Result{Link: &l}
	obs := Observation{System: out.System, EventID: out.CommandID, Version: out.Version}
	res.Decisions = append(res.Decisions, m.decision(l, obs, contracts.DecisionConflict,
		fmt.Sprintf("referral %s changed in Partner Center after the patch was decided (412 Precondition Failed): deciding again on its current version", l.ReferralID), nil, now))
	// While the fresh snapshot is decided on, the refused patch still counts as under way: the fields it
	// carried are still ours, not Partner Center's values to send back.
	l.PC.Pending = out.CommandID
	more := m.Observe(&l, m.ObserveReferral(out.CommandID, *out.Referral, out.Version), now)
	if more.Link != nil {
		l = *more.Link
	}
	if l.PC.Pending == out.CommandID {
		l.PC.Pending = ""
	}
	res.Opp = more.Opp
	res.LinkBack = more.LinkBack
	res.Decisions = append(res.Decisions, more.Decisions...)
	ours := mapping.Values{}
	for _, name := range m.fieldNames() {
		v, has := l.Synced[name]
		if !has || m.Reach(name, contracts.PartnerCenter) != mapping.Always || m.Same(name, v, l.PC.Latest[name]) {
			continue
		}
		ours[name] = v
	}
	if len(ours) > 0 {
		m.send(&l, &res, contracts.Salesforce, l.SF.Latest[m.StatusName()], ours, out.CommandID, l.SF.Seen, now)
	}
	return res
}

// statusBack writes status to the Opportunity's sync status (and its mark to the Name) and remembers it
// on the link.
func (m Decider) statusBack(l *contracts.Link, cause, status string) *Command[contracts.OpportunityCommand] {
	if r := []rune(status); len(r) > syncStatusLength {
		status = string(r[:syncStatusLength])
	}
	l.Status = status
	fields := map[string]any{sf.FieldSyncStatus: status}
	m.markName(*l, fields, status)
	return &Command[contracts.OpportunityCommand]{
		ID: contracts.EventID("cmd", "sf", l.ID, "status", cause),
		Data: contracts.OpportunityCommand{
			LinkID: l.ID, Op: contracts.OpUpdate, OpportunityID: l.OpportunityID, ReferralID: l.ReferralID,
			Purpose: PurposeStatus, Cause: cause, Fields: fields,
		},
	}
}

// syncStatusLength is the length of the Sync Status field (deploy/salesforce).
const syncStatusLength = 255

// FailedStatus is the sync status of a failed write: "✖ <reason> (cosell links get <opportunityId>)",
// the reason cut so the command that shows the whole failure (the link and its timeline, where the failed
// entry and its dead letter are) always fits the field.
func FailedStatus(reason, opportunityID string) string {
	hint := " (cosell links get " + opportunityID + ")"
	room := syncStatusLength - len([]rune(mapping.MarkFailed+" ")) - len([]rune(hint))
	if r := []rune(reason); len(r) > room {
		reason = strings.TrimSpace(string(r[:room-1])) + "…"
	}
	return mapping.MarkFailed + " " + reason + hint
}

// markName puts the Opportunity Name with the sync mark of status into fields, when the mapping marks
// names (nameMark) and maps the Name; the deal's name is the one fields carry, else the one the link knows.
func (m Decider) markName(l contracts.Link, fields map[string]any, status string) {
	r, ok := m.NameRule()
	if !ok || !m.NameMark {
		return
	}
	if status == "" {
		status = StatusInStep
	}
	name := text(fields[sf.FieldName])
	if name == "" {
		name = text(l.SF.Latest[r.Name])
	}
	if name == "" {
		name = text(l.Synced[r.Name])
	}
	if name != "" {
		fields[sf.FieldName] = m.MarkedName(name, status)
	}
}

func (m Decider) decision(l contracts.Link, o Observation, kind, detail string, fields []string, now time.Time) contracts.Decision {
	d := contracts.Decision{
		LinkID: l.ID, ReferralID: l.ReferralID, OpportunityID: l.OpportunityID, Stage: contracts.StageMapper,
		Kind: kind, Fields: fields, Detail: detail, Cause: o.EventID, At: now,
	}
	if kind == contracts.DecisionApplied || kind == contracts.DecisionCreated {
		d.Target = o.System.Other()
	}
	return d
}

// project keeps the values of fields that travel to side to at all.
func (m Decider) project(v mapping.Values, to contracts.System) mapping.Values {
	out := make(mapping.Values, len(v))
	for k, x := range v {
		if m.Reach(k, to) != mapping.Never {
			out[k] = x
		}
	}
	return out
}

// fingerprint identifies the mapped values a side keeps in sync (the fields that always travel to it), to
// recognise our own writes when they come back.
func (m Decider) fingerprint(v mapping.Values, sys contracts.System) string {
	keys := make([]string, 0, len(v))
	for k, x := range v {
		if m.Reach(k, sys) == mapping.Always && !mapping.IsBlank(x) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys) // as encoding/json sorts a map's keys
	buf := fingerprintBuffers.Get().(*[]byte)
	defer fingerprintBuffers.Put(buf)
	b, ok := appendJSONObject((*buf)[:0], v, keys)
	if !ok {
		p := mapping.Values{}
		for _, k := range keys {
			p[k] = v[k]
		}
		b, _ = json.Marshal(p)
	} else if cap(b) <= 64<<10 {
		*buf = b // grown: keep the larger buffer (not one huge value's)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// fingerprintBuffers hold the encodings fingerprints hash (appendJSON's buffer escapes, so a fresh one
// would be allocated for every fingerprint).
var fingerprintBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (m Decider) fieldNames() []string {
	names := make([]string, len(m.Fields))
	for i, f := range m.Fields {
		names[i] = f.Name
	}
	return names
}

// text is a string value, or "" for any other.
func text(x any) string {
	s, _ := x.(string)
	return s
}

// cloneValues is a copy of v (an empty map for nil) made in one allocation of its size.
func cloneValues(v map[string]any) mapping.Values {
	if v == nil {
		return mapping.Values{}
	}
	return maps.Clone(v)
}

// cloneLink is the link a decision works on: a copy of the record that shares its maps, because a
// decision never changes a map of a link in place: each change makes a new one (agreed, with, without,
// and the outcome's Latest), so the link it was given, which the mapper's cache shares with the next
// decisions, stays as it was (TestDecisionsLeaveTheirLinkAlone), and a decision copies only the maps it
// changes instead of every map of the link.
func cloneLink(l contracts.Link) contracts.Link {
	return l
}

// with is m with k set to v, as a new map.
func with[V any](m map[string]V, k string, v V) map[string]V {
	next := make(map[string]V, len(m)+1)
	maps.Copy(next, m)
	next[k] = v
	return next
}

// without is m without k, as a new map (m itself when it has no k).
func without[V any](m map[string]V, k string) map[string]V {
	if _, ok := m[k]; !ok {
		return m
	}
	next := maps.Clone(m)
	delete(next, k)
	return next
}
