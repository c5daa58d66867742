package sfapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/k-capehart/go-salesforce/v2"

	"github.com/cosell-dev/cosell/services/internal/clients/apicall"
)

// CallOptions names cosell as the client of every call (Sforce-Call-Options), so Change Data Capture's
// changeOrigin and the org's API usage reports show which writes were ours.
const CallOptions = "client=cosell"

// MaxCollection is how many records one sObject Collections call may carry.
const MaxCollection = 200

// Usage is the org's daily API allowance as the last response's Sforce-Limit-Info header (or /limits) told it.
type Usage struct {
	Used, Max int
	At        time.Time
}

// Remaining is how many calls are left today; meaningful only when Known.
func (u Usage) Remaining() int { return u.Max - u.Used }

// Known reports whether any response has told the allowance yet.
func (u Usage) Known() bool { return u.Max > 0 }

// Usage returns the latest known daily API allowance.
func (c *Client) Usage() Usage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.usage
}

func (c *Client) observeLimit(h http.Header) {
	v := h.Get("Sforce-Limit-Info")
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k != "api-usage" {
			continue
		}
		usedS, maxS, ok := strings.Cut(val, "/")
		used, err1 := strconv.Atoi(usedS)
		max, err2 := strconv.Atoi(maxS)
		if ok && err1 == nil && err2 == nil {
			c.mu.Lock()
			c.usage = Usage{Used: used, Max: max, At: time.Now()}
			c.mu.Unlock()
		}
	}
}

// do sends one REST call (uri relative to /services/data/vXX.X) through go-salesforce and decodes a JSON
// answer into out. The call runs under ctx and the client's per-call timeout. It returns the HTTP status;
// errors come classified.
func (c *Client) do(ctx context.Context, op, method, uri string, body, out any) (status int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, classify(op, err) // not sent, so not counted
	}
	c.count(op)
	start := time.Now()
	defer func() { c.observeCall(op, status, err, start) }()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return 0, &Error{Op: op, Code: "JSON_ENCODE", Message: err.Error()}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	opts := []salesforce.RequestOption{salesforce.WithHeader("Sforce-Call-Options", CallOptions), withContext(ctx)}
	sf := c.session()
	resp, err := sf.DoRequest(method, uri, b, opts...)
	if expired(resp, err) {
		// The access token expired or was revoked: log in again (once, whichever call saw it first) and retry.
		if lerr := c.relogin(ctx, sf); lerr != nil {
			return statusOf(resp), lerr
		}
		resp, err = c.session().DoRequest(method, uri, b, opts...)
	}
	if resp != nil {
		c.observeLimit(resp.Header)
	}
	if err != nil {
		closeBody(resp)
		e := classify(op, err)
		var se *Error
		if asError(e, &se) && se.Code == "REQUEST_LIMIT_EXCEEDED" {
			c.mu.Lock()
			if c.usage.Max > 0 {
				c.usage.Used = c.usage.Max
			}
			c.usage.At = time.Now()
			c.mu.Unlock()
		}
		return statusOf(resp), e
	}
	defer resp.Body.Close()
	data, rerr := io.ReadAll(resp.Body)
	if rerr != nil {
		return resp.StatusCode, &Error{Op: op, Code: "TRANSPORT", Message: rerr.Error(), Transient: true, Err: rerr}
	}
	if resp.StatusCode == http.StatusMultipleChoices {
		return resp.StatusCode, &Error{Op: op, Code: "MULTIPLE_CHOICES",
			Message: "the external id matches several records: " + string(data)}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, &Error{Op: op, Code: "JSON_DECODE", Message: err.Error()}
		}
	}
	return resp.StatusCode, nil
}

// withContext makes go-salesforce send the request under ctx: http.DefaultClient then stops it when ctx is
// cancelled or its deadline passes.
func withContext(ctx context.Context) salesforce.RequestOption {
	return func(r *http.Request) { *r = *r.WithContext(ctx) }
}

// closeBody releases a response nobody will read.
func closeBody(r *http.Response) {
	if r != nil && r.Body != nil {
		_ = r.Body.Close()
	}
}

// observeCall reports one call to the client's observer with the allowance as known after it.
func (c *Client) observeCall(op string, status int, err error, start time.Time) {
	if c.observe == nil {
		return
	}
	code := ""
	var se *Error
	if errors.As(err, &se) {
		code = se.Code
	} else if err != nil {
		code = "error"
	}
	u := c.Usage()
	c.observe.Observe(apicall.Call{Op: op, Status: status, Code: code, Elapsed: time.Since(start), Used: u.Used, Limit: u.Max})
}

