package sfemu

// Change Data Capture: every committed write to a change-tracked object becomes a change event on the
// emulated event bus, as Salesforce's CDC publishes it (Change Data Capture Developer Guide: "Change Event
// Header Fields", "Change Event Body Fields", "Bitmap Fields"; the facts are summarised in
// shared/reference/salesforce.md). The events are Avro-encoded with a schema generated from the object's
// fields and kept 72 hours; pubsub.go serves them over the Pub/Sub API.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub/pubsubpb"
)

// Change types of the ChangeEventHeader.
const (
	changeCreate   = "CREATE"
	changeUpdate   = "UPDATE"
	changeDelete   = "DELETE"
	changeUndelete = "UNDELETE"
	gapOverflow    = "GAP_OVERFLOW"
)

// Retention is how long the event bus keeps change events (Salesforce: 72 hours, nothing guaranteed beyond).
const Retention = 72 * time.Hour

// AllChangeEvents is the standard channel carrying the change events of every tracked object.
const AllChangeEvents = "/data/ChangeEvents"

// cdcObjects are the objects whose changes are published, as an admin selects them in Setup → Change Data
// Capture. Note and User are not among them (Note does not support CDC); Contact, Lead and
// OpportunityContactRole do (Change Data Capture Developer Guide, "Change Event Object Support").
var cdcObjects = []string{"Account", "Opportunity", "OpportunityTeamMember", "OpportunityContactRole", "Contact", "Microsoft_Solution__c", "Lead"}

// compoundSpec is a compound field of a change event: its components are no top-level fields of the schema
// but a nested record in the compound's place (Change Data Capture Developer Guide, "Get Compound Fields in
// Change Events": a Lead's Name and Address; a component's name may differ from the object's field, as
// BillingAddress.Street is Account.BillingStreet).
type compoundSpec struct {
	name, record string      // the event field and its Avro record type
	at           string      // the object field whose place in the field order the compound takes
	parts        [][2]string // component name, object field; components the object lacks are left out
}

// compounds are the compound fields of the emulated objects' change events. Only Lead's are modelled so
// far; Account's and Contact's addresses and names are still flat fields in their events.
var compounds = map[string][]compoundSpec{
	"Lead": {
		{name: "Name", record: "Switchable_PersonName", at: "Name",
			parts: [][2]string{{"Salutation", "Salutation"}, {"FirstName", "FirstName"}, {"LastName", "LastName"}}},
		{name: "Address", record: "Address", at: "Street",
			parts: [][2]string{{"Street", "Street"}, {"City", "City"}, {"State", "State"}, {"PostalCode", "PostalCode"}, {"Country", "Country"}}},
	},
}

// change is one write of the call in progress.
type change struct {
	obj           *object
	typ           string
	id            string
	before, after record
	actor         string
}

func (s *store) journalize(c change, undo *undoLog) {
	n := len(s.journal)
	s.journal = append(s.journal, c)
	undo.add(func() { s.journal = s.journal[:n] })
}

// ChannelName is the per-object change channel: /data/OpportunityChangeEvent, and for a custom object
// /data/Microsoft_Solution__ChangeEvent.
func ChannelName(object string) string {
	if base, ok := strings.CutSuffix(object, "__c"); ok {
		return "/data/" + base + "__ChangeEvent"
	}
	return "/data/" + object + "ChangeEvent"
}

// changeSchema is the Avro schema of one object's change events.
type changeSchema struct {
	id      string
	json    string
	avro    avro.Schema
	obj     *object
	entries []schemaEntry // body fields in schema order; field i of the schema is entries[i-1] (0 is the header)
}

// schemaEntry is one top-level body field of a change event: an object field, or a compound of several.
type schemaEntry struct {
	field *field // a plain field; nil for a compound
	name  string // a compound's event field name
	// record is a compound's Avro record type (its full name is the union branch it is encoded as).
	record string
	parts  []compoundPart
}

// compoundPart is one component of a compound field.
type compoundPart struct {
	name  string
	field *field
}

