package sfemu

import (
	"io/fs"
	"os"
	"slices"

	"github.com/cosell-dev/cosell/deploy/salesforce"

	"compress/gzip"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Credentials the emulator accepts when Options leaves them empty, so it runs with no configuration.
const (
	DefaultClientID     = "cosell-emulator-client"
	DefaultClientSecret = "cosell-emulator-secret"
	DefaultUsername     = "integration@cosell.example"
	DefaultPassword     = "cosell-emulator-password"
)

// Options configures an Emulator; the zero value works.
type Options struct {
	ClientID, ClientSecret, Username, Password string // accepted credentials; Password is password+security token
	MetadataDir                                string // a Salesforce DX project to load; "" = deploy/salesforce as embedded in the binary
	InstanceURL                                string // optional; default: http://{request Host}
	DailyAPILimit                              int    // default 100000
	TokenTTL                                   time.Duration
	Logger                                     *slog.Logger // may be nil
	// JWTPublicKey is the key of the certificate uploaded to the connected app: it verifies the RS256
	// signature of jwt-bearer assertions. Without one, every JWT login fails ("invalid assertion"), as on an
	// app with no certificate.
	JWTPublicKey *rsa.PublicKey
	// JWTNotPreAuthorized models a connected app whose policy does not pre-authorize the integration user:
	// JWT logins fail with "user hasn't approved this consumer".
	JWTNotPreAuthorized bool
	// SingleCurrency makes the org single-currency: no CurrencyIsoCode field on any object (describe lacks
	// it, SOQL and writes naming it get INVALID_FIELD); every amount is in Currency.
	SingleCurrency bool
	// Currency is the org's corporate currency (Organization.DefaultCurrencyIsoCode); default USD.
	Currency string
	// Sandbox makes the org a sandbox: JWT assertions must name https://test.salesforce.com as audience
	// instead of https://login.salesforce.com.
	Sandbox bool
	// PubSubKeepAlive is how long a Subscribe stream with nothing to send waits before an empty keepalive
	// FetchResponse; default 60s.
	PubSubKeepAlive time.Duration
}

type session struct {
	userID  string
	expires time.Time
}

type cursor struct {
	rows  []*orderedMap
	total int
	batch int
}

type faults struct {
	latency   time.Duration
	fail      int
	lockRows  int
	exhausted bool
}

// Emulator is an in-memory Salesforce org behind the REST API; safe for concurrent use.
type Emulator struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	ahead  atomic.Int64 // how far AdvanceClock moved the clock, in nanoseconds
	mu     sync.Mutex
	st     *store
	orgID  string
	userID string

	sessions    map[string]session
	apiUsed     int
	counts      map[string]int
	faults      faults
	cursors     map[string]*cursor
	cursorOrder []string
	cursorSeq   uint64
	bus         *eventBus // change events (cdc.go), served over the Pub/Sub API (pubsub.go)
}

// New builds an emulator with the schema of opts.MetadataDir and one seeded integration user.
func New(opts Options) (*Emulator, error) {
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = DefaultClientSecret
	}
	if opts.Username == "" {
		opts.Username = DefaultUsername
	}
	if opts.Password == "" {
		opts.Password = DefaultPassword
	}
	if opts.DailyAPILimit <= 0 {
		opts.DailyAPILimit = 100000
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 2 * time.Hour
	}
	meta := fs.FS(salesforce.Metadata)
	if opts.MetadataDir != "" {
		meta = os.DirFS(opts.MetadataDir)
	}
	if opts.Currency == "" {
		opts.Currency = currencies[0]
	}
	if !slices.Contains(currencies, opts.Currency) {
		return nil, fmt.Errorf("sfemu: currency %q is not one the emulator knows (%s)", opts.Currency, strings.Join(currencies, ", "))
	}
	sch, err := loadSchema(meta, orgShape{singleCurrency: opts.SingleCurrency, currency: opts.Currency, sandbox: opts.Sandbox})
	if err != nil {
		return nil, fmt.Errorf("sfemu: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Emulator{opts: opts, log: log, sessions: map[string]session{}, counts: map[string]int{},
		cursors: map[string]*cursor{}}
	e.now = func() time.Time { return time.Now().Add(time.Duration(e.ahead.Load())) }
	e.st = newStore(sch, func() time.Time { return e.now() })
	e.st.currency = opts.Currency
	e.orgID = newID("00D", 1)
	e.seedOrganization(sch.object("Organization"))
	user := sch.object("User")
	values, _, _ := e.st.coerce(user, map[string]any{"FirstName": "Integration", "LastName": "User",
		"Email": opts.Username, "Username": opts.Username}, true, writeOpts{system: true})
	id, apiErr := e.st.create(user, values, writeOpts{})
	if apiErr != nil {
		return nil, fmt.Errorf("sfemu: seed integration user: %w", apiErr)
	}
	r := e.st.tables[user].rows[id]
	r["CreatedById"], r["LastModifiedById"] = id, id
	e.userID = id
	e.st.journal = nil
	if e.bus, err = newEventBus(e.st); err != nil {
		return nil, fmt.Errorf("sfemu: %w", err)
	}
	return e, nil
}

