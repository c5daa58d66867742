package sfemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	dateLayout     = "2006-01-02"
	dateTimeLayout = "2006-01-02T15:04:05.000-0700"
)

// APIError is one Salesforce error: the HTTP status it comes with, its errorCode, message and fields.
type APIError struct {
	Status  int
	Code    string
	Message string
	Fields  []string
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

func apiErr(status int, code, format string, args ...any) *APIError {
	return &APIError{Status: status, Code: code, Message: fmt.Sprintf(format, args...), Fields: []string{}}
}

func badRequest(code, format string, args ...any) *APIError {
	return apiErr(http.StatusBadRequest, code, format, args...)
}

func (e *APIError) withFields(fields ...string) *APIError {
	e.Fields = fields
	return e
}

// record is one stored row: canonical field name -> string, float64, bool or nil.
type record map[string]any

func (r record) clone() record {
	c := make(record, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}

type table struct {
	rows  map[string]record
	order []string
	// unique indexes the values of unique fields and of the fields records are found by (field name →
	// folded value → ids), built on a field's first check or look-up and kept by every insert and update after, so a write checks its unique values against the few
	// rows that ever held them instead of scanning the table. An entry can be stale (the row was rolled back
	// or changed its value since): a check re-reads each candidate row.
	unique map[string]map[string][]string
}

// foldKey is the same for any two strings strings.EqualFold calls equal (Salesforce compares unique
// text case-insensitively).
func foldKey(v string) string { return strings.ToLower(strings.ToUpper(v)) }

// uniqueCandidates returns the ids of the rows of o that held value in unique field f at some write.
func (s *store) uniqueCandidates(o *object, f *field, value string) []string {
	tb := s.tables[o]
	if tb.unique == nil {
		tb.unique = map[string]map[string][]string{}
	}
	ix, built := tb.unique[f.Name]
	if !built {
		ix = map[string][]string{}
		for _, id := range tb.order {
			if v, ok := tb.rows[id][f.Name].(string); ok {
				ix[foldKey(v)] = append(ix[foldKey(v)], id)
			}
		}
		tb.unique[f.Name] = ix
	}
	return ix[foldKey(value)]
}

// indexUnique adds a written row's unique values to the indexes built so far.
func (s *store) indexUnique(o *object, id string, r record) {
	for name, ix := range s.tables[o].unique {
		if v, ok := r[name].(string); ok {
			if k := foldKey(v); !slices.Contains(ix[k], id) {
				ix[k] = append(ix[k], id)
			}
		}
	}
}

// undoLog collects what to revert when an allOrNone call fails half way.
type undoLog []func()

func (u *undoLog) add(f func()) {
	if u != nil {
		*u = append(*u, f)
	}
}

func (u undoLog) rollback() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

type store struct {
	schema    *schema
	tables    map[*object]*table
	seq       uint64
	lastStamp time.Time
	now       func() time.Time
	currency  string // the corporate currency new records get in a multi-currency org
	// journal holds the writes of the call in progress, turned into change events when it commits
	// (cdc.go); a rolled-back write takes its entry back.
	journal []change
}

func newStore(s *schema, now func() time.Time) *store {
	st := &store{schema: s, tables: map[*object]*table{}, now: now}
	for _, o := range s.objects {
		st.tables[o] = &table{rows: map[string]record{}}
	}
	return st
}

// stamp returns the time of a write: never earlier than, and always after, the previous one, so
// SystemModstamp is strictly increasing and watermark polling never misses a write.
func (s *store) stamp() time.Time {
	t := s.now().UTC().Truncate(time.Millisecond)
	if !t.After(s.lastStamp) {
		t = s.lastStamp.Add(time.Millisecond)
	}
	s.lastStamp = t
	return t
}

func (s *store) lookup(id string) (*object, record) {
	if len(id) < 3 {
		return nil, nil
	}
	o := s.schema.byPrefix[id[:3]]
	if o == nil {
		return nil, nil
	}
	return o, s.tables[o].rows[id]
}

// writeOpts says who writes and with which privileges.
type writeOpts struct {
	actor  string // user id written to CreatedById / LastModifiedById
	system bool   // an emulator-side write (a user in the UI, a test): may set audit fields
	undo   *undoLog
	// converting is convertLead's own write of a Lead's Converted* fields (read-only to every client).
	converting bool
}

// auditFields may be set by system writes, to stage records as if written by someone else, earlier.
var auditFields = map[string]bool{"createdbyid": true, "lastmodifiedbyid": true, "createddate": true, "lastmodifieddate": true}

// decodeBody parses a JSON object body keeping numbers exact, with Salesforce's parser error.
func decodeBody(b []byte, v any) *APIError {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return badRequest("JSON_PARSER_ERROR", "%s", parserMessage(err))
	}
	if dec.More() {
		return badRequest("JSON_PARSER_ERROR", "Unexpected character after the end of the JSON object")
	}
	return nil
}

func parserMessage(err error) string {
	if se, ok := err.(*json.SyntaxError); ok {
		return fmt.Sprintf("Unexpected character: %s at [line:1, column:%d]", se.Error(), se.Offset)
	}
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		return fmt.Sprintf("Cannot deserialize instance of %s from %s value at [line:1, column:%d]",
			te.Type, te.Value, te.Offset)
	}
	return "Unexpected end of input"
}