func statusOf(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

// QueryPage is one page of a query result.
type QueryPage struct {
	TotalSize      int              `json:"totalSize"`
	Done           bool             `json:"done"`
	NextRecordsURL string           `json:"nextRecordsUrl"`
	Records        []map[string]any `json:"records"`
}

// QueryEach runs a SOQL query and calls fn with every page in turn, so memory is bounded by one page
// (up to 2,000 rows). With all, deleted and archived rows are included (queryAll), with IsDeleted.
func (c *Client) QueryEach(ctx context.Context, soql string, all bool, fn func(rows []map[string]any) error) error {
	endpoint := "query"
	if all {
		endpoint = "queryAll"
	}
	uri := "/" + endpoint + "/?q=" + url.QueryEscape(soql)
	for {
		var page QueryPage
		if _, err := c.do(ctx, endpoint, http.MethodGet, uri, nil, &page); err != nil {
			return err
		}
		if err := fn(page.Records); err != nil {
			return err
		}
		if page.Done || page.NextRecordsURL == "" {
			return nil
		}
		uri = dataRelative(page.NextRecordsURL)
	}
}

// dataRelative strips /services/data/vXX.X from a URL Salesforce returned.
func dataRelative(u string) string {
	if !strings.HasPrefix(u, "/services/data/") {
		return u
	}
	rest := strings.TrimPrefix(u, "/services/data/")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[i:]
	}
	return "/"
}

// Query runs a SOQL query and returns all its rows. Use QueryEach when the result may be large.
func (c *Client) Query(ctx context.Context, soql string) ([]map[string]any, error) {
	var rows []map[string]any
	err := c.QueryEach(ctx, soql, false, func(page []map[string]any) error {
		rows = append(rows, page...)
		return nil
	})
	return rows, err
}

// SaveResult is the answer to one record write.
type SaveResult struct {
	ID      string        `json:"id"`
	Success bool          `json:"success"`
	Created bool          `json:"created"`
	Errors  []RecordError `json:"errors"`
}

// RecordError is one per-record error in a Collections or Composite result.
type RecordError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

// Err returns the record's failure as a classified *Error, or nil when it succeeded.
func (r SaveResult) Err(op string) error {
	if r.Success {
		return nil
	}
	if len(r.Errors) == 0 {
		return &Error{Op: op, Code: "UNKNOWN_EXCEPTION", Message: "record failed without an error", Transient: true}
	}
	e := r.Errors[0]
	return &Error{Op: op, Code: e.StatusCode, Message: e.Message, Fields: e.Fields, Transient: transientCodes[e.StatusCode]}
}

// Insert creates one record and returns its id.
func (c *Client) Insert(ctx context.Context, object string, fields map[string]any) (string, error) {
	var res SaveResult
	if _, err := c.do(ctx, "insert", http.MethodPost, "/sobjects/"+object, fields, &res); err != nil {
		return "", withOp(err, "insert "+object)
	}
	return res.ID, nil
}

// Update changes fields of one record.
func (c *Client) Update(ctx context.Context, object, id string, fields map[string]any) error {
	_, err := c.do(ctx, "update", http.MethodPatch, "/sobjects/"+object+"/"+url.PathEscape(id), fields, nil)
	return withOp(err, "update "+object+" "+id)
}

// Delete deletes one record.
func (c *Client) Delete(ctx context.Context, object, id string) error {
	_, err := c.do(ctx, "delete", http.MethodDelete, "/sobjects/"+object+"/"+url.PathEscape(id), nil, nil)
	return withOp(err, "delete "+object+" "+id)
}

// Upsert creates or updates one record by an External ID field and returns the record id. Several records
// with that value are a permanent MULTIPLE_CHOICES error (go-salesforce would turn Salesforce's 300 into a
// JSON decode error).
func (c *Client) Upsert(ctx context.Context, object, externalIDField, value string, fields map[string]any) (string, error) {
	body := make(map[string]any, len(fields))
	for k, v := range fields {
		if !strings.EqualFold(k, externalIDField) {
			body[k] = v
		}
	}
	var res SaveResult
	uri := "/sobjects/" + object + "/" + externalIDField + "/" + url.PathEscape(value)
	if _, err := c.do(ctx, "upsert", http.MethodPatch, uri, body, &res); err != nil {
		return "", withOp(err, fmt.Sprintf("upsert %s %s=%s", object, externalIDField, value))
	}
	return res.ID, nil
}

func withOp(err error, op string) error {
	if e, ok := err.(*Error); ok {
		e.Op = op
	}
	return err
}

// Record is one record of a Collections call: its fields by API name (with Id for updates).
type Record map[string]any

func typed(object string, records []Record) []map[string]any {
	out := make([]map[string]any, len(records))
	for i, r := range records {
		m := make(map[string]any, len(r)+1)
		for k, v := range r {
			m[k] = v
		}
		m["attributes"] = map[string]string{"type": object}
		out[i] = m
	}
	return out
}