// seedOrganization writes the org's one Organization row, with the org's id (the token response's id URL
// names it); its fields are read-only to every API client.
func (e *Emulator) seedOrganization(org *object) {
	r := record{}
	for _, f := range org.Fields {
		r[f.Name] = f.Default
	}
	t := e.st.stamp().Format(dateTimeLayout)
	for k, v := range map[string]any{"Id": e.orgID, "Name": "cosell emulated org", "DefaultCurrencyIsoCode": e.opts.Currency,
		"DefaultLocaleSidKey": "en_US", "OrganizationType": "Enterprise Edition", "CreatedDate": t,
		"LastModifiedDate": t, "SystemModstamp": t} {
		r[k] = v
	}
	tb := e.st.tables[org]
	tb.rows[e.orgID], tb.order = r, append(tb.order, e.orgID)
}

// OrgID is the emulated org's 18-character id, as in the token response's id URL.
func (e *Emulator) OrgID() string { return e.orgID }

// IntegrationUserID is the seeded user the API credentials log in as.
func (e *Emulator) IntegrationUserID() string { return e.userID }

// Counts returns how many calls each endpoint received (e.g. "token", "query", "sobjects.create").
func (e *Emulator) Counts() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.counts))
	for k, v := range e.counts {
		out[k] = v
	}
	return out
}

// ResetCounts zeroes the per-endpoint call counts.
func (e *Emulator) ResetCounts() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts = map[string]int{}
}

// APIUsage returns the daily API calls used and allowed, as in Sforce-Limit-Info.
func (e *Emulator) APIUsage() (used, max int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.apiUsed, e.opts.DailyAPILimit
}

// ExpireSessions invalidates every access token, as when an admin revokes sessions or they time out.
func (e *Emulator) ExpireSessions() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sessions = map[string]session{}
	e.bus.notify() // open Pub/Sub streams notice and end with the auth error
}

// SetLatency delays every API call by d (0 turns it off).
func (e *Emulator) SetLatency(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults.latency = d
}

// AdvanceClock moves the org's clock forward by d, for a test that needs time to pass without waiting
// for it (a long outage): the stamps of later writes, the commit times of their change events, session
// lifetimes and the event retention all follow it.
func (e *Emulator) AdvanceClock(d time.Duration) {
	e.ahead.Add(int64(d))
}

// FailNextCalls makes the next n API calls fail with 500 UNKNOWN_EXCEPTION.
func (e *Emulator) FailNextCalls(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults.fail = n
}

// LockNextWrites makes the next n record writes fail with UNABLE_TO_LOCK_ROW (one per record in collections).
func (e *Emulator) LockNextWrites(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults.lockRows = n
}

// ExhaustDailyLimit uses up the daily API allowance: API calls get 403 REQUEST_LIMIT_EXCEEDED.
func (e *Emulator) ExhaustDailyLimit() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.apiUsed = e.opts.DailyAPILimit
}

// ResetFaults turns off every fault and restores the full daily allowance.
func (e *Emulator) ResetFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = faults{}
	e.apiUsed = 0
}

// Insert creates a record as a Salesforce user would (same validation as the API) and returns its id.
func (e *Emulator) Insert(obj string, fields map[string]any) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.commitChanges("")
	id, err := e.insert(obj, fields)
	if err != nil {
		return "", err
	}
	return id, nil
}