// normalizeGo turns values given by Go callers (ints, float64, time.Time) into what JSON decoding yields.
func normalizeGo(fields map[string]any) (map[string]any, *APIError) {
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, badRequest("JSON_PARSER_ERROR", "%v", err)
	}
	var out map[string]any
	if e := decodeBody(b, &out); e != nil {
		return nil, e
	}
	return out, nil
}

// coerceOne is coerce for a single-record write, where a request-level and a record-level refusal are
// answered alike: the request-level one first.
func (s *store) coerceOne(o *object, body map[string]any, create bool, opts writeOpts) (map[*field]any, *APIError) {
	values, reqErr, recErr := s.coerce(o, body, create, opts)
	if reqErr != nil {
		return nil, reqErr
	}
	if recErr != nil {
		return nil, recErr
	}
	return values, nil
}

// coerce checks a request body against the object (unknown fields, value types, fields that cannot be
// written) and returns the values by field. Unknown fields and type errors fail the whole request in
// Salesforce, read-only fields fail the record.
func (s *store) coerce(o *object, body map[string]any, create bool, opts writeOpts) (map[*field]any, *APIError, *APIError) {
	values := map[*field]any{}
	var readOnlyFields []string
	for key, raw := range body {
		if strings.EqualFold(key, "attributes") {
			continue
		}
		f := o.field(key)
		if f == nil {
			return nil, badRequest("INVALID_FIELD", "No such column '%s' on sobject of type %s", key, o.Name).withFields(), nil
		}
		v, err := coerceValue(f, raw)
		if err != nil {
			return nil, err, nil
		}
		writable := f.Updateable
		if create {
			writable = f.Createable
		}
		if f.Name == "Id" && !create {
			writable = true // collections updates carry the id in the record; the caller checks it
		}
		if !writable && !(opts.system && auditFields[strings.ToLower(f.Name)]) {
			readOnlyFields = append(readOnlyFields, f.Name)
			continue
		}
		values[f] = v
	}
	if len(readOnlyFields) > 0 {
		return nil, nil, badRequest("INVALID_FIELD_FOR_INSERT_UPDATE",
			"Unable to create/update fields: %s. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
			strings.Join(readOnlyFields, ", ")).withFields(readOnlyFields...)
	}
	return values, nil, nil
}

func typeError(f *field, raw any) *APIError {
	kind := "VALUE_STRING"
	switch raw.(type) {
	case json.Number:
		kind = "VALUE_NUMBER"
	case bool:
		kind = "VALUE_TRUE"
	case map[string]any:
		kind = "START_OBJECT"
	case []any:
		kind = "START_ARRAY"
	}
	return badRequest("JSON_PARSER_ERROR",
		"Cannot deserialize instance of %s from %s value %v or request may be missing a required field",
		f.Type, kind, raw).withFields(f.Name)
}