// headerSchema is the ChangeEventHeader record, the first field of every change event.
const headerSchema = `{"type":"record","name":"ChangeEventHeader","namespace":"com.sforce.eventbus","fields":[
{"name":"entityName","type":"string"},
{"name":"recordIds","type":{"type":"array","items":"string"}},
{"name":"changeType","type":{"type":"enum","name":"ChangeType","namespace":"com.sforce.eventbus","symbols":["CREATE","UPDATE","DELETE","UNDELETE","GAP_CREATE","GAP_UPDATE","GAP_DELETE","GAP_UNDELETE","GAP_OVERFLOW","SNAPSHOT"]}},
{"name":"changeOrigin","type":"string"},
{"name":"transactionKey","type":"string"},
{"name":"sequenceNumber","type":"int"},
{"name":"commitTimestamp","type":"long"},
{"name":"commitNumber","type":"long"},
{"name":"commitUser","type":"string"},
{"name":"nulledFields","type":{"type":"array","items":"string"}},
{"name":"diffFields","type":{"type":"array","items":"string"}},
{"name":"changedFields","type":{"type":"array","items":"string"}}]}`

// avroType maps a field type to its Avro type: text and ids as string, numbers as double (int as int),
// dates as days (int, logical type date) and datetimes as epoch milliseconds (long).
func avroType(f *field) any {
	switch {
	case f.Type == typeBoolean:
		return "boolean"
	case f.Type == typeInt:
		return "int"
	case f.isNumber():
		return "double"
	case f.Type == typeDate:
		return map[string]string{"type": "int", "logicalType": "date"}
	case f.Type == typeDateTime:
		return "long"
	}
	return "string"
}

// buildChangeSchema writes the change event schema of o: the header, then every field but Id, IsDeleted
// and SystemModstamp (change events carry neither), each nullable with a null default.
func buildChangeSchema(o *object) (*changeSchema, error) {
	name := o.Name + "ChangeEvent"
	if base, ok := strings.CutSuffix(o.Name, "__c"); ok {
		name = base + "__ChangeEvent"
	}
	fields := []any{map[string]any{"name": "ChangeEventHeader", "type": json.RawMessage(headerSchema),
		"doc": "Data:ChangeEventHeader"}}
	cs := &changeSchema{obj: o}
	replaced := map[string]bool{} // object fields a compound stands for: its components, a field of its name
	for _, c := range compounds[o.Name] {
		replaced[c.name] = true
		for _, p := range c.parts {
			replaced[p[1]] = true
		}
	}
	for _, f := range o.Fields {
		if f.Name == "Id" || f.Name == "IsDeleted" || f.Name == "SystemModstamp" {
			continue
		}
		for _, c := range compounds[o.Name] {
			if c.at != f.Name {
				continue
			}
			e := schemaEntry{name: c.name, record: c.record}
			var parts []any
			for _, p := range c.parts {
				if pf := o.field(p[1]); pf != nil {
					e.parts = append(e.parts, compoundPart{name: p[0], field: pf})
					parts = append(parts, map[string]any{"name": p[0], "type": []any{"null", avroType(pf)}, "default": nil})
				}
			}
			cs.entries = append(cs.entries, e)
			fields = append(fields, map[string]any{"name": c.name, "default": nil, "type": []any{"null",
				map[string]any{"type": "record", "name": c.record, "fields": parts}}})
		}
		if replaced[f.Name] {
			continue
		}
		cs.entries = append(cs.entries, schemaEntry{field: f})
		fields = append(fields, map[string]any{"name": f.Name, "type": []any{"null", avroType(f)}, "default": nil})
	}
	b, err := json.Marshal(map[string]any{"type": "record", "name": name, "namespace": "com.sforce.eventbus",
		"fields": fields})
	if err != nil {
		return nil, err
	}
	sch, err := avro.Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("change event schema of %s: %w", o.Name, err)
	}
	sum := sha256.Sum256(b)
	cs.id, cs.json, cs.avro = base64.RawURLEncoding.EncodeToString(sum[:16]), string(b), sch
	return cs, nil
}

// value converts a stored value to its Avro form.
func (cs *changeSchema) value(f *field, v any) any {
	if v == nil {
		return nil
	}
	switch f.Type {
	case typeInt:
		if x, ok := v.(float64); ok {
			return int(x)
		}
	case typeDate:
		if t, err := time.Parse(dateLayout, str(v)); err == nil {
			return t
		}
		return nil
	case typeDateTime:
		if t, ok := parseDateTime(str(v)); ok {
			return t.UnixMilli()
		}
		return nil
	}
	if f.isText() || f.isID() {
		return fmt.Sprint(v)
	}
	return v
}

