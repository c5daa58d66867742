package sfemu

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

var errNotFound = func() *APIError {
	return apiErr(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
}

func (e *Emulator) object(name string) (*object, *APIError) {
	o := e.st.schema.object(name)
	if o == nil {
		return nil, errNotFound()
	}
	return o, nil
}

func (e *Emulator) handleLimits(c *call) (int, any, *APIError) {
	max := e.opts.DailyAPILimit
	return http.StatusOK, map[string]any{
		"DailyApiRequests":         map[string]int{"Max": max, "Remaining": max - e.apiUsed},
		"DailyBulkV2QueryJobs":     map[string]int{"Max": 10000, "Remaining": 10000},
		"DailyAsyncApexExecutions": map[string]int{"Max": 250000, "Remaining": 250000},
	}, nil
}

// queryResult is the body of a query page.
type queryResult struct {
	TotalSize      int           `json:"totalSize"`
	Done           bool          `json:"done"`
	NextRecordsURL string        `json:"nextRecordsUrl,omitempty"`
	Records        []*orderedMap `json:"records"`
}

const maxCursors = 100

func (e *Emulator) handleQuery(c *call) (int, any, *APIError) {
	q := c.r.URL.Query().Get("q")
	if strings.TrimSpace(q) == "" {
		return 0, nil, badRequest("MALFORMED_QUERY", "A query string has to be specified")
	}
	pq, err := parseSOQL(q)
	if err != nil {
		return 0, nil, err
	}
	cq, err := e.st.compile(q, pq, nil)
	if err != nil {
		return 0, nil, err
	}
	rows, total := e.st.run(cq, c.segs[0] == "queryAll", c.version)
	if rows == nil {
		rows = []*orderedMap{}
	}
	if filtersOn(pq.where, "SystemModstamp") {
		// A scan by change time (a poll, a REST catch-up): counted apart, with the rows it matched, so a
		// test or the bench can tell it from a read by Id. Not an endpoint: the call is counted already.
		e.counts[ScanCount]++
		e.counts[ScanRowsCount] += total
	}
	cur := &cursor{rows: rows, total: total, batch: batchSize(c.r)}
	return http.StatusOK, e.page(c, cur, "", 0), nil
}

// ScanCount and ScanRowsCount are the keys of Counts that count the queries filtering on SystemModstamp
// (direct or in a Composite call) and the rows they matched; they are no API calls of their own.
const (
	ScanCount     = "scan.systemmodstamp"
	ScanRowsCount = "scan.systemmodstamp.rows"
)

// filtersOn reports whether a WHERE clause compares field (any case).
func filtersOn(e expr, field string) bool {
	switch x := e.(type) {
	case boolExpr:
		for _, t := range x.terms {
			if filtersOn(t, field) {
				return true
			}
		}
	case notExpr:
		return filtersOn(x.x, field)
	case cmpExpr:
		return strings.EqualFold(x.path, field)
	}
	return false
}

// batchSize reads Sforce-Query-Options: batchSize=N (200..2000, default 2000).
func batchSize(r *http.Request) int {
	n := 2000
	for _, opt := range strings.Split(r.Header.Get("Sforce-Query-Options"), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(opt), "=")
		if ok && strings.EqualFold(k, "batchSize") {
			if x, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				n = min(max(x, 200), 2000)
			}
		}
	}
	return n
}

// page returns rows[offset:offset+batch] and, when more remain, a cursor for the rest.
func (e *Emulator) page(c *call, cur *cursor, id string, offset int) queryResult {
	end := min(offset+cur.batch, len(cur.rows))
	res := queryResult{TotalSize: cur.total, Done: end >= len(cur.rows), Records: cur.rows[offset:end]}
	if !res.Done {
		if id == "" {
			e.cursorSeq++
			id = newID("01g", e.cursorSeq)
			e.cursors[id] = cur
			e.cursorOrder = append(e.cursorOrder, id)
			if len(e.cursorOrder) > maxCursors {
				delete(e.cursors, e.cursorOrder[0])
				e.cursorOrder = e.cursorOrder[1:]
			}
		}
		res.NextRecordsURL = fmt.Sprintf("/services/data/%s/%s/%s-%d", c.version, c.segs[0], id, end)
	}
	return res
}

func (e *Emulator) handleQueryMore(c *call) (int, any, *APIError) {
	locator := c.segs[1]
	i := strings.LastIndexByte(locator, '-')
	invalid := badRequest("INVALID_QUERY_LOCATOR", "invalid query locator")
	if i < 0 {
		return 0, nil, invalid
	}
	id := locator[:i]
	offset, err := strconv.Atoi(locator[i+1:])
	cur := e.cursors[id]
	if err != nil || cur == nil || offset < 0 || offset >= len(cur.rows) {
		return 0, nil, invalid
	}
	return http.StatusOK, e.page(c, cur, id, offset), nil
}