func coerceValue(f *field, raw any) (any, *APIError) {
	if raw == nil {
		if f.Type == typeBoolean {
			return false, nil
		}
		return nil, nil
	}
	switch {
	case f.isText() || f.isID():
		switch v := raw.(type) {
		case string:
			if v == "" {
				return nil, nil
			}
			return v, nil
		case json.Number:
			if f.isID() {
				return nil, typeError(f, raw)
			}
			return v.String(), nil
		case bool:
			if f.isID() {
				return nil, typeError(f, raw)
			}
			return strconv.FormatBool(v), nil
		}
	case f.Type == typeBoolean:
		switch v := raw.(type) {
		case bool:
			return v, nil
		case string:
			if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
				return b, nil
			}
		}
	case f.isNumber():
		// Salesforce coerces a numeric string into a number field: its own sObject Collections example
		// sends "numberOfEmployees" : "100" (REST API Developer Guide, "Create Multiple Records"). An empty
		// string blanks the field, as for text.
		n, ok := raw.(json.Number)
		if v, isString := raw.(string); isString {
			if strings.TrimSpace(v) == "" {
				return nil, nil
			}
			n, ok = json.Number(strings.TrimSpace(v)), reDecimal.MatchString(strings.TrimSpace(v))
		}
		if ok {
			x, err := n.Float64()
			if err == nil && !math.IsInf(x, 0) && !math.IsNaN(x) {
				if f.Type == typeInt && x != math.Trunc(x) {
					break
				}
				return x, nil
			}
		}
	case f.Type == typeDate:
		if v, ok := raw.(string); ok {
			if t, ok := parseDate(v); ok {
				return t, nil
			}
		}
	case f.Type == typeDateTime:
		if v, ok := raw.(string); ok {
			if t, ok := parseDateTime(v); ok {
				return t.UTC().Format(dateTimeLayout), nil
			}
		}
	}
	return nil, typeError(f, raw)
}

// reDecimal is a JSON-style decimal number, the only numeric strings coerced.
var reDecimal = regexp.MustCompile(`^-?\d+(\.\d+)?([eE][-+]?\d+)?$`)

func parseDate(v string) (string, bool) {
	if t, err := time.Parse(dateLayout, v); err == nil {
		return t.Format(dateLayout), true
	}
	if t, ok := parseDateTime(v); ok {
		return t.UTC().Format(dateLayout), true
	}
	return "", false
}

var dateTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.000-0700",
	"2006-01-02T15:04:05-0700",
	"2006-01-02T15:04:05.000Z0700",
	"2006-01-02T15:04:05",
}