func (e *Emulator) insert(obj string, fields map[string]any) (string, *APIError) {
	o := e.st.schema.object(obj)
	if o == nil {
		return "", apiErr(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	}
	body, err := normalizeGo(fields)
	if err != nil {
		return "", err
	}
	opts := writeOpts{actor: e.userID, system: true}
	values, err := e.st.coerceOne(o, body, true, opts)
	if err != nil {
		return "", err
	}
	return e.st.create(o, values, opts)
}

// Update changes a record as a Salesforce user would (same validation as the API).
func (e *Emulator) Update(obj, id string, fields map[string]any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.commitChanges("")
	if err := e.update(obj, id, fields); err != nil {
		return err
	}
	return nil
}

func (e *Emulator) update(obj, rawID string, fields map[string]any) *APIError {
	return e.updateWith(obj, rawID, fields, nil)
}

// updateWith is update recording how to revert it in undo (nil: no undo).
func (e *Emulator) updateWith(obj, rawID string, fields map[string]any, undo *undoLog) *APIError {
	o := e.st.schema.object(obj)
	if o == nil {
		return apiErr(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	}
	id, err := pathID(o, rawID)
	if err != nil {
		return err
	}
	body, err := normalizeGo(fields)
	if err != nil {
		return err
	}
	opts := writeOpts{actor: e.userID, system: true, undo: undo}
	values, err := e.st.coerceOne(o, body, false, opts)
	if err != nil {
		return err
	}
	return e.st.update(o, id, values, opts)
}

// Get returns a copy of a record (deleted ones included, with IsDeleted true).
func (e *Emulator) Get(obj, id string) (map[string]any, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	o := e.st.schema.object(obj)
	if o == nil {
		return nil, false
	}
	norm, err := pathID(o, id)
	if err != nil {
		return nil, false
	}
	r := e.st.tables[o].rows[norm]
	if r == nil {
		return nil, false
	}
	return map[string]any(r.clone()), true
}

// All returns copies of the live records of obj in creation order.
func (e *Emulator) All(obj string) []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	o := e.st.schema.object(obj)
	if o == nil {
		return nil
	}
	tb := e.st.tables[o]
	out := []map[string]any{}
	for _, id := range tb.order {
		if r := tb.rows[id]; r["IsDeleted"] != true {
			out = append(out, map[string]any(r.clone()))
		}
	}
	return out
}

// pathID checks an id given in a path against the object it must belong to.
func pathID(o *object, raw string) (string, *APIError) {
	id, ok := NormalizeID(raw)
	if !ok || id[:3] != o.KeyPrefix {
		return "", badRequest("MALFORMED_ID", "%s ID: id value of incorrect type: %s", o.Name, raw).withFields("Id")
	}
	return id, nil
}

var reVersion = regexp.MustCompile(`^v(\d+)\.(\d+)$`)

// ServeHTTP serves the OAuth token endpoint, the REST data API under /services/data/vNN.N and the
// emulator's own control endpoints under /_emulator/.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case p == "/services/oauth2/token":
		e.serveToken(w, r)
	case strings.HasPrefix(p, "/_emulator/"):
		e.serveControl(w, r, segments(r, "/_emulator/"))
	case p == "/services/data":
		// The versions list needs no session (REST API Developer Guide, "Versions").
		e.mu.Lock()
		e.counts["versions"]++
		e.mu.Unlock()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, methodNotAllowed(r.Method, "GET", "HEAD"))
			return
		}
		writeJSON(w, http.StatusOK, versions())
	case strings.HasPrefix(p, "/services/data/"):
		e.serveData(w, r, segments(r, "/services/data/"))
	default:
		writeError(w, apiErr(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist"))
	}
}

// segments splits the escaped path after prefix and unescapes each segment, so a value holding "%2F"
// stays one segment.
func segments(r *http.Request, prefix string) []string {
	raw := strings.TrimSuffix(strings.TrimPrefix(r.URL.EscapedPath(), prefix), "/")
	if raw == "" {
		return nil
	}
	parts := strings.Split(raw, "/")
	for i, s := range parts {
		if u, err := unescape(s); err == nil {
			parts[i] = u
		}
	}
	return parts
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	if body == nil {
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(body)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`[{"message":"cannot encode response","errorCode":"UNKNOWN_EXCEPTION"}]`)
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

type errorBody struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields,omitempty"`
}

func writeError(w http.ResponseWriter, err *APIError) {
	writeJSON(w, err.Status, []errorBody{{Message: err.Message, ErrorCode: err.Code, Fields: err.Fields}})
}

func readBody(r *http.Request) ([]byte, *APIError) {
	var rd io.Reader = http.MaxBytesReader(nil, r.Body, 64<<20)
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		gz, err := gzip.NewReader(rd)
		if err != nil {
			return nil, badRequest("JSON_PARSER_ERROR", "request body is not valid gzip")
		}
		defer gz.Close()
		rd = gz
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, badRequest("JSON_PARSER_ERROR", "cannot read request body")
	}
	return b, nil
}

// call is one data API request after routing.
type call struct {
	r       *http.Request
	version string
	segs    []string
	userID  string
	// undo, inside an allOrNone composite request, collects how to revert this call's writes.
	undo *undoLog
}

func (c *call) writeOpts() writeOpts { return writeOpts{actor: c.userID, undo: c.undo} }

type handler func(c *call) (int, any, *APIError)

