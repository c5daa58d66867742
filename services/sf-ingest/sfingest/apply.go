package sfingest

// Snapshots built from change events. An UPDATE event carries the new values of the fields it changed, so
// when sf-ingest holds the record's last full snapshot it can apply them and publish the new snapshot
// without asking Salesforce. The rules that keep such a snapshot equal to what a REST read would return:
//
//   - the record's last snapshot is known: kept in memory (snapshotCache) from what sf-ingest published,
//     read or applied in this run, or on a miss the observed stream's last message for the record, but
//     only one this run published (a previous run's may lack an own write it dropped, see trusted);
//   - the event is newer than it: its commit time after the snapshot's version (else the snapshot may
//     already hold the change, or a later one: read);
//   - every field the event changed is one the snapshot holds as is, or one it does not show at all; a
//     lookup whose record's fields the snapshot holds (AccountId → Account.Name) needs a read;
//   - the snapshot's fields are all in the event's schema (a formula field never is: read);
//   - a child change (Microsoft Solution, team member, contact role) applies to its parent's snapshot only
//     when every value the snapshot holds of the child is on the event (a team member's or contact role's
//     CREATE needs its User's or Contact's names: read) and the child is where the snapshot says;
//   - anything else (a CREATE of an Opportunity, DELETE, UNDELETE, gap events, an Account's or Contact's
//     change of a field the snapshots show) is read by REST as before, batched per burst.
//
// The new snapshot's version is the newest of the last one's, the event's commit time and the record's new
// LastModifiedDate, as the REST path gives it (the newest SystemModstamp, or a newer commit time of the
// events naming the record): the same state gets the same event id either way.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// known is a record's last full snapshot as sf-ingest knows it.
type known struct {
	snap contracts.Opportunity
	ver  contracts.Version
	// teamIDs and roleIDs are the record ids of snap.TeamMembers and snap.Contacts, in order; nil when
	// unknown (a snapshot read from the stream does not hold them).
	teamIDs, roleIDs []string
	// published is the content (contentKey) of the record's last snapshot on the stream, if known: when
	// the snapshot held differs, it holds a change the stream lacks (a dropped own write).
	published [32]byte
	// fresh: built from the record's CREATE; the stream has no snapshot of it.
	fresh bool
}

// ahead reports whether the snapshot held differs from the stream's last one of the record.
func (k *known) ahead() bool {
	key, _ := contentKey(k.snap)
	return key != k.published
}

func (k *known) clone() *known {
	c := *k
	c.snap.Fields = make(map[string]any, len(k.snap.Fields))
	for f, v := range k.snap.Fields {
		c.snap.Fields[f] = v
	}
	c.snap.TeamMembers = slices.Clone(k.snap.TeamMembers)
	c.snap.Contacts = slices.Clone(k.snap.Contacts)
	c.snap.Solutions = slices.Clone(k.snap.Solutions)
	c.teamIDs, c.roleIDs = slices.Clone(k.teamIDs), slices.Clone(k.roleIDs)
	return &c
}

// children lists the child record ids the snapshot holds.
func (k *known) children() []string {
	out := append(slices.Clone(k.teamIDs), k.roleIDs...)
	for _, s := range k.snap.Solutions {
		out = append(out, s.ID)
	}
	return out
}

// snapshotCache holds the last full snapshot per record, bounded; safe for concurrent use (the poller and
// every channel's subscriber share it).
type snapshotCache struct {
	mu      sync.Mutex
	max     int
	records map[string]*known
	parents map[string]string // child record id → the Opportunity holding it
	// stale are records whose last snapshot on the stream is behind what sf-ingest knows (it applied an
	// own write and then let the record go, or the record stopped being synced): not filled from the stream.
	stale map[string]bool
	// trustFrom: a snapshot on the stream published before it is not trusted (an earlier run's, or from
	// before the stale set overflowed).
	trustFrom time.Time
	// prior are the stream's last snapshots of records this run has not held since they were read (nil:
	// none on the stream), for CDC.known and CDC.reflected; put forgets a record's.
	prior map[string]*contracts.OpportunityObserved
}