func checkCollection(op string, n int) error {
	if n > MaxCollection {
		return &Error{Op: op, Code: "EXCEEDED_ID_LIMIT", Message: fmt.Sprintf("%d records, at most %d a call", n, MaxCollection)}
	}
	return nil
}

// Collection is one sObject Collections write (allOrNone false: each record succeeds or fails on its
// own): a create, an update (each record with Id) or an upsert by ExternalIDField, of up to 200 records.
// Ref names it inside a Composite call (WriteAll), so a later collection's record can take a value of its
// result with Reference.
type Collection struct {
	Op              string // CollectionCreate, CollectionUpdate or CollectionUpsert
	Object          string
	ExternalIDField string // upserts only
	Records         []Record
	Ref             string
}

// The writes a Collection makes, named as the calls are counted.
const (
	CollectionCreate = "collections.create"
	CollectionUpdate = "collections.update"
	CollectionUpsert = "collections.upsert"
)

// MaxCompositeCollections is how many sObject Collections (or query) subrequests one Composite call may
// hold, of its 25 ("Composite", REST API Developer Guide: "up to 25 subrequests ... Up to 5 of these
// subrequests can be sObject Collections or query operations").
const MaxCompositeCollections = 5

// request is the call a Collection makes: method, URL relative to /services/data/vXX.X, and body.
func (col Collection) request() (method, uri string, body any, err error) {
	if err := checkCollection(col.Op, len(col.Records)); err != nil {
		return "", "", nil, err
	}
	body = map[string]any{"allOrNone": false, "records": typed(col.Object, col.Records)}
	switch col.Op {
	case CollectionCreate:
		return http.MethodPost, "/composite/sobjects", body, nil
	case CollectionUpdate:
		return http.MethodPatch, "/composite/sobjects", body, nil
	case CollectionUpsert:
		return http.MethodPatch, "/composite/sobjects/" + col.Object + "/" + col.ExternalIDField, body, nil
	}
	return "", "", nil, &Error{Op: col.Op, Code: "UNKNOWN_OPERATION", Message: "not a Collections write: " + col.Op}
}

// Write sends one Collections call and returns one result per record, in order.
func (c *Client) Write(ctx context.Context, col Collection) ([]SaveResult, error) {
	if len(col.Records) == 0 {
		return nil, nil
	}
	method, uri, body, err := col.request()
	if err != nil {
		return nil, err
	}
	var res []SaveResult
	if _, err := c.do(ctx, col.Op, method, uri, body, &res); err != nil {
		return nil, err
	}
	return res, checkResults(col.Op, len(res), len(col.Records))
}

func checkResults(op string, got, want int) error {
	if got != want {
		return &Error{Op: op, Code: "UNEXPECTED_RESPONSE", Message: fmt.Sprintf("%d results for %d records", got, want), Transient: true}
	}
	return nil
}

// WriteAll sends several Collections writes as ONE API call: one Collections call when there is one,
// else one Composite call (allOrNone false, at most MaxCompositeCollections of them), whose
// subrequests run in order, so a record may reference a value of an earlier collection's result
// (Reference). It returns each collection's results, or that collection's own error (its subrequest
// failed, e.g. PROCESSING_HALTED when a reference it holds found no value: an earlier record failed);
// err is the failure of the call as a whole, which none of them got through.
func (c *Client) WriteAll(ctx context.Context, cols []Collection) (results [][]SaveResult, errs []error, err error) {
	results, errs = make([][]SaveResult, len(cols)), make([]error, len(cols))
	if len(cols) == 1 {
		results[0], errs[0] = c.Write(ctx, cols[0])
		return results, errs, nil
	}
	if len(cols) > MaxCompositeCollections {
		return nil, nil, &Error{Op: "composite", Code: "LIMIT_EXCEEDED",
			Message: fmt.Sprintf("%d Collections writes, at most %d in one Composite call", len(cols), MaxCompositeCollections)}
	}
	reqs := make([]Subrequest, len(cols))
	for i, col := range cols {
		method, uri, body, err := col.request()
		if err != nil {
			return nil, nil, err
		}
		ref := col.Ref
		if ref == "" {
			ref = fmt.Sprintf("c%d", i)
		}
		reqs[i] = Subrequest{Method: method, URL: uri, ReferenceID: ref, Body: body}
	}
	answers, err := c.Composite(ctx, false, reqs)
	if err != nil {
		return nil, nil, err
	}
	for i, a := range answers {
		if errs[i] = a.Err(cols[i].Op); errs[i] != nil {
			continue
		}
		if jerr := json.Unmarshal(a.Body, &results[i]); jerr != nil {
			errs[i] = &Error{Op: cols[i].Op, Code: "JSON_DECODE", Message: jerr.Error()}
			continue
		}
		errs[i] = checkResults(cols[i].Op, len(results[i]), len(cols[i].Records))
	}
	return results, errs, nil
}

