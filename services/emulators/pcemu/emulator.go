// Package pcemu is a strict in-process emulator of Microsoft Partner Center: the Entra ID token endpoints, the
// co-sell Referrals API, the webhook registration API and signed webhook delivery. It refuses what Partner Center
// refuses, so that tests and `make run` exercise the same failure paths the real service has, and it lets a test act
// as a Microsoft seller through the /_emulator/ endpoints and the Seller* methods.
package pcemu

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// Options configure an Emulator; the zero value of each field has a usable default.
type Options struct {
	TenantID     string // default "00000000-0000-0000-0000-000000000001"
	ClientID     string // default "cosell-emulator-client"
	ClientSecret string // default "cosell-emulator-secret"
	// BaseURL is how the emulator is reached; it is used in links, nextLink, ResourceUri and the cert URL.
	// It may be set after New with SetBaseURL (an httptest server's URL is only known after the handler exists).
	BaseURL          string
	OrganizationID   string // the partner organisation owning the referrals
	OrganizationName string
	RateLimit        float64       // API requests per second per tenant; 0 = unlimited
	TokenTTL         time.Duration // default 1h
	HTTPClient       *http.Client  // used for webhook delivery; default a 10s-timeout client keeping its connections
	Logger           *slog.Logger  // default discards
	// Username and Password are the Referrals Admin account the password grant accepts (default DefaultUser and
	// "cosell-emulator-password"); the device-code and harness sign-ins are as DefaultUser too.
	Username, Password string
	// DeviceCodeTTL is how long a device code waits for its sign-in (default 15m, as Entra ID's expires_in 900);
	// DeviceCodeInterval the polling interval it asks for (default 5s).
	DeviceCodeTTL, DeviceCodeInterval time.Duration
	// ApproveSignIns signs every device code in as DefaultUser as soon as it is issued (development: no browser).
	ApproveSignIns bool
	// RefreshTokenInactivity is how long an unused refresh token stays valid (default 90 days).
	RefreshTokenInactivity time.Duration
	// WebhookBackoff is the first delay between webhook delivery attempts, doubled per attempt up to 30s
	// (default 200ms; Partner Center's own schedule is not published).
	WebhookBackoff time.Duration
}

// Faults are injected failures, each consumed by the next calls of the Partner Center API (not /_emulator/).
type Faults struct {
	LatencyMs    int `json:"latencyMs"`    // added to every API call while set
	Fail5xx      int `json:"fail5xx"`      // the next N API calls answer 503 serviceNotAvailable
	Throttle429  int `json:"throttle429"`  // the next N API calls answer 429 with Retry-After: 1
	DropWebhooks int `json:"dropWebhooks"` // the next N webhook notifications are silently lost
	// ExpireTokens (HTTP only) expires every issued access token once, as ExpireTokens does.
	ExpireTokens bool `json:"expireTokens,omitempty"`
}