// fieldPos is a field's place in a change event schema: top-level field top, or component sub of the
// compound field top (sub < 0: a plain field).
type fieldPos struct{ top, sub int }

// bitmap writes field positions as Salesforce's hex bitmap: bit i is field i of the schema; the components
// of compound field p follow as "p-0x..." (Change Data Capture Developer Guide, "Bitmap Fields").
func bitmap(positions []fieldPos) []string {
	if len(positions) == 0 {
		return []string{}
	}
	top := new(big.Int)
	subs := map[int]*big.Int{}
	var order []int
	for _, p := range positions {
		if p.sub < 0 {
			top.SetBit(top, p.top, 1)
			continue
		}
		if subs[p.top] == nil {
			subs[p.top] = new(big.Int)
			order = append(order, p.top)
		}
		subs[p.top].SetBit(subs[p.top], p.sub, 1)
	}
	var out []string
	if top.BitLen() > 0 {
		out = append(out, "0x"+strings.ToUpper(top.Text(16)))
	}
	for _, p := range order {
		out = append(out, fmt.Sprintf("%d-0x%s", p, strings.ToUpper(subs[p].Text(16))))
	}
	return out
}

// busEvent is one change event on the bus.
type busEvent struct {
	seq    uint64
	at     time.Time
	entity string
	event  *pubsubpb.ProducerEvent
}

// eventBus is the emulated event bus; guarded by the Emulator's mutex.
type eventBus struct {
	schemas  map[string]*changeSchema // by schema id
	byObject map[string]*changeSchema // by object name
	events   []*busEvent              // retained, oldest first
	seq      uint64                   // the last sequence number given
	epoch    uint32                   // changes when the stream is reset: older replay ids become invalid
	commits  int64
	wake     chan struct{} // closed (and replaced) whenever subscribers should look again
	gapNext  int           // the next n changes are published as GAP_ events
	// overflowAt >= 0: the next transaction publishes change events for its first overflowAt record
	// changes only, and one GAP_OVERFLOW per object for the rest; -1: off.
	overflowAt int
	resets     uint64 // counts stream resets; open subscriptions end when it moves
}

func newEventBus(st *store) (*eventBus, error) {
	b := &eventBus{schemas: map[string]*changeSchema{}, byObject: map[string]*changeSchema{}, wake: make(chan struct{}),
		epoch: 1, overflowAt: -1}
	for _, name := range cdcObjects {
		o := st.schema.object(name)
		if o == nil {
			continue
		}
		cs, err := buildChangeSchema(o)
		if err != nil {
			return nil, err
		}
		b.schemas[cs.id], b.byObject[o.Name] = cs, cs
	}
	return b, nil
}

func (b *eventBus) notify() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// replayID encodes a position: the epoch and the sequence number. Clients must treat it as opaque.
func (b *eventBus) replayID(seq uint64) []byte {
	out := make([]byte, 12)
	binary.BigEndian.PutUint32(out, b.epoch)
	binary.BigEndian.PutUint64(out[4:], seq)
	return out
}

// position reads a replay id; ok is false when it is malformed, from another epoch, or older than what
// the bus still retains (past the retention window).
func (b *eventBus) position(id []byte) (uint64, bool) {
	if len(id) != 12 || binary.BigEndian.Uint32(id) != b.epoch {
		return 0, false
	}
	seq := binary.BigEndian.Uint64(id[4:])
	if seq > b.seq {
		return 0, false
	}
	oldest := b.seq + 1
	if len(b.events) > 0 {
		oldest = b.events[0].seq
	}
	if seq+1 < oldest {
		return 0, false
	}
	return seq, true
}

// trim drops the events past the retention window.
func (b *eventBus) trim(now time.Time) {
	cut := 0
	for cut < len(b.events) && now.Sub(b.events[cut].at) > Retention {
		cut++
	}
	b.events = b.events[cut:]
}

// header is a ChangeEventHeader.
type header struct {
	entity, typ, origin, txKey, user string
	ids                              []string
	seq                              int
	commitMs, commitNumber           int64
	nulled, diff, changed            []string
}

