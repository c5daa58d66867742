package sfemu

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// CompositeWritesCount is the key of Counts that counts the Composite calls holding a write (a subrequest
// other than GET): each is also counted as "composite", once, as Salesforce counts it against the daily
// allowance, and its subrequests as "composite.<endpoint>"; so a Composite that writes is told from one
// that only reads (sf-ingest's snapshot queries).
const CompositeWritesCount = "composite.writes"

// Composite limits: at most 25 subrequests, of which at most 5 may be queries or sObject Collections.
const (
	maxCompositeSubrequests = 25
	maxCompositeHeavy       = 5
)

type compositeSubrequest struct {
	Method      string            `json:"method"`
	URL         string            `json:"url"`
	ReferenceID string            `json:"referenceId"`
	Body        json.RawMessage   `json:"body,omitempty"`
	HTTPHeaders map[string]string `json:"httpHeaders,omitempty"`
}

type compositeRequest struct {
	AllOrNone          bool                  `json:"allOrNone"`
	CollateSubrequests bool                  `json:"collateSubrequests"`
	CompositeRequest   []compositeSubrequest `json:"compositeRequest"`
}

type compositeSubresponse struct {
	Body           any               `json:"body"`
	HTTPHeaders    map[string]string `json:"httpHeaders"`
	HTTPStatusCode int               `json:"httpStatusCode"`
	ReferenceID    string            `json:"referenceId"`
}

var reReference = regexp.MustCompile(`@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}`)

var reRefID = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

func haltedBody() []errorBody {
	return []errorBody{{ErrorCode: "PROCESSING_HALTED",
		Message: "The transaction was rolled back since another operation in the same transaction failed."}}
}

// handleComposite runs up to 25 subrequests in order as one API call; a later subrequest may use a value of
// an earlier one's response with @{referenceId.path}. With allOrNone, one failure rolls all of them back.
func (e *Emulator) handleComposite(c *call) (int, any, *APIError) {
	b, err := readBody(c.r)
	if err != nil {
		return 0, nil, err
	}
	var req compositeRequest
	if err := decodeBody(b, &req); err != nil {
		return 0, nil, err
	}
	n := len(req.CompositeRequest)
	if n == 0 {
		return 0, nil, badRequest("JSON_PARSER_ERROR", "compositeRequest must contain at least one subrequest")
	}
	if n > maxCompositeSubrequests {
		return 0, nil, badRequest("LIMIT_EXCEEDED", "Limit Exceeded. Composite requests can have at most %d subrequests", maxCompositeSubrequests)
	}
	heavy, writes := 0, false
	seen := map[string]bool{}
	for _, sr := range req.CompositeRequest {
		writes = writes || !strings.EqualFold(sr.Method, http.MethodGet)
		if !reRefID.MatchString(sr.ReferenceID) {
			return 0, nil, badRequest("INVALID_INPUT", "Invalid referenceId: %q", sr.ReferenceID)
		}
		if seen[sr.ReferenceID] {
			return 0, nil, badRequest("INVALID_INPUT", "Duplicate referenceId provided in the request: %s", sr.ReferenceID)
		}
		seen[sr.ReferenceID] = true
		if p := sr.URL; strings.Contains(p, "/query") || strings.Contains(p, "/composite/sobjects") {
			heavy++
		}
	}
	if heavy > maxCompositeHeavy {
		return 0, nil, badRequest("LIMIT_EXCEEDED", "Limit Exceeded. A composite request can contain at most %d query or sObject Collections subrequests", maxCompositeHeavy)
	}

	if writes {
		e.counts[CompositeWritesCount]++
	}
	var undo undoLog
	results := map[string]any{} // referenceId -> decoded response body, for references
	out := make([]compositeSubresponse, n)
	failed := false
	for i, sr := range req.CompositeRequest {
		out[i].ReferenceID, out[i].HTTPHeaders = sr.ReferenceID, map[string]string{}
		if failed && req.AllOrNone {
			out[i].HTTPStatusCode, out[i].Body = http.StatusBadRequest, haltedBody()
			continue
		}
		status, body, apiErr := e.compositeOne(c, sr, results, &undo)
		if apiErr != nil {
			failed = true
			out[i].HTTPStatusCode, out[i].Body = apiErr.Status, []errorBody{{Message: apiErr.Message, ErrorCode: apiErr.Code, Fields: apiErr.Fields}}
			results[sr.ReferenceID] = asGeneric(out[i].Body) // a reference into it finds no value
			continue
		}
		out[i].HTTPStatusCode, out[i].Body = status, body
		if status == http.StatusCreated {
			if m, ok := asGeneric(body).(map[string]any); ok {
				if id, _ := m["id"].(string); id != "" {
					out[i].HTTPHeaders["Location"] = "/services/data/" + c.version + "/sobjects/" + sobjectOf(sr.URL) + "/" + id
				}
			}
		}
		results[sr.ReferenceID] = asGeneric(body)
	}
	if failed && req.AllOrNone {
		undo.rollback()
		for i := range out {
			if out[i].HTTPStatusCode < 300 {
				out[i].HTTPStatusCode, out[i].Body = http.StatusBadRequest, haltedBody()
				delete(out[i].HTTPHeaders, "Location")
			}
		}
	}
	return http.StatusOK, map[string]any{"compositeResponse": out}, nil
}