// Emulator is a Partner Center emulator; it is an http.Handler and is safe for concurrent use.
type Emulator struct {
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
	sign *signer

	mu        sync.Mutex
	baseURL   string
	referrals map[string]*pc.Referral
	order     []string // ids in creation order
	// extRefs counts the referrals naming each externalReferenceId (an index kept on every create and
	// edit, so the harness's count of linked referrals does not scan the store).
	extRefs     map[string]int
	linked      int // referrals naming any externalReferenceId
	lastTime    time.Time
	tokens      map[string]*accessToken
	refresh     map[string]*refreshToken
	devices     map[string]*deviceCode
	mfaRequired bool
	counts      map[string]int
	faults      Faults
	bucket      float64 // token bucket for RateLimit
	bucketAt    time.Time
	reg         *pc.WebhookRegistration
	validations map[string]*pc.WebhookValidationStatus
	// validationsSent are the times of the validation events sent within the last minute (Partner Center
	// allows two a minute).
	validationsSent []time.Time
	closed          bool
	delivered       []Delivery
	beforePatch     []func(referralID string)
	shape           NotificationShape
	timing          WebhookTiming
	filters         FilterMode

	queue  *webhookQueue
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds an Emulator, generating its signing CA and leaf certificate.
func New(opts Options) (*Emulator, error) {
	if opts.TenantID == "" {
		opts.TenantID = "00000000-0000-0000-0000-000000000001"
	}
	if opts.ClientID == "" {
		opts.ClientID = "cosell-emulator-client"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "cosell-emulator-secret"
	}
	if opts.OrganizationID == "" {
		opts.OrganizationID = "2b9c5a4e-0000-4000-8000-00000000c0de"
	}
	if opts.OrganizationName == "" {
		opts.OrganizationName = "Contoso Partner"
	}
	if opts.Username == "" {
		opts.Username = DefaultUser
	}
	if opts.Password == "" {
		opts.Password = "cosell-emulator-password"
	}
	if opts.DeviceCodeTTL <= 0 {
		opts.DeviceCodeTTL = 15 * time.Minute
	}
	if opts.DeviceCodeInterval <= 0 {
		opts.DeviceCodeInterval = 5 * time.Second
	}
	if opts.RefreshTokenInactivity <= 0 {
		opts.RefreshTokenInactivity = 90 * 24 * time.Hour
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = webhookClient()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.WebhookBackoff <= 0 {
		opts.WebhookBackoff = 200 * time.Millisecond
	}
	if opts.RateLimit < 0 || math.IsNaN(opts.RateLimit) {
		return nil, fmt.Errorf("pcemu: RateLimit must be >= 0, got %v", opts.RateLimit)
	}
	s, err := newSigner(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("pcemu: generate signing certificates: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Emulator{
		opts:        opts,
		log:         opts.Logger.With("component", "pcemu"),
		sign:        s,
		baseURL:     strings.TrimRight(opts.BaseURL, "/"),
		referrals:   map[string]*pc.Referral{},
		extRefs:     map[string]int{},
		tokens:      map[string]*accessToken{},
		refresh:     map[string]*refreshToken{},
		devices:     map[string]*deviceCode{},
		counts:      map[string]int{},
		validations: map[string]*pc.WebhookValidationStatus{},
		bucket:      math.Max(1, opts.RateLimit),
		bucketAt:    time.Now(),
		queue:       newWebhookQueue(),
		ctx:         ctx,
		cancel:      cancel,
	}
	e.routes()
	return e, nil
}

// SetBaseURL sets how the emulator is reached (scheme://host[:port]), for links, nextLink, ResourceUri and cert URL.
func (e *Emulator) SetBaseURL(u string) {
	e.mu.Lock()
	e.baseURL = strings.TrimRight(u, "/")
	e.mu.Unlock()
	if err := e.sign.setBase(strings.TrimRight(u, "/")); err != nil {
		e.log.Error("re-issue the signing certificate", "err", err)
	}
}

func (e *Emulator) base() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.baseURL
}

// TenantID, ClientID and ClientSecret are the credentials the emulator accepts.
func (e *Emulator) TenantID() string { return e.opts.TenantID }

// ClientID is the accepted client id.
func (e *Emulator) ClientID() string { return e.opts.ClientID }

// ClientSecret is the accepted client secret.
func (e *Emulator) ClientSecret() string { return e.opts.ClientSecret }

// TokenURL is the v2.0 token endpoint of the emulated tenant.
func (e *Emulator) TokenURL() string { return e.Authority() + "/oauth2/v2.0/token" }

// Authority is the emulated tenant's Entra authority (what COSELL_PC_AUTHORITY names), base + "/" + tenant.
func (e *Emulator) Authority() string { return e.base() + "/" + e.opts.TenantID }

// CertURL is the URL the leaf signing certificate is served at (the X-MS-Certificate-Url of each delivery).
func (e *Emulator) CertURL() string { return e.base() + certPath }

// IntermediatePool holds the emulator's intermediate CA, for a verifier configured with an intermediates bundle.
func (e *Emulator) IntermediatePool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(e.sign.inter)
	return p
}

// IntermediateCert is the intermediate CA that issued the signing leaf.
func (e *Emulator) IntermediateCert() *x509.Certificate { return e.sign.inter }

// RootPool returns a pool holding the emulator's root CA (only), for a verifier told to trust it.
func (e *Emulator) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(e.sign.ca)
	return p
}

// CACert is the emulator's self-signed root CA certificate (O=Microsoft Corporation).
func (e *Emulator) CACert() *x509.Certificate { return e.sign.ca }