func (b *eventBus) publish(now time.Time, cs *changeSchema, h header, body map[string]any) error {
	if h.nulled == nil {
		h.nulled = []string{}
	}
	if h.changed == nil {
		h.changed = []string{}
	}
	rec := map[string]any{}
	for _, e := range cs.entries {
		if e.field != nil {
			rec[e.field.Name] = body[e.field.Name]
			continue
		}
		// A compound: the components the change carries, nested (the others null); null when it carries none.
		var nested map[string]any
		for _, p := range e.parts {
			if v, ok := body[p.field.Name]; ok {
				if nested == nil {
					nested = map[string]any{}
				}
				nested[p.name] = v
			}
		}
		if nested != nil {
			for _, p := range e.parts {
				if _, ok := nested[p.name]; !ok {
					nested[p.name] = nil
				}
			}
			rec[e.name] = map[string]any{"com.sforce.eventbus." + e.record: nested}
		} else {
			rec[e.name] = nil
		}
	}
	rec["ChangeEventHeader"] = map[string]any{"entityName": h.entity, "recordIds": h.ids, "changeType": h.typ,
		"changeOrigin": h.origin, "transactionKey": h.txKey, "sequenceNumber": h.seq, "commitTimestamp": h.commitMs,
		"commitNumber": h.commitNumber, "commitUser": h.user, "nulledFields": h.nulled, "diffFields": []string{},
		"changedFields": h.changed}
	payload, err := avro.Marshal(cs.avro, rec)
	if err != nil {
		return fmt.Errorf("encode %s change event for %v: %w", h.entity, h.ids, err)
	}
	b.seq++
	b.events = append(b.events, &busEvent{seq: b.seq, at: now, entity: h.entity,
		event: &pubsubpb.ProducerEvent{Id: newUUID(), SchemaId: cs.id, Payload: payload}})
	b.trim(now)
	return nil
}

func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6], u[8] = u[6]&0x0f|0x40, u[8]&0x3f|0x80
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// changeOrigin is what CDC writes into changeOrigin for a call: the API and version, and the client named
// in the Sforce-Call-Options header ("com/salesforce/api/rest/62.0;client=cosell"); "" for writes made in
// the UI (the emulator's Go and control-API writes).
func changeOrigin(r *http.Request, version string) string {
	if r == nil {
		return ""
	}
	origin := "com/salesforce/api/rest/" + strings.TrimPrefix(version, "v")
	for _, opt := range strings.Split(r.Header.Get("Sforce-Call-Options"), ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(opt), "="); ok && strings.EqualFold(k, "client") && v != "" {
			origin += ";client=" + v
		}
	}
	return origin
}

// pending is one event being built from the journal: identical changes to several records of one object
// in one transaction merge into one event naming them all.
type pending struct {
	cs      *changeSchema
	typ     string
	ids     []string
	user    string
	body    map[string]any
	changed []fieldPos
	nulled  []fieldPos
	key     string // what must be equal for two changes to merge
}