func parseDateTime(v string) (time.Time, bool) {
	for _, l := range dateTimeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// create validates and stores a new record, returning its id.
func (s *store) create(o *object, values map[*field]any, opts writeOpts) (string, *APIError) {
	if _, ok := values[o.field("Id")]; ok {
		return "", badRequest("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call").withFields("Id")
	}
	if o.readOnly && !opts.system {
		return "", badRequest("INVALID_TYPE_FOR_OPERATION", "entity type %s does not support insert", o.Name)
	}
	r := record{}
	for _, f := range o.Fields {
		r[f.Name] = f.Default
	}
	if f := o.field("CurrencyIsoCode"); f != nil {
		r[f.Name] = s.currency
	}
	if f := o.field("OwnerId"); f != nil {
		r[f.Name] = opts.actor
	}
	if err := s.apply(o, "", r, values, opts); err != nil {
		return "", err
	}
	s.seq++
	id := newID(o.KeyPrefix, s.seq)
	r["Id"] = id
	if f := o.field("Name"); f != nil && o.Custom && r["Name"] == nil {
		r["Name"] = id // Salesforce names a custom record after its id when no name is given
	}
	t := s.stamp().Format(dateTimeLayout)
	setDefault(r, "CreatedDate", t)
	setDefault(r, "LastModifiedDate", t)
	setDefault(r, "CreatedById", opts.actor)
	setDefault(r, "LastModifiedById", opts.actor)
	r["SystemModstamp"] = t
	tb := s.tables[o]
	tb.rows[id] = r
	tb.order = append(tb.order, id)
	s.indexUnique(o, id, r)
	opts.undo.add(func() {
		delete(tb.rows, id)
		tb.order = tb.order[:len(tb.order)-1]
	})
	s.journalize(change{obj: o, typ: changeCreate, id: id, after: r, actor: opts.actor}, opts.undo)
	return id, nil
}

func setDefault(r record, k string, v any) {
	if r[k] == nil {
		r[k] = v
	}
}

// update validates and applies values to an existing record.
func (s *store) update(o *object, id string, values map[*field]any, opts writeOpts) *APIError {
	old, err := s.existing(o, id)
	if err != nil {
		return err
	}
	if v, ok := values[o.field("Id")]; ok {
		if norm, _ := NormalizeID(fmt.Sprint(v)); norm != id {
			return badRequest("INVALID_ID_FIELD", "The Id field should not be specified in the sobject data.").withFields("Id")
		}
		delete(values, o.field("Id"))
	}
	if o.Name == "Lead" && old["IsConverted"] == true && !opts.converting {
		// A converted Lead is read-only to every API write (Salesforce answers CANNOT_UPDATE_CONVERTED_LEAD,
		// "cannot reference converted lead").
		return badRequest("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead").withFields()
	}
	r := old.clone()
	r["LastModifiedDate"], r["LastModifiedById"] = nil, nil
	if e := s.apply(o, id, r, values, opts); e != nil {
		return e
	}
	t := s.stamp().Format(dateTimeLayout)
	setDefault(r, "LastModifiedDate", t)
	setDefault(r, "LastModifiedById", opts.actor)
	r["SystemModstamp"] = t
	tb := s.tables[o]
	tb.rows[id] = r
	s.indexUnique(o, id, r)
	opts.undo.add(func() { tb.rows[id] = old })
	s.journalize(change{obj: o, typ: changeUpdate, id: id, before: old, after: r, actor: opts.actor}, opts.undo)
	return nil
}

// existing finds a live record of o by canonical id.
func (s *store) existing(o *object, id string) (record, *APIError) {
	r := s.tables[o].rows[id]
	if r == nil {
		return nil, apiErr(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	}
	if r["IsDeleted"] == true {
		return nil, badRequest("ENTITY_IS_DELETED", "entity is deleted")
	}
	return r, nil
}

// remove marks a record deleted (it stays visible to queryAll) and deletes its cascading children.
func (s *store) remove(o *object, id string, opts writeOpts) *APIError {
	if o.readOnly {
		return badRequest("INVALID_TYPE_FOR_OPERATION", "entity type %s does not support delete", o.Name)
	}
	old, err := s.existing(o, id)
	if err != nil {
		return err
	}
	r := old.clone()
	t := s.stamp().Format(dateTimeLayout)
	r["IsDeleted"], r["LastModifiedDate"], r["SystemModstamp"], r["LastModifiedById"] = true, t, t, opts.actor
	tb := s.tables[o]
	tb.rows[id] = r
	opts.undo.add(func() { tb.rows[id] = old })
	s.journalize(change{obj: o, typ: changeDelete, id: id, before: old, after: r, actor: opts.actor}, opts.undo)
	for _, c := range o.children {
		if !c.CascadeDelete {
			continue
		}
		ct := s.tables[c.Child]
		for _, cid := range ct.order {
			if cr := ct.rows[cid]; cr[c.Field.Name] == id && cr["IsDeleted"] != true {
				if e := s.remove(c.Child, cid, opts); e != nil {
					return e
				}
			}
		}
	}
	return nil
}

// apply validates values and merges them into r (the full record after the write); id is "" on create.
func (s *store) apply(o *object, id string, r record, values map[*field]any, opts writeOpts) *APIError {
	stageChanged := false
	for _, f := range o.Fields {
		v, given := values[f]
		if !given {
			continue
		}
		if v == nil {
			if f.Type == typePicklist && f.Restricted && f.Required {
				return badRequest("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
					"%s: bad value for restricted picklist field: null", f.Label).withFields(f.Name)
			}
			r[f.Name] = nil
			continue
		}
		switch {
		case f.isText():
			str := v.(string)
			if f.Length > 0 && len([]rune(str)) > f.Length {
				shown := str
				if len(shown) > 100 {
					shown = shown[:100] + "..."
				}
				return badRequest("STRING_TOO_LONG", "%s: data value too large: %s (max length=%d)",
					f.Label, shown, f.Length).withFields(f.Name)
			}
			if f.Type == typePicklist && f.Restricted && !contains(f.Picklist, str) {
				return badRequest("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
					"%s: bad value for restricted picklist field: %s", f.Label, str).withFields(f.Name)
			}
		case f.Type == typeReference:
			norm, err := s.checkReference(f, v.(string))
			if err != nil {
				return err
			}
			v = norm
		}
		if f.Name == "StageName" && r[f.Name] != v {
			stageChanged = true
		}
		r[f.Name] = v
	}
	var missing []string
	for _, f := range o.Fields {
		if f.Required && r[f.Name] == nil {
			missing = append(missing, f.Name)
		}
	}
	if len(missing) > 0 {
		return badRequest("REQUIRED_FIELD_MISSING", "Required fields are missing: [%s]",
			strings.Join(missing, ", ")).withFields(missing...)
	}
	for _, f := range o.Fields {
		if !f.Unique || r[f.Name] == nil {
			continue
		}
		for _, oid := range s.uniqueCandidates(o, f, r[f.Name].(string)) {
			other := s.tables[o].rows[oid]
			if other == nil || other["Id"] == id || other["IsDeleted"] == true {
				continue
			}
			if ov, ok := other[f.Name].(string); ok && strings.EqualFold(ov, r[f.Name].(string)) {
				return badRequest("DUPLICATE_VALUE",
					"duplicate value found: %s duplicates value on record with id: %s", f.Name, other["Id"]).withFields()
			}
		}
	}
	s.derive(o, r, stageChanged, values)
	return nil
}

// derive fills the fields Salesforce computes; given holds the fields the write set.
func (s *store) derive(o *object, r record, stageChanged bool, given map[*field]any) {
	isGiven := func(name string) bool {
		_, ok := given[o.field(name)]
		return ok
	}
	switch o.Name {
	case "Opportunity":
		for _, st := range opportunityStages {
			if st.Name != r["StageName"] {
				continue
			}
			r["IsClosed"], r["IsWon"] = st.Closed, st.Won
			if stageChanged && !isGiven("Probability") {
				r["Probability"] = st.Probability
			}
			if stageChanged && !isGiven("ForecastCategoryName") || r["ForecastCategoryName"] == nil {
				r["ForecastCategoryName"] = st.Forecast
			}
		}
		r["ForecastCategory"] = forecastCategories[str(r["ForecastCategoryName"])]
		r["ExpectedRevenue"] = nil
		if amount, ok := r["Amount"].(float64); ok {
			p, _ := r["Probability"].(float64)
			r["ExpectedRevenue"] = amount * p / 100
		}
		// The standard fiscal year: calendar quarters.
		if t, err := time.Parse(dateLayout, str(r["CloseDate"])); err == nil {
			q := (int(t.Month())-1)/3 + 1
			r["FiscalYear"], r["FiscalQuarter"] = float64(t.Year()), float64(q)
			r["Fiscal"] = fmt.Sprintf("%d %d", t.Year(), q)
		}
	case "User", "Contact", "Lead":
		name := strings.TrimSpace(fmt.Sprintf("%s %s", str(r["FirstName"]), str(r["LastName"])))
		r["Name"] = name
	}
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

func (s *store) checkReference(f *field, v string) (string, *APIError) {
	norm, ok := NormalizeID(v)
	if !ok {
		return "", badRequest("MALFORMED_ID", "%s: id value of incorrect type: %s", f.Label, v).withFields(f.Name)
	}
	target, r := s.lookup(norm)
	if target == nil || f.ReferenceTo != anyObject && !strings.EqualFold(target.Name, f.ReferenceTo) {
		return "", badRequest("FIELD_INTEGRITY_EXCEPTION", "%s: id value of incorrect type: %s", f.Label, v).withFields(f.Name)
	}
	if r == nil || r["IsDeleted"] == true {
		return "", badRequest("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id").withFields(f.Name)
	}
	return norm, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// findByField returns the live records of o whose field equals value (case-insensitively for text): an
// upsert's External ID, a login's Username. It looks through the field's value index (the one unique
// checks use, built on first use), not every row, so an upsert costs the same however many rows the
// table holds (it was a third of the emulator's CPU in a 2,000-record backlog).
func (s *store) findByField(o *object, f *field, value string) []string {
	var ids []string
	tb := s.tables[o]
	for _, id := range s.uniqueCandidates(o, f, value) {
		r, ok := tb.rows[id]
		if !ok {
			continue // rolled back since it was indexed
		}
		if r["IsDeleted"] == true {
			continue
		}
		if v, ok := r[f.Name].(string); ok && strings.EqualFold(v, value) {
			ids = append(ids, id)
		}
	}
	return ids
}