// Close stops webhook delivery and waits for the delivery goroutines to end.
func (e *Emulator) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
}

// ExpireTokens makes every issued access token expired, so the next API call with one gets a 401.
func (e *Emulator) ExpireTokens() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.tokens {
		t.expires = time.Time{}
	}
}

// Counts returns the number of calls per endpoint name ("token", "referrals.list", "webhooks.delivered", ...).
func (e *Emulator) Counts() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.counts))
	for k, v := range e.counts {
		out[k] = v
	}
	return out
}

// ResetCounts zeroes the call counters.
func (e *Emulator) ResetCounts() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.counts = map[string]int{}
}

// SetFilterMode sets how a $filter on a property the docs do not list as filterable is treated (default
// FilterRefuse).
func (e *Emulator) SetFilterMode(m FilterMode) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.filters = m
}

func (e *Emulator) filterMode() FilterMode {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.filters == "" {
		return FilterRefuse
	}
	return e.filters
}

// emuFilters is POST /_emulator/filters {"undocumented":"refuse"|"ignore"|"honor"}.
func (e *Emulator) emuFilters(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Undocumented FilterMode `json:"undocumented"`
	}
	if err := decodeStrict(r.Body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "invalidRequest", err.Error(), "")
		return
	}
	switch in.Undocumented {
	case FilterRefuse, FilterIgnore, FilterHonor:
	default:
		writeError(w, http.StatusBadRequest, "invalidRequest", fmt.Sprintf("undocumented %q: use refuse, ignore or honor", in.Undocumented), "undocumented")
		return
	}
	e.SetFilterMode(in.Undocumented)
	writeJSON(w, http.StatusOK, in)
}

// SetFaults replaces the injected faults.
func (e *Emulator) SetFaults(f Faults) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = f
}

func (e *Emulator) count(name string) {
	e.mu.Lock()
	e.counts[name]++
	e.mu.Unlock()
}

// ServeHTTP serves the emulated APIs.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.mux.ServeHTTP(w, r) }

func (e *Emulator) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /{tenant}/oauth2/v2.0/token", e.tokenV2)
	m.HandleFunc("POST /{tenant}/oauth2/token", e.tokenV1)
	m.HandleFunc("POST /{tenant}/oauth2/v2.0/devicecode", e.deviceAuthorize)

	const refs = "/v1.0/engagements/referrals"
	m.Handle("GET "+refs, e.api("referrals.list", AudienceReferrals, e.listReferrals))
	m.Handle("POST "+refs, e.api("referrals.create", AudienceReferrals, e.createReferral))
	m.Handle("GET "+refs+"/{id}", e.api("referrals.get", AudienceReferrals, e.getReferral))
	m.Handle("PATCH "+refs+"/{id}", e.api("referrals.patch", AudienceReferrals, e.patchReferral))

	const wh = "/webhooks/v1/registration"
	m.Handle("POST "+wh, e.api("webhooks.register", AudienceWebhooks, e.registerWebhook))
	m.Handle("PUT "+wh, e.api("webhooks.update", AudienceWebhooks, e.updateWebhook))
	m.Handle("GET "+wh, e.api("webhooks.get", AudienceWebhooks, e.getWebhook))
	m.Handle("DELETE "+wh, e.api("webhooks.delete", AudienceWebhooks, e.deleteWebhook))
	m.Handle("GET "+wh+"/events", e.api("webhooks.events", AudienceWebhooks, e.webhookEvents))
	m.Handle("POST "+wh+"/validationEvents", e.api("webhooks.validation.send", AudienceWebhooks, e.sendValidation))
	m.Handle("GET "+wh+"/validationEvents/{correlationId}", e.api("webhooks.validation.get", AudienceWebhooks, e.getValidation))

	m.HandleFunc("GET "+certPath, e.serveCert)
	m.HandleFunc("GET /_emulator/cert/root.cer", e.serveRoot)
	m.HandleFunc("GET "+intermediatePath, e.serveIntermediate)
	m.HandleFunc("POST /_emulator/referrals", e.emuCreate)
	m.HandleFunc("GET /_emulator/referrals", e.emuList)
	m.HandleFunc("GET /_emulator/referrals/{id}", e.emuGet)
	m.HandleFunc("PATCH /_emulator/referrals/{id}", e.emuUpdate)
	m.HandleFunc("POST /_emulator/referrals/{id}/close", e.emuClose)
	m.HandleFunc("POST /_emulator/referrals/{id}/expire", e.emuExpire)
	m.HandleFunc("GET /_emulator/counts", e.emuCounts)
	m.HandleFunc("POST /_emulator/faults", e.emuFaults)
	m.HandleFunc("POST /_emulator/filters", e.emuFilters)
	m.HandleFunc("GET /_emulator/devicelogin", e.emuDeviceLogin)
	m.HandleFunc("POST /_emulator/devicelogin", e.emuDeviceLogin)
	m.HandleFunc("POST /_emulator/refresh-tokens", e.emuRefreshTokens)
	m.HandleFunc("POST /_emulator/refresh-tokens/{action}", e.emuRefreshTokens)
	e.mux = m
}