func (e *Emulator) handleGlobalDescribe(c *call) (int, any, *APIError) {
	var list []map[string]any
	for _, name := range sortedObjectNames(e.st.schema) {
		o := e.st.schema.object(name)
		list = append(list, map[string]any{"name": o.Name, "label": o.Label, "labelPlural": o.Plural,
			"keyPrefix": o.KeyPrefix, "custom": o.Custom, "createable": true, "updateable": true, "queryable": true,
			"urls": objectURLs(o, c.version)})
	}
	return http.StatusOK, map[string]any{"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": list}, nil
}

func objectURLs(o *object, version string) map[string]string {
	base := "/services/data/" + version + "/sobjects/" + o.Name
	return map[string]string{"sobject": base, "describe": base + "/describe", "rowTemplate": base + "/{ID}"}
}

func (e *Emulator) handleInfo(c *call) (int, any, *APIError) {
	o, err := e.object(c.segs[1])
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"objectDescribe": map[string]any{"name": o.Name, "label": o.Label,
		"keyPrefix": o.KeyPrefix, "custom": o.Custom, "urls": objectURLs(o, c.version)}, "recentItems": []any{}}, nil
}

func (e *Emulator) handleDescribe(c *call) (int, any, *APIError) {
	o, err := e.object(c.segs[1])
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, describe(o, c.version), nil
}

func (e *Emulator) handleCreate(c *call) (int, any, *APIError) {
	o, err := e.object(c.segs[1])
	if err != nil {
		return 0, nil, err
	}
	body, err := readObject(c.r)
	if err != nil {
		return 0, nil, err
	}
	opts := c.writeOpts()
	values, err := e.st.coerceOne(o, body, true, opts)
	if err != nil {
		return 0, nil, err
	}
	if e.lockFault() {
		return 0, nil, lockError("")
	}
	id, err := e.st.create(o, values, opts)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, saveResult{ID: id, Success: true, Errors: []resultError{}}, nil
}

func readObject(r *http.Request) (map[string]any, *APIError) {
	b, err := readBody(r)
	if err != nil {
		return nil, err
	}
	var body map[string]any
	if err := decodeBody(b, &body); err != nil {
		return nil, err
	}
	if body == nil {
		return nil, badRequest("JSON_PARSER_ERROR", "The request body is either invalid or incomplete")
	}
	return body, nil
}

func (e *Emulator) lockFault() bool {
	if e.faults.lockRows > 0 {
		e.faults.lockRows--
		return true
	}
	return false
}

func lockError(id string) *APIError {
	n := "1 records"
	if id != "" {
		n += ": " + id
	}
	return badRequest("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or %s", n)
}

func (e *Emulator) handleGet(c *call) (int, any, *APIError) {
	o, err := e.object(c.segs[1])
	if err != nil {
		return 0, nil, err
	}
	id, err := pathID(o, c.segs[2])
	if err != nil {
		return 0, nil, err
	}
	r := e.st.tables[o].rows[id]
	if r == nil || r["IsDeleted"] == true {
		return 0, nil, errNotFound()
	}
	var fields []*field
	if list := c.r.URL.Query().Get("fields"); list != "" {
		for _, name := range strings.Split(list, ",") {
			f := o.field(strings.TrimSpace(name))
			if f == nil {
				return 0, nil, badRequest("INVALID_FIELD", "No such column '%s' on entity '%s'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", strings.TrimSpace(name), o.Name)
			}
			fields = append(fields, f)
		}
	}
	return http.StatusOK, renderRecord(o, r, fields, c.version), nil
}