// commitChanges turns the journal of the call that just ended into change events (one transaction) and
// wakes the subscribers. Call with e.mu held.
func (e *Emulator) commitChanges(origin string) {
	journal := e.st.journal
	e.st.journal = nil
	if e.bus == nil || len(journal) == 0 {
		return
	}
	var out []*pending
	var overflow []*changeSchema // objects with changes past the overflow threshold, in order
	changes := 0
	for _, c := range journal {
		cs := e.bus.byObject[c.obj.Name]
		if cs == nil {
			continue
		}
		if changes++; e.bus.overflowAt >= 0 && changes > e.bus.overflowAt {
			if !slices.Contains(overflow, cs) {
				overflow = append(overflow, cs)
			}
			continue
		}
		p := e.pendingChange(cs, c)
		if n := len(out); n > 0 && out[n-1].key == p.key {
			out[n-1].ids = append(out[n-1].ids, c.id)
			out[n-1].body = p.body // the newest LastModifiedDate
			continue
		}
		out = append(out, p)
	}
	e.bus.overflowAt = -1
	if len(out) == 0 && len(overflow) == 0 {
		return
	}
	now := e.now()
	commit := time.Time{} // the transaction's commit time: its writes' SystemModstamp
	for _, c := range journal {
		if t, ok := parseDateTime(str(c.after["SystemModstamp"])); ok && t.After(commit) {
			commit = t
		}
	}
	if commit.IsZero() {
		commit = now
	}
	e.bus.commits++
	tx := newUUID()
	for i, p := range out {
		typ := p.typ
		if e.bus.gapNext > 0 {
			e.bus.gapNext--
			typ, p.body, p.changed, p.nulled = "GAP_"+typ, nil, nil, nil
		}
		h := header{entity: p.cs.obj.Name, typ: typ, origin: origin, txKey: tx, user: p.user, ids: p.ids, seq: i + 1,
			commitMs: commit.UnixMilli(), commitNumber: e.bus.commits, changed: bitmap(p.changed), nulled: bitmap(p.nulled)}
		if err := e.bus.publish(now, p.cs, h, p.body); err != nil {
			e.log.Error("salesforce emulator: change event not published", "entity", h.entity, "ids", h.ids, "err", err)
		}
	}
	for i, cs := range overflow {
		// Header fields only, no record ids (Change Data Capture Developer Guide, "Overflow Events").
		h := header{entity: cs.obj.Name, typ: gapOverflow, origin: origin, txKey: tx, user: e.userID, ids: []string{},
			seq: len(out) + i + 1, commitMs: commit.UnixMilli(), commitNumber: e.bus.commits}
		if err := e.bus.publish(now, cs, h, nil); err != nil {
			e.log.Error("salesforce emulator: overflow event not published", "entity", h.entity, "err", err)
		}
	}
	e.bus.notify()
}

// pendingChange builds the event body and bitmaps of one write. CREATE and UNDELETE carry every non-null
// field; UPDATE carries the changed fields (changedFields, with nulledFields for the ones set to null);
// DELETE carries none.
func (e *Emulator) pendingChange(cs *changeSchema, c change) *pending {
	p := &pending{cs: cs, typ: c.typ, ids: []string{c.id}, user: c.actor, body: map[string]any{}}
	if p.user == "" {
		p.user = e.userID
	}
	var sig []string
	for i, e := range cs.entries {
		parts := []compoundPart{{field: e.field}}
		if e.field == nil {
			parts = e.parts
		}
		for j, part := range parts {
			f, pos := part.field, fieldPos{top: i + 1, sub: -1}
			if e.field == nil {
				pos.sub = j
			}
			after := c.after[f.Name]
			switch c.typ {
			case changeCreate, changeUndelete:
				if after != nil {
					p.body[f.Name] = cs.value(f, after)
				}
			case changeUpdate:
				if reflect.DeepEqual(c.before[f.Name], after) {
					continue
				}
				p.changed = append(p.changed, pos)
				if after == nil {
					p.nulled = append(p.nulled, pos)
				} else {
					p.body[f.Name] = cs.value(f, after)
				}
			}
			if f.Name == "CreatedDate" || f.Name == "LastModifiedDate" {
				continue // differ from record to record of one transaction without making the change different
			}
			if v, ok := p.body[f.Name]; ok {
				sig = append(sig, fmt.Sprintf("%s=%v", f.Name, v))
			}
		}
	}
	if c.typ == changeCreate || c.typ == changeUndelete {
		sig = append(sig, "id="+c.id) // creates merge only when identical, which distinct records never are
	}
	sort.Strings(sig)
	p.key = fmt.Sprintf("%s|%s|%s|%v|%v|%s", cs.obj.Name, c.typ, p.user, p.changed, p.nulled, strings.Join(sig, ";"))
	return p
}

// undelete restores a deleted record from the Recycle Bin, as a user does in the UI. Call with e.mu held.
func (e *Emulator) undelete(obj, id string) *APIError {
	o, norm, err := e.recordRef(obj, id)
	if err != nil {
		return err
	}
	tb := e.st.tables[o]
	old := tb.rows[norm]
	if old == nil {
		return errNotFound()
	}
	if old["IsDeleted"] != true {
		return badRequest("UNDELETE_FAILED", "Entity is not in the recycle bin").withFields()
	}
	r := old.clone()
	t := e.st.stamp().Format(dateTimeLayout)
	r["IsDeleted"], r["LastModifiedDate"], r["SystemModstamp"], r["LastModifiedById"] = false, t, t, e.userID
	tb.rows[norm] = r
	e.st.journalize(change{obj: o, typ: changeUndelete, id: norm, before: old, after: r, actor: e.userID}, nil)
	return nil
}

