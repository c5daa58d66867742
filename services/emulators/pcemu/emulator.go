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
	HTTPClient       *http.Client  // used for webhook delivery; default a client with a 10s timeout
	Logger           *slog.Logger  // default discards
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

	mu          sync.Mutex
	baseURL     string
	referrals   map[string]*pc.Referral
	order       []string // ids in creation order
	lastTime    time.Time
	tokens      map[string]time.Time // access token → expiry
	counts      map[string]int
	faults      Faults
	bucket      float64 // token bucket for RateLimit
	bucketAt    time.Time
	reg         *pc.WebhookRegistration
	validations map[string]*pc.WebhookValidationStatus
	closed      bool
	delivered   []Delivery
	beforePatch []func(referralID string)

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
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
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
	s, err := newSigner()
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
		tokens:      map[string]time.Time{},
		counts:      map[string]int{},
		validations: map[string]*pc.WebhookValidationStatus{},
		bucket:      math.Max(1, opts.RateLimit),
		bucketAt:    time.Now(),
		ctx:         ctx,
		cancel:      cancel,
	}
	e.routes()
	return e, nil
}

// SetBaseURL sets how the emulator is reached (scheme://host[:port]), for links, nextLink, ResourceUri and cert URL.
func (e *Emulator) SetBaseURL(u string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.baseURL = strings.TrimRight(u, "/")
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
func (e *Emulator) TokenURL() string { return e.base() + "/" + e.opts.TenantID + "/oauth2/v2.0/token" }

// CertURL is the URL the leaf signing certificate is served at (the X-MS-Certificate-Url of each delivery).
func (e *Emulator) CertURL() string { return e.base() + certPath }

// RootPool returns a pool holding the emulator's CA, for a verifier told to trust it.
func (e *Emulator) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(e.sign.ca)
	return p
}

// CACert is the emulator's self-signed CA certificate (O=Microsoft Corporation).
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
	for k := range e.tokens {
		e.tokens[k] = time.Time{}
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

	const refs = "/v1.0/engagements/referrals"
	m.Handle("GET "+refs, e.api("referrals.list", e.listReferrals))
	m.Handle("POST "+refs, e.api("referrals.create", e.createReferral))
	m.Handle("GET "+refs+"/{id}", e.api("referrals.get", e.getReferral))
	m.Handle("PATCH "+refs+"/{id}", e.api("referrals.patch", e.patchReferral))

	const wh = "/webhooks/v1/registration"
	m.Handle("POST "+wh, e.api("webhooks.register", e.registerWebhook))
	m.Handle("PUT "+wh, e.api("webhooks.update", e.updateWebhook))
	m.Handle("GET "+wh, e.api("webhooks.get", e.getWebhook))
	m.Handle("DELETE "+wh, e.api("webhooks.delete", e.deleteWebhook))
	m.Handle("GET "+wh+"/events", e.api("webhooks.events", e.webhookEvents))
	m.Handle("POST "+wh+"/validationEvents", e.api("webhooks.validation.send", e.sendValidation))
	m.Handle("GET "+wh+"/validationEvents/{correlationId}", e.api("webhooks.validation.get", e.getValidation))

	m.HandleFunc("GET "+certPath, e.serveCert)
	m.HandleFunc("GET /_emulator/cert/root.cer", e.serveRoot)
	m.HandleFunc("POST /_emulator/referrals", e.emuCreate)
	m.HandleFunc("GET /_emulator/referrals", e.emuList)
	m.HandleFunc("PATCH /_emulator/referrals/{id}", e.emuUpdate)
	m.HandleFunc("POST /_emulator/referrals/{id}/close", e.emuClose)
	m.HandleFunc("POST /_emulator/referrals/{id}/expire", e.emuExpire)
	m.HandleFunc("GET /_emulator/counts", e.emuCounts)
	m.HandleFunc("POST /_emulator/faults", e.emuFaults)
	e.mux = m
}

// api wraps a Partner Center API handler with what every call goes through: counting, the request-id headers,
// injected latency, bearer authentication, throttling and injected failures.
func (e *Emulator) api(name string, h http.HandlerFunc) http.Handler {
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
		if !e.authorized(r) {
			writeError(w, http.StatusUnauthorized, "unauthenticated", "The bearer token is missing, invalid or expired.", "")
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

func (e *Emulator) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	exp, ok := e.tokens[tok]
	return ok && time.Now().Before(exp)
}

// tokenV2 is the Entra ID v2.0 client-credentials endpoint.
func (e *Emulator) tokenV2(w http.ResponseWriter, r *http.Request) {
	e.count("token")
	tok, ok := e.clientCredentials(w, r, "scope")
	if !ok {
		return
	}
	secs := int(e.opts.TokenTTL.Seconds())
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok,
	})
}

// tokenV1 is the Entra ID v1 endpoint, which names the audience with resource= instead of scope=.
func (e *Emulator) tokenV1(w http.ResponseWriter, r *http.Request) {
	e.count("token")
	tok, ok := e.clientCredentials(w, r, "resource")
	if !ok {
		return
	}
	secs := int(e.opts.TokenTTL.Seconds())
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": strconv.Itoa(secs), "ext_expires_in": strconv.Itoa(secs),
		"expires_on": strconv.FormatInt(time.Now().Add(e.opts.TokenTTL).Unix(), 10),
		"resource":   r.PostForm.Get("resource"), "access_token": tok,
	})
}

func (e *Emulator) clientCredentials(w http.ResponseWriter, r *http.Request, audienceParam string) (string, bool) {
	aad := func(status int, code, desc string) (string, bool) {
		writeJSON(w, status, map[string]any{
			"error": code, "error_description": desc, "error_codes": []int{},
			"timestamp": time.Now().UTC().Format("2006-01-02 15:04:05Z"), "trace_id": newGUID(), "correlation_id": newGUID(),
		})
		return "", false
	}
	if t := r.PathValue("tenant"); t != e.opts.TenantID {
		return aad(http.StatusBadRequest, "invalid_request", fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", t))
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return aad(http.StatusBadRequest, "invalid_request", "AADSTS900144: The request body must be application/x-www-form-urlencoded.")
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok { // x/oauth2 may send the credentials in the header, URL-encoded
		id, secret = unescape(u), unescape(p)
	}
	switch {
	case r.PostForm.Get("grant_type") != "client_credentials":
		return aad(http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type '"+r.PostForm.Get("grant_type")+"'.")
	case r.PostForm.Get(audienceParam) == "":
		return aad(http.StatusBadRequest, "invalid_request", fmt.Sprintf("AADSTS900144: The request body must contain the following parameter: '%s'.", audienceParam))
	case id == "":
		return aad(http.StatusBadRequest, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'client_id'.")
	case id != e.opts.ClientID:
		return aad(http.StatusBadRequest, "unauthorized_client", fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory.", id))
	case secret != e.opts.ClientSecret:
		return aad(http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+id+"'.")
	}
	tok := "emu." + randomHex(24)
	e.mu.Lock()
	e.tokens[tok] = time.Now().Add(e.opts.TokenTTL)
	e.mu.Unlock()
	return tok, true
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