func (e *Emulator) handleGetByExternalID(c *call) (int, any, *APIError) {
	o, err := e.object(c.segs[1])
	if err != nil {
		return 0, nil, err
	}
	f := o.field(c.segs[2])
	if f == nil || !f.ExternalID {
		return 0, nil, apiErr(http.StatusNotFound, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: %s", c.segs[2])
	}
	ids := e.st.findByField(o, f, c.segs[3])
	switch len(ids) {
	case 0:
		return 0, nil, errNotFound()
	case 1:
		return http.StatusOK, renderRecord(o, e.st.tables[o].rows[ids[0]], nil, c.version), nil
	}
	return http.StatusMultipleChoices, recordURLs(o, ids, c.version), nil
}

func recordURLs(o *object, ids []string, version string) []string {
	urls := make([]string, len(ids))
	for i, id := range ids {
		urls[i] = "/services/data/" + version + "/sobjects/" + o.Name + "/" + id
	}
	return urls
}

func (e *Emulator) handleUpdate(c *call) (int, any, *APIError) {
	o, err := e.object(c.segs[1])
	if err != nil {
		return 0, nil, err
	}
	id, err := pathID(o, c.segs[2])
	if err != nil {
		return 0, nil, err
	}
	body, err := readObject(c.r)
	if err != nil {
		return 0, nil, err
	}
	opts := c.writeOpts()
	values, err := e.st.coerceOne(o, body, false, opts)
	if err != nil {
		return 0, nil, err
	}
	if e.lockFault() {
		return 0, nil, lockError(id)
	}
	if err := e.st.update(o, id, values, opts); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func (e *Emulator) handleDelete(c *call) (int, any, *APIError) {
	o, err := e.object(c.segs[1])
	if err != nil {
		return 0, nil, err
	}
	id, err := pathID(o, c.segs[2])
	if err != nil {
		return 0, nil, err
	}
	if e.lockFault() {
		return 0, nil, lockError(id)
	}
	if err := e.st.remove(o, id, c.writeOpts()); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// externalIDField finds the field an upsert matches on: an External ID field, or Id.
func externalIDField(o *object, name string) (*field, *APIError) {
	f := o.field(name)
	if f == nil || !f.ExternalID && f.Name != "Id" {
		return nil, apiErr(http.StatusNotFound, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: %s", name)
	}
	return f, nil
}

func (e *Emulator) handleUpsert(c *call) (int, any, *APIError) {
	o, err := e.object(c.segs[1])
	if err != nil {
		return 0, nil, err
	}
	f, err := externalIDField(o, c.segs[2])
	if err != nil {
		return 0, nil, err
	}
	body, err := readObject(c.r)
	if err != nil {
		return 0, nil, err
	}
	res, status, err := e.upsertOne(o, f, c.segs[3], body, c.writeOpts(), c.version)
	if err != nil {
		return 0, nil, err
	}
	if status == http.StatusMultipleChoices {
		return status, res.urls, nil
	}
	return status, res, nil
}

// upsertOne updates the record whose field f equals value, or creates it; with several matches it returns
// 300 and their URLs.
func (e *Emulator) upsertOne(o *object, f *field, value string, body map[string]any, opts writeOpts, version string) (saveResult, int, *APIError) {
	var matches []string
	if f.Name == "Id" {
		id, err := pathID(o, value)
		if err != nil {
			return saveResult{}, 0, err
		}
		if _, err := e.st.existing(o, id); err != nil {
			return saveResult{}, 0, err
		}
		matches = []string{id}
	} else {
		matches = e.st.findByField(o, f, value)
	}
	if len(matches) > 1 {
		return saveResult{urls: recordURLs(o, matches, version)}, http.StatusMultipleChoices, nil
	}
	if v, ok := lookupKey(body, f.Name); ok && v != nil && fmt.Sprint(v) != value {
		return saveResult{}, 0, badRequest("INVALID_FIELD",
			"The value of %s in the body does not match the value in the URL", f.Name).withFields(f.Name)
	}
	deleteKey(body, f.Name)
	create := len(matches) == 0
	values, err := e.st.coerceOne(o, body, create, opts)
	if err != nil {
		return saveResult{}, 0, err
	}
	if create {
		values[f] = value
		if f.Length > 0 && len([]rune(value)) > f.Length {
			return saveResult{}, 0, badRequest("STRING_TOO_LONG", "%s: data value too large: %s (max length=%d)", f.Label, value, f.Length).withFields(f.Name)
		}
	}
	if e.lockFault() {
		id := ""
		if !create {
			id = matches[0]
		}
		return saveResult{}, 0, lockError(id)
	}
	if create {
		id, err := e.st.create(o, values, opts)
		if err != nil {
			return saveResult{}, 0, err
		}
		return saveResult{ID: id, Success: true, Errors: []resultError{}, Created: ptr(true)}, http.StatusCreated, nil
	}
	if err := e.st.update(o, matches[0], values, opts); err != nil {
		return saveResult{}, 0, err
	}
	return saveResult{ID: matches[0], Success: true, Errors: []resultError{}, Created: ptr(false)}, http.StatusOK, nil
}

func ptr[T any](v T) *T { return &v }

func lookupKey(m map[string]any, name string) (any, bool) {
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

func deleteKey(m map[string]any, name string) {
	for k := range m {
		if strings.EqualFold(k, name) {
			delete(m, k)
		}
	}
}