// recordRef resolves an object name and a record id given by a caller.
func (e *Emulator) recordRef(obj, id string) (*object, string, *APIError) {
	o := e.st.schema.object(obj)
	if o == nil {
		return nil, "", errNotFound()
	}
	norm, err := pathID(o, id)
	if err != nil {
		return nil, "", err
	}
	return o, norm, nil
}

// Delete deletes a record (and its cascading children) as a user does in the UI.
func (e *Emulator) Delete(obj, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.commitChanges("")
	o, norm, err := e.recordRef(obj, id)
	if err != nil {
		return err
	}
	if err := e.st.remove(o, norm, writeOpts{actor: e.userID}); err != nil {
		return err
	}
	return nil
}

// Undelete restores a deleted record (UNDELETE change event), as a user does from the Recycle Bin.
func (e *Emulator) Undelete(obj, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.commitChanges("")
	if err := e.undelete(obj, id); err != nil {
		return err
	}
	return nil
}

// UpdateAll changes several records in one transaction, as a mass update in the UI or one Data Loader
// batch does: identical changes become one change event naming every record. Each record holds its Id.
func (e *Emulator) UpdateAll(obj string, records []map[string]any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var undo undoLog
	for _, r := range records {
		fields := map[string]any{}
		for k, v := range r {
			if !strings.EqualFold(k, "Id") {
				fields[k] = v
			}
		}
		id, _ := r["Id"].(string)
		if err := e.updateWith(obj, id, fields, &undo); err != nil {
			undo.rollback()
			e.st.journal = nil
			return fmt.Errorf("record %s: %w", id, err)
		}
	}
	e.commitChanges("")
	return nil
}

// SetPubSubKeepAlive changes how long an idle Subscribe stream waits before a keepalive FetchResponse.
func (e *Emulator) SetPubSubKeepAlive(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts.PubSubKeepAlive = d
}

// GapNextChanges makes the next n change events gap events (GAP_CREATE, GAP_UPDATE, ...: no field data),
// as Salesforce publishes when it cannot generate a change event.
func (e *Emulator) GapNextChanges(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bus.gapNext = n
}

// Overflow publishes a GAP_OVERFLOW event for obj, as Salesforce does when a transaction changes too many
// records: the subscriber must re-read the object's changes by REST.
func (e *Emulator) Overflow(obj string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	cs := e.bus.byObject[obj]
	if cs == nil {
		return fmt.Errorf("sfemu: %s has no change events (tracked: %s)", obj, strings.Join(cdcObjects, ", "))
	}
	now := e.now()
	e.bus.commits++
	h := header{entity: obj, typ: gapOverflow, txKey: newUUID(), user: e.userID, ids: []string{}, seq: 1,
		commitMs: now.UnixMilli(), commitNumber: e.bus.commits}
	if err := e.bus.publish(now, cs, h, nil); err != nil {
		return err
	}
	e.bus.notify()
	return nil
}

// OverflowNextTransaction makes the next transaction overflow after its first keep record changes: as
// Salesforce does past 100,000 changes in one transaction, the changes beyond get no change events but
// one GAP_OVERFLOW per object (header only, no record ids), and a subscriber must re-read them by REST.
func (e *Emulator) OverflowNextTransaction(keep int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bus.overflowAt = max(keep, 0)
}

// ExpireEvents drops every retained change event, as if the 72-hour retention window had passed: stored
// replay ids stop being valid.
func (e *Emulator) ExpireEvents() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bus.events = nil
	e.bus.notify()
}

// ResetStreams ends every open Subscribe stream with UNAVAILABLE, as a server restart or network reset
// does; subscribers must reconnect and resume from their stored replay id.
func (e *Emulator) ResetStreams() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bus.resets++
	e.bus.notify()
}

// ChangeEventCount returns how many change events the bus retains.
func (e *Emulator) ChangeEventCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.bus.events)
}