// compositeOne resolves the references of one subrequest and runs it through the same handlers as a
// direct call.
func (e *Emulator) compositeOne(c *call, sr compositeSubrequest, results map[string]any, undo *undoLog) (int, any, *APIError) {
	resolve := func(s string) (string, *APIError) {
		var refErr *APIError
		out := reReference.ReplaceAllStringFunc(s, func(m string) string {
			parts := reReference.FindStringSubmatch(m)
			v, ok := results[parts[1]]
			if !ok {
				refErr = badRequest("INVALID_REFERENCE", "Invalid reference specified. Provided referenceId ('%s') must be one of the previous referenceIds.", parts[1])
				return m
			}
			if v, ok = walk(v, parts[2]); !ok {
				// A reference that finds no value (an earlier subrequest failed, a query found no row, a
				// Collections record failed and has no id) halts the subrequest holding it, as Salesforce
				// answers: 400 PROCESSING_HALTED "Invalid reference specified. No value for <ref><path> found in
				// <ref>" (the response CumulusCI's tests hold, SFDO-Tooling/CumulusCI
				// cumulusci/tasks/salesforce/tests/test_composite.py); with allOrNone false, subrequests that
				// do not depend on it still run ("Composite Request Body": "Dependent subrequests aren't executed").
				refErr = badRequest("PROCESSING_HALTED", "Invalid reference specified. No value for %s%s found in %s", parts[1], parts[2], parts[1])
				return m
			}
			switch x := v.(type) {
			case string:
				return x
			case nil:
				return "null"
			}
			jb, _ := json.Marshal(v)
			return string(jb)
		})
		return out, refErr
	}
	rawURL, err := resolve(sr.URL)
	if err != nil {
		return 0, nil, err
	}
	var body []byte
	if len(sr.Body) > 0 && string(sr.Body) != "null" {
		s, err := resolve(string(sr.Body))
		if err != nil {
			return 0, nil, err
		}
		body = []byte(s)
	}
	u, perr := url.Parse(rawURL)
	if perr != nil || !strings.HasPrefix(u.Path, "/services/data/") {
		return 0, nil, apiErr(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	}
	method := strings.ToUpper(sr.Method)
	r, herr := http.NewRequestWithContext(c.r.Context(), method, u.String(), bytes.NewReader(body))
	if herr != nil {
		return 0, nil, badRequest("INVALID_INPUT", "invalid subrequest: %v", herr)
	}
	for k, v := range sr.HTTPHeaders {
		r.Header.Set(k, v)
	}
	segs := segments(r, "/services/data/")
	if len(segs) == 0 {
		return 0, nil, errNotFound()
	}
	if err := checkVersion(segs[0]); err != nil {
		return 0, nil, err // a subrequest is served only in a version the org serves, as a call is
	}
	name, h, routeErr := e.route(method, segs[1:])
	e.counts["composite."+name]++
	if routeErr != nil {
		return 0, nil, routeErr
	}
	if name == "composite" {
		return 0, nil, badRequest("INVALID_INPUT", "a composite request cannot contain another composite request")
	}
	return h(&call{r: r, version: segs[0], segs: segs[1:], userID: c.userID, undo: undo})
}

// asGeneric turns a handler's response body into plain JSON values, for references and headers.
func asGeneric(body any) any {
	if body == nil {
		return nil
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil
	}
	var v any
	_ = json.Unmarshal(b, &v)
	return v
}

// walk follows a reference path like ".records[0].Id" into a decoded JSON value.
func walk(v any, path string) (any, bool) {
	for path != "" {
		switch {
		case strings.HasPrefix(path, "."):
			path = path[1:]
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[path[:end]]; !ok {
				return nil, false
			}
			path = path[end:]
		case strings.HasPrefix(path, "["):
			end := strings.IndexByte(path, ']')
			i, err := strconv.Atoi(path[1:end])
			list, ok := v.([]any)
			if err != nil || !ok || i < 0 || i >= len(list) {
				return nil, false
			}
			v, path = list[i], path[end+1:]
		default:
			return nil, false
		}
	}
	return v, true
}

func sobjectOf(rawURL string) string {
	_, rest, ok := strings.Cut(rawURL, "/sobjects/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// handleUpdated lists the ids of records of a type changed between start and end (at most 30 days back),
// as GET /sobjects/{Type}/updated/ does.
func (e *Emulator) handleUpdated(c *call) (int, any, *APIError) {
	o, start, end, err := e.replicationWindow(c, 30)
	if err != nil {
		return 0, nil, err
	}
	ids := []string{}
	tb := e.st.tables[o]
	for _, id := range tb.order {
		r := tb.rows[id]
		if r["IsDeleted"] == true {
			continue
		}
		if t, ok := parseDateTime(str(r["SystemModstamp"])); ok && !t.Before(start) && t.Before(end) {
			ids = append(ids, id)
		}
	}
	return http.StatusOK, map[string]any{"ids": ids, "latestDateCovered": end.Format(dateTimeLayout)}, nil
}

// handleDeleted lists the records of a type deleted between start and end (at most 15 days back).
func (e *Emulator) handleDeleted(c *call) (int, any, *APIError) {
	o, start, end, err := e.replicationWindow(c, 15)
	if err != nil {
		return 0, nil, err
	}
	deleted := []map[string]string{}
	tb := e.st.tables[o]
	for _, id := range tb.order {
		r := tb.rows[id]
		if r["IsDeleted"] != true {
			continue
		}
		if t, ok := parseDateTime(str(r["SystemModstamp"])); ok && !t.Before(start) && t.Before(end) {
			deleted = append(deleted, map[string]string{"id": id, "deletedDate": str(r["SystemModstamp"])})
		}
	}
	earliest := e.now().UTC().Add(-15 * 24 * time.Hour).Truncate(time.Minute)
	return http.StatusOK, map[string]any{"deletedRecords": deleted, "earliestDateAvailable": earliest.Format(dateTimeLayout),
		"latestDateCovered": end.Format(dateTimeLayout)}, nil
}

// replicationWindow reads start and end of a replication call: both required, end after start, start not
// older than maxDays; end is truncated to the minute as Salesforce does.
func (e *Emulator) replicationWindow(c *call, maxDays int) (*object, time.Time, time.Time, *APIError) {
	o, err := e.object(c.segs[1])
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	q := c.r.URL.Query()
	start, ok1 := parseDateTime(q.Get("start"))
	end, ok2 := parseDateTime(q.Get("end"))
	if !ok1 || !ok2 {
		return nil, time.Time{}, time.Time{}, badRequest("INVALID_REPLICATION_DATE", "start and end are required ISO 8601 datetimes")
	}
	now := e.now().UTC()
	if end.After(now) {
		end = now
	}
	end = end.UTC().Truncate(time.Minute)
	if !start.Before(end) && !start.Equal(end) {
		return nil, time.Time{}, time.Time{}, badRequest("INVALID_REPLICATION_DATE", "start date must be before end date")
	}
	if start.Before(now.Add(-time.Duration(maxDays) * 24 * time.Hour)) {
		return nil, time.Time{}, time.Time{}, badRequest("INVALID_REPLICATION_DATE", "startDate cannot be more than %d days ago", maxDays)
	}
	return o, start.UTC(), end, nil
}