func (e *Emulator) serveData(w http.ResponseWriter, r *http.Request, segs []string) {
	if err := checkVersion(segs[0]); err != nil {
		writeError(w, err)
		return
	}
	name, h, routeErr := e.route(r.Method, segs[1:])
	e.mu.Lock()
	if name != "" {
		e.counts[name]++
	}
	latency := e.faults.latency
	e.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	limitInfo := func() {
		w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", e.apiUsed, e.opts.DailyAPILimit))
	}
	userID, ok := e.authenticate(r)
	if !ok {
		limitInfo()
		writeError(w, apiErr(http.StatusUnauthorized, "INVALID_SESSION_ID", "Session expired or invalid"))
		return
	}
	if e.apiUsed >= e.opts.DailyAPILimit {
		limitInfo()
		writeError(w, apiErr(http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
		return
	}
	e.apiUsed++
	limitInfo()
	if e.faults.fail > 0 {
		e.faults.fail--
		writeError(w, apiErr(http.StatusInternalServerError, "UNKNOWN_EXCEPTION",
			"An unexpected error occurred. Please include this ErrorId if you contact support: 1438155416-31462 (-1160217263)"))
		return
	}
	if routeErr != nil {
		writeError(w, routeErr)
		return
	}
	status, body, err := h(&call{r: r, version: segs[0], segs: segs[1:], userID: userID})
	e.commitChanges(changeOrigin(r, segs[0]))
	if err != nil {
		e.log.Debug("salesforce emulator call", "endpoint", name, "method", r.Method, "status", err.Status, "error", err.Code)
		writeError(w, err)
		return
	}
	e.log.Debug("salesforce emulator call", "endpoint", name, "method", r.Method, "status", status)
	writeJSON(w, status, body)
}

func methodNotAllowed(method string, allowed ...string) *APIError {
	return apiErr(http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "HTTP Method '%s' not allowed. Allowed are %s",
		method, strings.Join(allowed, ","))
}

// route names the endpoint (for counting) and picks its handler.
func (e *Emulator) route(method string, segs []string) (string, handler, *APIError) {
	notFound := apiErr(http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
	if len(segs) == 0 {
		return "resources", func(c *call) (int, any, *APIError) {
			return http.StatusOK, map[string]string{"limits": "/services/data/" + c.version + "/limits",
				"query": "/services/data/" + c.version + "/query", "sobjects": "/services/data/" + c.version + "/sobjects"}, nil
		}, nil
	}
	only := func(name string, h handler, allowed string) (string, handler, *APIError) {
		if method != allowed {
			return name, nil, methodNotAllowed(method, allowed)
		}
		return name, h, nil
	}
	switch segs[0] {
	case "limits":
		if len(segs) == 1 {
			return only("limits", e.handleLimits, http.MethodGet)
		}
	case "query", "queryAll":
		name := segs[0]
		if len(segs) == 1 {
			return only(name, e.handleQuery, http.MethodGet)
		}
		if len(segs) == 2 {
			return only(name+".more", e.handleQueryMore, http.MethodGet)
		}
	case "sobjects":
		switch len(segs) {
		case 1:
			return only("sobjects.list", e.handleGlobalDescribe, http.MethodGet)
		case 2:
			switch method {
			case http.MethodPost:
				return "sobjects.create", e.handleCreate, nil
			case http.MethodGet:
				return "sobjects.info", e.handleInfo, nil
			}
			return "sobjects.create", nil, methodNotAllowed(method, "GET", "POST")
		case 3:
			switch segs[2] {
			case "describe":
				return only("sobjects.describe", e.handleDescribe, http.MethodGet)
			case "updated":
				return only("sobjects.updated", e.handleUpdated, http.MethodGet)
			case "deleted":
				return only("sobjects.deleted", e.handleDeleted, http.MethodGet)
			}
			switch method {
			case http.MethodGet:
				return "sobjects.get", e.handleGet, nil
			case http.MethodPatch:
				return "sobjects.update", e.handleUpdate, nil
			case http.MethodDelete:
				return "sobjects.delete", e.handleDelete, nil
			}
			return "sobjects.get", nil, methodNotAllowed(method, "GET", "PATCH", "DELETE")
		case 4:
			switch method {
			case http.MethodPatch:
				return "sobjects.upsert", e.handleUpsert, nil
			case http.MethodGet:
				return "sobjects.getByExternalId", e.handleGetByExternalID, nil
			}
			return "sobjects.upsert", nil, methodNotAllowed(method, "GET", "PATCH")
		}
	case "composite":
		if len(segs) == 1 {
			return only("composite", e.handleComposite, http.MethodPost)
		}
		if len(segs) >= 2 && segs[1] == "sobjects" {
			switch {
			case len(segs) == 2 && method == http.MethodPost:
				return "collections.create", e.handleCollectionCreate, nil
			case len(segs) == 2 && method == http.MethodPatch:
				return "collections.update", e.handleCollectionUpdate, nil
			case len(segs) == 2 && method == http.MethodDelete:
				return "collections.delete", e.handleCollectionDelete, nil
			case len(segs) == 2:
				return "collections", nil, methodNotAllowed(method, "POST", "PATCH", "DELETE")
			case len(segs) == 4 && method == http.MethodPatch:
				return "collections.upsert", e.handleCollectionUpsert, nil
			}
		}
	}
	return "unknown", nil, notFound
}