// Reference is a Composite reference to field of record i of the collection named ref, as an earlier
// subrequest's result: "@{ref[i].field}".
func Reference(ref string, i int, field string) string {
	return fmt.Sprintf("@{%s[%d].%s}", ref, i, field)
}

// CreateRecords creates up to 200 records in one call; each record succeeds or fails on its own.
func (c *Client) CreateRecords(ctx context.Context, object string, records []Record) ([]SaveResult, error) {
	return c.Write(ctx, Collection{Op: CollectionCreate, Object: object, Records: records})
}

// UpdateRecords updates up to 200 records (each with Id) in one call.
func (c *Client) UpdateRecords(ctx context.Context, object string, records []Record) ([]SaveResult, error) {
	return c.Write(ctx, Collection{Op: CollectionUpdate, Object: object, Records: records})
}

// UpsertRecords creates or updates up to 200 records by an External ID field (each record carries it).
func (c *Client) UpsertRecords(ctx context.Context, object, externalIDField string, records []Record) ([]SaveResult, error) {
	return c.Write(ctx, Collection{Op: CollectionUpsert, Object: object, ExternalIDField: externalIDField, Records: records})
}

// DeleteRecords deletes up to 200 records by id in one call.
func (c *Client) DeleteRecords(ctx context.Context, ids []string) ([]SaveResult, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	op := "collections.delete"
	if err := checkCollection(op, len(ids)); err != nil {
		return nil, err
	}
	var res []SaveResult
	if _, err := c.do(ctx, op, http.MethodDelete, "/composite/sobjects?allOrNone=false&ids="+url.QueryEscape(strings.Join(ids, ",")), nil, &res); err != nil {
		return nil, err
	}
	return res, checkResults(op, len(res), len(ids))
}

// Subrequest is one request of a Composite call; URL is relative to /services/data/vXX.X.
type Subrequest struct {
	Method      string
	URL         string
	ReferenceID string
	Body        any
}

// Subresponse is one answer of a Composite call.
type Subresponse struct {
	Body           json.RawMessage `json:"body"`
	HTTPStatusCode int             `json:"httpStatusCode"`
	ReferenceID    string          `json:"referenceId"`
}

// Err returns the subrequest's failure as a classified *Error, or nil.
func (s Subresponse) Err(op string) error {
	if s.HTTPStatusCode >= 200 && s.HTTPStatusCode < 300 {
		return nil
	}
	return classify(op, fmt.Errorf("%s", s.Body))
}

// Composite sends up to 25 subrequests (at most 5 of them queries or Collections) as one API call.
func (c *Client) Composite(ctx context.Context, allOrNone bool, reqs []Subrequest) ([]Subresponse, error) {
	sub := make([]map[string]any, len(reqs))
	for i, r := range reqs {
		m := map[string]any{"method": r.Method, "url": "/services/data/" + apiVersion + r.URL, "referenceId": r.ReferenceID}
		if r.Body != nil {
			m["body"] = r.Body
		}
		sub[i] = m
	}
	var out struct {
		CompositeResponse []Subresponse `json:"compositeResponse"`
	}
	if _, err := c.do(ctx, "composite", http.MethodPost, "/composite", map[string]any{"allOrNone": allOrNone, "compositeRequest": sub}, &out); err != nil {
		return nil, err
	}
	if len(out.CompositeResponse) != len(reqs) {
		return nil, &Error{Op: "composite", Code: "UNEXPECTED_RESPONSE", Transient: true,
			Message: fmt.Sprintf("%d answers for %d subrequests", len(out.CompositeResponse), len(reqs))}
	}
	return out.CompositeResponse, nil
}

// QueryURL is the relative URL of a query (or queryAll) for a Composite subrequest.
func QueryURL(soql string, all bool) string {
	if all {
		return "/queryAll/?q=" + url.QueryEscape(soql)
	}
	return "/query/?q=" + url.QueryEscape(soql)
}

// Limits reads the org's limits; it also refreshes Usage.
func (c *Client) Limits(ctx context.Context) (Usage, error) {
	var out struct {
		DailyAPIRequests struct{ Max, Remaining int } `json:"DailyApiRequests"`
	}
	if _, err := c.do(ctx, "limits", http.MethodGet, "/limits", nil, &out); err != nil {
		return c.Usage(), err
	}
	u := Usage{Used: out.DailyAPIRequests.Max - out.DailyAPIRequests.Remaining, Max: out.DailyAPIRequests.Max, At: time.Now()}
	c.mu.Lock()
	c.usage = u
	c.mu.Unlock()
	return u, nil
}

// apiVersion is the REST API version go-salesforce v2.5.2 calls.
const apiVersion = "v62.0"