// api wraps a Partner Center API handler with what every call goes through: counting, the request-id headers,
// injected latency, bearer authentication, throttling and injected failures.
func (e *Emulator) api(name, audience string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.count(name)
		w.Header().Set("request-id", newGUID())
		if id := r.Header.Get("client-request-id"); id != "" {
			w.Header().Set("client-request-id", id)
		}
		w.Header().Set("timestamp", time.Now().UTC().Format(time.RFC3339))

		e.mu.Lock()
		latency := time.Duration(e.faults.LatencyMs) * time.Millisecond
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
		if !e.apiAuth(w, r, audience) {
			return
		}
		if wait, ok := e.admit(); !ok {
			e.count("throttled")
			writeThrottled(w, wait)
			return
		}
		e.mu.Lock()
		var fail5xx bool
		switch {
		case e.faults.Throttle429 > 0:
			e.faults.Throttle429--
			e.counts["throttled"]++
			e.mu.Unlock()
			writeThrottled(w, 1)
			return
		case e.faults.Fail5xx > 0:
			e.faults.Fail5xx--
			fail5xx = true
		}
		e.mu.Unlock()
		if fail5xx {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "serviceNotAvailable", "The service is temporarily unavailable (injected fault).", "")
			return
		}
		h(w, r)
	})
}

func writeThrottled(w http.ResponseWriter, seconds int) {
	w.Header().Set("Retry-After", strconv.Itoa(seconds))
	writeJSON(w, http.StatusTooManyRequests, map[string]any{
		"statusCode": http.StatusTooManyRequests,
		"message":    fmt.Sprintf("Rate limit is exceeded. Try again in %d seconds.", seconds),
	})
}

// admit takes one request from the tenant's token bucket; when empty it returns the seconds to wait.
func (e *Emulator) admit() (int, bool) {
	if e.opts.RateLimit == 0 {
		return 0, true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	burst := math.Max(1, e.opts.RateLimit)
	e.bucket = math.Min(burst, e.bucket+now.Sub(e.bucketAt).Seconds()*e.opts.RateLimit)
	e.bucketAt = now
	if e.bucket >= 1 {
		e.bucket--
		return 0, true
	}
	wait := int(math.Ceil((1 - e.bucket) / e.opts.RateLimit))
	return max(wait, 1), false
}

func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, code, msg, target string) {
	writeJSON(w, status, pc.Error{Error: pc.ErrorDetail{Code: code, Message: msg, Target: target}})
}

// apiError is an error the handlers turn into a Partner Center error body.
type apiError struct {
	status            int
	code, msg, target string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.msg) }

func invalid(target, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalidRequest", msg: fmt.Sprintf(format, args...), target: target}
}

func notFound(id string) *apiError {
	return &apiError{status: http.StatusNotFound, code: "itemNotFound", msg: fmt.Sprintf("Referral '%s' was not found.", id)}
}

func writeErr(w http.ResponseWriter, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeError(w, ae.status, ae.code, ae.msg, ae.target)
		return
	}
	writeError(w, http.StatusInternalServerError, "generalException", err.Error(), "")
}

// decodeStrict reads a JSON body refusing unknown fields and trailing data, as a strict service would.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