// notePrior notes the stream's last snapshot of a record (nil: none).
func (c *snapshotCache) notePrior(id string, o *contracts.OpportunityObserved) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.prior) >= c.max {
		c.prior = map[string]*contracts.OpportunityObserved{}
	}
	c.prior[id] = o
}

// priorOf returns the stream's last snapshot of a record as noted, and whether one was.
func (c *snapshotCache) priorOf(id string) (*contracts.OpportunityObserved, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, seen := c.prior[id]
	return o, seen
}

// defaultCache is COSELL_SF_CDC_CACHE's default.
const defaultCache = 10000

func newSnapshotCache(max int) *snapshotCache {
	if max <= 0 {
		max = defaultCache
	}
	c := &snapshotCache{max: max}
	c.reset(time.Now())
	return c
}

// reset forgets everything: a new run (this replica took the lease) has not seen what happened meanwhile.
func (c *snapshotCache) reset(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records, c.parents, c.stale, c.trustFrom = map[string]*known{}, map[string]string{}, map[string]bool{}, now
	c.prior = map[string]*contracts.OpportunityObserved{}
}

// get returns a copy of the record's snapshot, or nil.
func (c *snapshotCache) get(id string) *known {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.records[id]; k != nil {
		return k.clone()
	}
	return nil
}

// parent returns the Opportunity holding a child record, if known.
func (c *snapshotCache) parent(child string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.parents[child]
}

// put keeps k as the record's snapshot unless the one held is newer.
func (c *snapshotCache) put(k *known) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := k.snap.ID
	if old := c.records[id]; old != nil {
		if old.ver.At.After(k.ver.At) {
			return
		}
		c.drop(id, false)
	}
	c.records[id] = k
	delete(c.stale, id)
	delete(c.prior, id)
	for _, child := range k.children() {
		c.parents[child] = id
	}
	if len(c.records) > c.max { // let one go (the map's order: any); the stream still holds it
		for other, o := range c.records {
			if other != id {
				c.drop(other, o.ahead())
				break
			}
		}
	}
}

// forget drops the record; stale says the stream's last snapshot of it must not be trusted either.
func (c *snapshotCache) forget(id string, stale bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop(id, stale)
}

// forgetWhere drops every record whose snapshot field holds value, and trusts no snapshot on the stream
// published until now: an own write to a parent record (an Account) that sf-ingest dropped made all of
// them stale, and it cannot tell which the stream holds.
func (c *snapshotCache) forgetWhere(field, value string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, k := range c.records {
		if str(k.snap.Fields[field]) == value {
			c.drop(id, false)
		}
	}
	c.trustFrom, c.stale = now, map[string]bool{}
}

func (c *snapshotCache) drop(id string, stale bool) {
	if k := c.records[id]; k != nil {
		for _, child := range k.children() {
			if c.parents[child] == id {
				delete(c.parents, child)
			}
		}
		delete(c.records, id)
	}
	if !stale {
		return
	}
	c.stale[id] = true
	if len(c.stale) > c.max { // too many to remember one by one: distrust the stream up to now
		c.stale, c.trustFrom = map[string]bool{}, time.Now()
	}
}

// trusted reports whether a snapshot read from the stream can stand for the record's last known state.
func (c *snapshotCache) trusted(o contracts.OpportunityObserved) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.stale[o.Opportunity.ID] && !o.ObservedAt.Before(c.trustFrom)
}

// published notes the content of the record's snapshot now on the stream.
func (c *snapshotCache) published(id string, key [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.records[id]; k != nil {
		k.published = key
	}
}

// shape says how an object's change events map onto the snapshot sf-ingest publishes.
type shape struct {
	// held maps a field the snapshot holds as is (lower case) to its key in the snapshot's Fields.
	held map[string]string
	// types are the held fields' describe types (lower case name → "date", "datetime", "int", ...).
	types map[string]string
	// follows are lookups (lower case) whose record's fields the snapshot holds: a change needs a read.
	follows map[string]bool
}

// opportunityShape is the Opportunity snapshot's: the fields of the selection that are the Opportunity's
// own, and the lookups of the parent fields it reads (Account.Name → AccountId).
func (in *Ingest) opportunityShape(ctx context.Context) (shape, error) {
	return in.shapeOf(ctx, sf.ObjectOpportunity, in.sel.Fields)
}

func (in *Ingest) shapeOf(ctx context.Context, object string, fields []string) (shape, error) {
	desc, err := in.org.Fields(ctx, object)
	if err != nil {
		return shape{}, err
	}
	sh := shape{held: map[string]string{}, types: map[string]string{}, follows: map[string]bool{}}
	for _, f := range fields {
		rel, _, parent := strings.Cut(f, ".")
		if parent {
			for _, d := range desc {
				if strings.EqualFold(d.RelationshipName, rel) {
					sh.follows[strings.ToLower(d.Name)] = true
				}
			}
			continue
		}
		switch k := strings.ToLower(f); k {
		case "id", "systemmodstamp", "isdeleted":
		default:
			sh.held[k] = f
			sh.types[k] = desc[k].Type
		}
	}
	return sh, nil
}

// restName is the object field an event field stands for: a compound's component ("Name.FirstName" →
// FirstName, "Address.City" → City, "BillingAddress.City" → BillingCity), else the field itself.
func restName(event string) string {
	compound, part, ok := strings.Cut(event, ".")
	if !ok {
		return event
	}
	if prefix, isAddress := strings.CutSuffix(compound, "Address"); isAddress {
		return prefix + part
	}
	return part
}

// changes reads the values an UPDATE event sets on the fields the snapshot holds (snapshot key → value);
// ok is false when the event changes something only a read can show (a followed lookup, a value it does
// not carry).
func (sh shape) changes(ev sfpubsub.ChangeEvent) (map[string]any, bool) {
	out := map[string]any{}
	for _, f := range ev.Header.ChangedFields {
		k := strings.ToLower(restName(f))
		if sh.follows[k] {
			return nil, false
		}
		key, held := sh.held[k]
		if !held {
			continue // a field no snapshot shows (LastModifiedDate, Probability, ...)
		}
		raw, carried := ev.Fields[f]
		if !carried {
			return nil, false
		}
		v, ok := restValue(raw, sh.types[k])
		if !ok {
			return nil, false
		}
		out[key] = v
	}
	return out, true
}

// restValue turns a decoded Avro value into the value a REST read returns for a field of that describe
// type (JSON: numbers as float64, dates and datetimes as Salesforce's strings).
func restValue(v any, typ string) (any, bool) {
	switch x := v.(type) {
	case nil:
		return nil, true
	case string, bool, float64:
		return x, true
	case float32:
		return float64(x), true
	case time.Time:
		if typ == "date" {
			return x.UTC().Format(time.DateOnly), true
		}
		return x.UTC().Format(sfapi.TimeLayout), true
	case int:
		return restNumber(int64(x), typ), true
	case int32:
		return restNumber(int64(x), typ), true
	case int64:
		return restNumber(x, typ), true
	}
	return nil, false
}

func restNumber(n int64, typ string) any {
	switch typ {
	case "datetime":
		return time.UnixMilli(n).UTC().Format(sfapi.TimeLayout)
	case "date":
		return time.Unix(n*86400, 0).UTC().Format(time.DateOnly)
	}
	return float64(n)
}

// holdsAll reports whether every field the shape holds is in the event's schema (a formula field is
// never in a change event, so its new value would be missed).
func (c *CDC) holdsAll(ctx context.Context, schemaID string, sh shape) (bool, error) {
	c.mu.Lock()
	ok, seen := c.complete[schemaID]
	c.mu.Unlock()
	if seen {
		return ok, nil
	}
	s, err := c.PubSub.Schema(ctx, schemaID)
	if err != nil {
		return false, err
	}
	in := map[string]bool{}
	for _, name := range s.Names() {
		in[strings.ToLower(restName(name))] = true
	}
	ok = true
	for k := range sh.held {
		if !in[k] {
			ok = false
			c.In.Log.Info("change data capture: a snapshot field is not in the change event schema; its changes are read by REST",
				"schema", schemaID, "field", sh.held[k])
		}
	}
	c.mu.Lock()
	c.complete[schemaID] = ok
	c.mu.Unlock()
	return ok, nil
}

// known returns the record's last snapshot: held in memory, else the stream's last one if trusted, else nil.
func (c *CDC) known(ctx context.Context, id string) (*known, error) {
	if k := c.In.snaps.get(id); k != nil {
		return k, nil
	}
	o, err := c.prior(ctx, id)
	if err != nil {
		return nil, err
	}
	if o == nil || !c.In.snaps.trusted(*o) {
		return nil, nil
	}
	k := &known{snap: o.Opportunity, ver: o.Version}
	k.published, _ = contentKey(k.snap)
	c.In.snaps.put(k)
	return k.clone(), nil
}

// prior is the record's last snapshot on the observed stream (nil: none, or unreadable): as noted, else read
// and noted as the record's prior snapshot (one read of the stream per record until this run holds it).
func (c *CDC) prior(ctx context.Context, id string) (*contracts.OpportunityObserved, error) {
	if o, seen := c.In.snaps.priorOf(id); seen {
		return o, nil
	}
	m, err := c.In.Bus.LastMsg(ctx, contracts.StreamObserved, contracts.Subject(contracts.SubjectOpportunityObserved, id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		c.In.snaps.notePrior(id, nil)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("last snapshot of %s: %w", id, err)
	}
	c.count(func(s *CDCStats) { s.StreamReads++ })
	e, err := m.Event()
	if err != nil {
		return nil, nil // unreadable: read by REST rather than guess
	}
	o, err := platform.DataAs[contracts.OpportunityObserved](e)
	if err != nil || o.Opportunity.ID != id {
		return nil, nil
	}
	c.In.snaps.notePrior(id, &o)
	return &o, nil
}

// reflected reports whether a change event committed before this run began (one an earlier run may have
// handled before it stopped: the replay id is stored coalesced, replay.go) is already reflected in the
// observed stream's last snapshot of its record: that snapshot's version is not older than the event's
// commit time, so it was read or built after the change. Such an event costs nothing: re-reading it would
// publish the record's state now, which can be newer by cosell's own writes the earlier run dropped from
// their header (the sync status, the Audit summary), a snapshot with a new id and nothing new for the
// mapper. An event of a record this run holds, of one not on the stream, or committed after the run
// began follows the usual rules.
func (c *CDC) reflected(ctx context.Context, ev sfpubsub.ChangeEvent) (bool, error) {
	h := ev.Header
	if h.IsGap() || !h.CommitTimestamp.Before(c.began) {
		return false, nil
	}
	ids := h.RecordIDs
	parentField, tracked := cdcParents[h.EntityName]
	switch {
	case h.EntityName == sf.ObjectLead || tracked && parentField == "":
	case childSpecs[h.EntityName].parent != "":
		parent := str(ev.Fields[parentField]) // on a CREATE or UNDELETE, or an UPDATE that moved it
		if parent == "" {
			return false, nil
		}
		ids = []string{parent}
	default:
		return false, nil
	}
	for _, id := range ids {
		if c.In.snaps.get(id) != nil {
			return false, nil
		}
		p, err := c.prior(ctx, id)
		if err != nil {
			return false, err
		}
		if p == nil || !p.ObservedAt.Before(c.began) || h.CommitTimestamp.After(p.Version.At) {
			return false, nil
		}
	}
	return len(ids) > 0, nil
}

// keep notes a snapshot read by REST (row: its query row, for the child record ids) as the record's last.
func (in *Ingest) keep(snap contracts.Opportunity, ver contracts.Version, row map[string]any) {
	if in.snaps == nil {
		return
	}
	k := &known{snap: snap, ver: ver}
	k.published, _ = contentKey(snap) // the stream holds it (or, for a poll that skipped it, the same content)
	if row != nil && snap.Object == "" {
		f := sfapi.Flatten(row)
		k.teamIDs, k.roleIDs = childIDs(f[observed.RelTeamMembers]), childIDs(f[observed.RelContactRoles])
	}
	in.snaps.put(k)
}

func childIDs(v any) []string {
	m, _ := v.(map[string]any)
	list, _ := m["records"].([]any)
	var out []string
	for _, x := range list {
		if r, ok := x.(map[string]any); ok {
			out = append(out, str(r[sf.FieldID]))
		}
	}
	return out
}

// synced reports whether a snapshot is of a record cosell syncs (observed.Synced): the REST path reads
// only those.
func synced(o contracts.Opportunity) bool {
	return o.Fields[sf.FieldSyncWithPartnerCenter] == true || str(o.Fields[sf.FieldReferralIdentifier]) != ""
}

// newer is the version of a snapshot changed by an event: the newest of the last one's, the commit time
// and the record's new LastModifiedDate (when the event carries it).
func newer(v contracts.Version, ev sfpubsub.ChangeEvent) contracts.Version {
	at := v.At
	if t := ev.Header.CommitTimestamp; t.After(at) {
		at = t
	}
	if s, ok := restValue(ev.Fields["LastModifiedDate"], "datetime"); ok {
		if t, err := sfapi.ParseTime(str(s)); err == nil && t.After(at) {
			at = t
		}
	}
	if at.Equal(v.At) {
		return v
	}
	return observed.OpportunityVersionAt(at)
}

// set applies changed values to a snapshot's fields, keeping the key a REST read gave each.
func set(fields map[string]any, values map[string]any) {
	for k, v := range values {
		if _, exact := fields[k]; !exact {
			for existing := range fields {
				if strings.EqualFold(existing, k) {
					k = existing
					break
				}
			}
		}
		fields[k] = v
	}
}

// leadDerived sets what a Lead snapshot derives from its fields (observed.Lead).
func leadDerived(o *contracts.Opportunity) {
	o.ConvertedOpportunityID = ""
	if o.Fields[sf.LeadIsConverted] == true {
		o.ConvertedOpportunityID = str(o.Fields[sf.LeadConvertedOpportunityID])
	}
}

// build handles an event from what it carries when it can: it reports false when the event must be read
// by REST (burst.add). Records it changes are noted in work.built; records it cannot build while others
// of the same event it can are noted for the REST read.
func (c *CDC) build(ctx context.Context, work *burst, ev sfpubsub.ChangeEvent, echo bool) (bool, error) {
	h := ev.Header
	if c.readAll || h.IsGap() {
		return false, nil
	}
	switch h.EntityName {
	case sf.ObjectOpportunity:
		if h.ChangeType != "UPDATE" {
			return false, nil
		}
		return c.buildRecords(ctx, work, ev, c.oppShape, echo)
	case sf.ObjectLead:
		if !c.In.Leads {
			return true, nil // Leads are not synced: nothing to do
		}
		switch h.ChangeType {
		case "UPDATE":
			return c.buildRecords(ctx, work, ev, c.leadShape, echo)
		case "CREATE":
			return c.createLead(ctx, work, ev, echo)
		}
		return false, nil
	case "Account", "Contact":
		// A new Account or Contact is in no snapshot yet (the Opportunity or role naming it has its own
		// event); a change of a field no snapshot shows changes none.
		switch h.ChangeType {
		case "CREATE":
			return true, nil
		case "UPDATE":
			return !c.shows(h), nil
		}
		return false, nil
	case sf.ObjectMicrosoftSolution, sf.ObjectOpportunityTeamMember, sf.ObjectOpportunityContactRole:
		return c.buildChild(ctx, work, ev, echo)
	}
	return false, nil
}

// shows reports whether an Account's or Contact's change touches a field the snapshots show of it.
func (c *CDC) shows(h sfpubsub.Header) bool {
	held := c.parentHeld[h.EntityName]
	for _, f := range h.ChangedFields {
		if held[strings.ToLower(restName(f))] {
			return true
		}
	}
	return false
}

// buildRecords applies an UPDATE of Opportunities or Leads to their snapshots; each record it cannot
// build is read by REST.
func (c *CDC) buildRecords(ctx context.Context, work *burst, ev sfpubsub.ChangeEvent, sh shape, echo bool) (bool, error) {
	h := ev.Header
	values, ok := sh.changes(ev)
	if !ok {
		return false, nil
	}
	if ok, err := c.holdsAll(ctx, ev.SchemaID, sh); err != nil || !ok {
		return false, err
	}
	for _, id := range h.RecordIDs {
		var k *known
		if !work.reading(id) {
			var err error
			if k, err = c.known(ctx, id); err != nil {
				return false, err
			}
		}
		if k == nil || !h.CommitTimestamp.After(k.ver.At) {
			work.read(h.EntityName, id, h.CommitTimestamp)
			continue
		}
		set(k.snap.Fields, values)
		if k.snap.Object == sf.ObjectLead {
			leadDerived(&k.snap)
		}
		k.ver = newer(k.ver, ev)
		c.built(work, k, echo)
	}
	return true, nil
}

// createLead builds a new Lead's snapshot: a CREATE carries every field that is not null, and a Lead's
// snapshot holds only its own fields.
func (c *CDC) createLead(ctx context.Context, work *burst, ev sfpubsub.ChangeEvent, echo bool) (bool, error) {
	h := ev.Header
	sh := c.leadShape
	if ok, err := c.holdsAll(ctx, ev.SchemaID, sh); err != nil || !ok {
		return false, err
	}
	for _, id := range h.RecordIDs {
		if work.reading(id) || c.In.snaps.get(id) != nil {
			work.read(h.EntityName, id, h.CommitTimestamp) // seen before: not what a create should find
			continue
		}
		fields := map[string]any{sf.FieldID: id}
		for f, raw := range ev.Fields {
			k := strings.ToLower(restName(f))
			if key, held := sh.held[k]; held {
				v, ok := restValue(raw, sh.types[k])
				if !ok {
					return false, nil
				}
				fields[key] = v
			}
		}
		for _, key := range sh.held {
			if _, ok := fields[key]; !ok {
				fields[key] = nil // a create carries no null field
			}
		}
		k := &known{snap: contracts.Opportunity{ID: id, Object: sf.ObjectLead, Fields: fields}, fresh: true}
		leadDerived(&k.snap)
		k.ver = newer(contracts.Version{}, ev)
		c.built(work, k, echo)
	}
	return true, nil
}

// built keeps a snapshot an event changed: in the cache at once (the burst's later events build on it),
// and to publish after the burst's reads unless one of them read the record, or its content is what the
// stream holds already (the event changed nothing a snapshot shows). An own write (echo) is only kept.
func (c *CDC) built(work *burst, k *known, echo bool) {
	c.In.snaps.put(k)
	work.touched[k.snap.ID] = true
	if !echo && k.ahead() {
		work.built[k.snap.ID] = k
	} else {
		delete(work.built, k.snap.ID)
	}
}

// childSpec is what an Opportunity's snapshot holds of one child object.
type childSpec struct {
	parent  string   // the field naming the Opportunity
	lookups []string // fields whose change needs a read (the parent, the User or Contact named)
	create  bool     // a CREATE carries everything the snapshot holds of it
}

var childSpecs = map[string]childSpec{
	sf.ObjectMicrosoftSolution:      {parent: "Opportunity__c", create: true},
	sf.ObjectOpportunityTeamMember:  {parent: "OpportunityId", lookups: []string{"UserId"}},
	sf.ObjectOpportunityContactRole: {parent: "OpportunityId", lookups: []string{"ContactId"}},
}

// buildChild applies a child record's CREATE, UPDATE or DELETE to its parent's snapshot, when the event
// carries all the snapshot holds of it and the snapshot holds the child where expected; else false.
func (c *CDC) buildChild(ctx context.Context, work *burst, ev sfpubsub.ChangeEvent, echo bool) (bool, error) {
	h := ev.Header
	spec := childSpecs[h.EntityName]
	changed := map[string]bool{}
	for _, f := range h.ChangedFields {
		changed[strings.ToLower(f)] = true
	}
	if changed[strings.ToLower(spec.parent)] {
		return false, nil
	}
	for _, l := range spec.lookups {
		if changed[strings.ToLower(l)] {
			return false, nil
		}
	}
	switch {
	case h.ChangeType == "CREATE" && spec.create, h.ChangeType == "UPDATE", h.ChangeType == "DELETE":
	default:
		return false, nil
	}
	// Every record of the event first, then all at once: a half-applied event would be read anyway.
	type step struct {
		k  *known
		id string
	}
	var steps []step
	for _, id := range h.RecordIDs {
		parent := str(ev.Fields[spec.parent])
		if h.ChangeType != "CREATE" {
			parent = c.In.snaps.parent(id)
		}
		if parent == "" || work.reading(parent) {
			return false, nil
		}
		k := c.In.snaps.get(parent)
		if k == nil && h.ChangeType == "CREATE" {
			var err error
			if k, err = c.known(ctx, parent); err != nil {
				return false, err
			}
		}
		if k == nil || !h.CommitTimestamp.After(k.ver.At) {
			return false, nil
		}
		steps = append(steps, step{k, id})
	}
	for i, s := range steps {
		if i > 0 && steps[i-1].k.snap.ID == s.k.snap.ID {
			s.k = steps[i-1].k // several children of one parent: build on the one changed before
		}
		if !applyChild(s.k, h.EntityName, h.ChangeType, s.id, ev) {
			return false, nil
		}
		s.k.ver = newer(s.k.ver, ev)
		steps[i] = s
		c.built(work, s.k, echo)
	}
	return true, nil
}

// applyChild changes one child of k's snapshot; false when the snapshot does not hold it as the event
// expects (a create of one it has, a change of one it lacks or whose id it does not know).
func applyChild(k *known, object, change, id string, ev sfpubsub.ChangeEvent) bool {
	o := &k.snap
	has := func(name string) bool { _, ok := ev.Fields[name]; return ok }
	switch object {
	case sf.ObjectMicrosoftSolution:
		i := slices.IndexFunc(o.Solutions, func(s contracts.Solution) bool { return strings.EqualFold(s.ID, id) })
		switch change {
		case "CREATE":
			if i >= 0 {
				return false
			}
			s := contracts.Solution{ID: id, SolutionID: str(ev.Fields["Solution_Id__c"]), Name: str(ev.Fields["Name"])}
			at, _ := slices.BinarySearchFunc(o.Solutions, id, func(s contracts.Solution, id string) int { return strings.Compare(s.ID, id) })
			o.Solutions = slices.Insert(o.Solutions, at, s)
		case "UPDATE":
			if i < 0 {
				return false
			}
			if has("Name") {
				o.Solutions[i].Name = str(ev.Fields["Name"])
			}
			if has("Solution_Id__c") {
				o.Solutions[i].SolutionID = str(ev.Fields["Solution_Id__c"])
			}
		case "DELETE":
			if i < 0 {
				return false
			}
			o.Solutions = slices.Delete(o.Solutions, i, i+1)
		}
		if len(o.Solutions) == 0 {
			o.Solutions = nil
		}
	case sf.ObjectOpportunityTeamMember:
		var ok bool
		o.TeamMembers, k.teamIDs, ok = changeListed(o.TeamMembers, k.teamIDs, id, change, func(m *contracts.TeamMember) {
			if has("TeamMemberRole") {
				m.Role = str(ev.Fields["TeamMemberRole"])
			}
		})
		return ok
	case sf.ObjectOpportunityContactRole:
		var ok bool
		o.Contacts, k.roleIDs, ok = changeListed(o.Contacts, k.roleIDs, id, change, func(c *contracts.ContactRole) {
			if has("Role") {
				c.Role = str(ev.Fields["Role"])
			}
			if has("IsPrimary") {
				c.Primary = ev.Fields["IsPrimary"] == true
			}
		})
		return ok
	default:
		return false
	}
	return true
}

// changeListed updates (UPDATE) or removes (DELETE) the child id of a snapshot's list whose record ids
// are known (ids, in the list's order); false when they are not, or do not hold it.
func changeListed[T any](list []T, ids []string, id, change string, update func(*T)) ([]T, []string, bool) {
	i := slices.Index(ids, id)
	if i < 0 || len(ids) != len(list) {
		return list, ids, false
	}
	switch change {
	case "UPDATE":
		update(&list[i])
	case "DELETE":
		list, ids = slices.Delete(list, i, i+1), slices.Delete(ids, i, i+1)
	}
	if len(list) == 0 {
		list = nil
	}
	return list, ids, true
}

// absorb takes cosell's own write, dropped from the header, into the snapshots held: it publishes nothing
// (the mapper knows what it wrote), but the next seller change must build on the values Salesforce kept.
// What it cannot apply, it forgets (and the stream's last snapshot of it is stale: read by REST next time).
func (c *CDC) absorb(ctx context.Context, work *burst, ev sfpubsub.ChangeEvent) error {
	h := ev.Header
	switch h.EntityName {
	case "Account":
		if h.ChangeType == "UPDATE" && c.shows(h) {
			for _, id := range h.RecordIDs {
				c.In.snaps.forgetWhere(sf.FieldAccountID, id, time.Now())
			}
		}
		return nil
	case sf.ObjectOpportunity, sf.ObjectLead:
	default:
		return nil
	}
	var ids []string
	for _, id := range h.RecordIDs {
		if !work.reading(id) { // else the burst's read shows it
			ids = append(ids, id)
		}
	}
	ev.Header.RecordIDs = ids
	probe := newBurst()
	ok, err := c.build(ctx, probe, ev, true)
	if err != nil {
		return err
	}
	for id := range probe.touched {
		work.touched[id] = true
	}
	for _, id := range ids {
		if !ok || probe.reading(id) {
			c.In.snaps.forget(id, true)
		}
	}
	return nil
}

// newShapes learns, once per run, what the snapshots hold of each object.
func (c *CDC) newShapes(ctx context.Context) error {
	var err error
	if c.oppShape, err = c.In.opportunityShape(ctx); err != nil {
		return err
	}
	if c.In.Leads {
		if c.leadShape, err = c.In.shapeOf(ctx, sf.ObjectLead, mapping.LeadFields); err != nil {
			return err
		}
	}
	c.parentHeld = map[string]map[string]bool{"Account": {}, "Contact": {}}
	for _, f := range c.In.sel.Fields {
		if acc, ok := strings.CutPrefix(f, "Account."); ok {
			c.parentHeld["Account"][strings.ToLower(acc)] = true
		}
	}
	for _, f := range []string{"FirstName", "LastName", "Email", "Phone"} { // observed's contact role subquery
		c.parentHeld["Contact"][strings.ToLower(f)] = true
	}
	c.complete = map[string]bool{}
	return nil
}
