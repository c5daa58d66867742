// Package pcapi is the Partner Center client cosell's services use: the co-sell Referrals API and the webhook
// registration API, authenticated with App+User (delegated) Entra ID tokens, one per audience (auth.go). The same
// code talks to the real Partner Center and to pcemu; it classifies failures into *APIError but never retries a
// throttled call itself, so the caller (the runtime) can nak with the server's Retry-After.
package pcapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/clients/apicall"
	"golang.org/x/oauth2"
)

// Config says where Partner Center is and how to authenticate to it.
type Config struct {
	ReferralsBaseURL string // default https://api.partner.microsoft.com
	WebhooksBaseURL  string // default https://api.partnercenter.microsoft.com
	// Authority is the tenant's Entra ID authority, https://login.microsoftonline.com/<tenant id>; the client
	// uses its v2.0 token endpoint (v1 for AuthPassword).
	Authority    string
	ClientID     string
	ClientSecret string     // only for a confidential (web) app registration; a public client has none
	Auth         AuthMethod // default AuthRefreshToken
	// Tokens holds the refresh token `cosell pc login` stored and its rotations (AuthRefreshToken).
	Tokens TokenStore
	// Username and Password are the Referrals Admin account's, for AuthPassword only.
	Username, Password string
	// OnRefresh is told, after every refresh-token exchange, when the stored refresh token expires if left
	// unused and the refusal if Entra refused it (for the expiry metric and alert).
	OnRefresh func(expires time.Time, err error)
	Now       func() time.Time // default time.Now
	// HTTPClient sends every call, the token requests included; nil = a client of its own with a 60s timeout
	// that keeps up to MaxIdleConnections connections open between calls.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Observer is told about every call this client makes, token requests included (nil: none).
	Observer apicall.Observer
}

// Client calls Partner Center. It is safe for concurrent use.
type Client struct {
	cfg       Config
	http      *http.Client
	log       *slog.Logger
	mu        sync.Mutex
	refreshMu sync.Mutex
	tokens    map[string]*oauth2.Token // by audience
	calls     map[string]int
}

// New validates cfg and builds a Client; it does not contact Partner Center or Entra ID.
func New(_ context.Context, cfg Config) (*Client, error) {
	if cfg.ReferralsBaseURL == "" {
		cfg.ReferralsBaseURL = ReferralsAudience
	}
	if cfg.WebhooksBaseURL == "" {
		cfg.WebhooksBaseURL = WebhooksAudience
	}
	if cfg.Auth == "" {
		cfg.Auth = AuthRefreshToken
	}
	cfg.ReferralsBaseURL = strings.TrimRight(cfg.ReferralsBaseURL, "/")
	cfg.WebhooksBaseURL = strings.TrimRight(cfg.WebhooksBaseURL, "/")
	cfg.Authority = strings.TrimRight(cfg.Authority, "/")
	for name, v := range map[string]string{"COSELL_PC_URL": cfg.ReferralsBaseURL, "COSELL_PC_WEBHOOKS_URL": cfg.WebhooksBaseURL} {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("pcapi: %s %q is not an absolute http(s) URL", name, v)
		}
	}
	if err := checkAuthority(cfg.Authority); err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		return nil, errors.New("pcapi: COSELL_PC_CLIENT_ID is empty: set it to the app registration's Application (client) ID")
	}
	switch cfg.Auth {
	case AuthRefreshToken:
		if cfg.Tokens == nil {
			return nil, errors.New("pcapi: the refresh-token method needs a token store (the stages use the " +
				"cosell_pc_credentials bucket, filled by cosell pc login)")
		}
	case AuthPassword:
		if cfg.Username == "" || cfg.Password == "" {
			return nil, errors.New("pcapi: COSELL_PC_AUTH=password needs COSELL_PC_USERNAME and COSELL_PC_PASSWORD " +
				"(an account without MFA); otherwise use COSELL_PC_AUTH=refresh-token and cosell pc login")
		}
	default:
		return nil, fmt.Errorf("pcapi: COSELL_PC_AUTH %q is not a method: use refresh-token (cosell pc login) or password; "+
			"app-only client credentials are refused by the Referrals API", cfg.Auth)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = defaultHTTPClient()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, http: cfg.HTTPClient, log: cfg.Logger.With("component", "pcapi"),
		tokens: map[string]*oauth2.Token{}, calls: map[string]int{}}, nil
}

// MaxIdleConnections is how many connections to Partner Center a Client's own HTTP client keeps open
// between calls: as many as the stages have calls in flight (pc-ingest's COSELL_PC_READ_CONCURRENCY, 32 by
// default), since net/http keeps only two per host by default and every call of a burst beyond two then
// opened a new connection (a TCP and, to Partner Center, a TLS handshake) and closed it after.
const MaxIdleConnections = 64

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = MaxIdleConnections
	t.MaxIdleConns = 2 * MaxIdleConnections // the Referrals, webhooks and token hosts
	return &http.Client{Timeout: 60 * time.Second, Transport: t}
}

// Method is the configured authentication method.
func (c *Client) Method() AuthMethod { return c.cfg.Auth }

// Calls returns the number of calls per "endpoint status" (e.g. "referrals.get 200", "token 401", "referrals.list error").
func (c *Client) Calls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.calls))
	for k, v := range c.calls {
		out[k] = v
	}
	return out
}

// record counts one call and reports it to the observer; code is the error code ("" on success).
func (c *Client) record(op string, status int, code string, start time.Time) {
	k := op + " error"
	if status > 0 {
		k = op + " " + strconv.Itoa(status)
	}
	c.mu.Lock()
	c.calls[k]++
	c.mu.Unlock()
	c.cfg.Observer.Observe(apicall.Call{Op: op, Status: status, Code: code, Elapsed: time.Since(start)})
}

type correlationKey struct{}

// WithCorrelationID makes the calls made with ctx carry MS-CorrelationId, tying them together in Partner Center's logs.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// accessToken returns the cached token for audience, fetching a new one when it is missing, expiring or refresh is set.
func (c *Client) accessToken(ctx context.Context, audience string, refresh bool) (string, error) {
	c.mu.Lock()
	tok := c.tokens[audience]
	c.mu.Unlock()
	if !refresh && tok.Valid() {
		return tok.AccessToken, nil
	}
	// One exchange at a time: callers that found the same stale token share the first one's result, so a
	// burst of calls costs one refresh (and one rotation of the stored refresh token).
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	c.mu.Lock()
	cur := c.tokens[audience]
	c.mu.Unlock()
	if cur != tok && cur.Valid() {
		return cur.AccessToken, nil
	}
	tokenStart := time.Now()
	tok, err := c.fetchToken(ctx, audience)
	if err != nil {
		var ae *AuthError
		if errors.As(err, &ae) {
			c.record("token", ae.Status, ae.Code, tokenStart)
		} else {
			c.record("token", 0, "error", tokenStart)
		}
		return "", err
	}
	c.record("token", http.StatusOK, "", tokenStart)
	c.mu.Lock()
	c.tokens[audience] = tok
	c.mu.Unlock()
	return tok.AccessToken, nil
}

// audience is the token audience of an operation: the webhook registration API lives on the CSP host.
func audience(op string) string {
	if strings.HasPrefix(op, "webhooks.") {
		return WebhooksAudience
	}
	return ReferralsAudience
}

// request is one Partner Center call.
type request struct {
	op, referralID string
	method, url    string
	body           any
	header         http.Header
	want           []int // accepted statuses
}

// do sends req with a bearer token, refreshing the token and retrying once on a 401. It returns the response
// body and headers of an accepted status, or an *APIError.
func (c *Client) do(ctx context.Context, req request) ([]byte, http.Header, int, error) {
	var payload []byte
	if req.body != nil {
		var err error
		if payload, err = json.Marshal(req.body); err != nil {
			return nil, nil, 0, fmt.Errorf("pcapi: %s: encode body: %w", req.op, err)
		}
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.accessToken(ctx, audience(req.op), attempt > 0)
		if err != nil {
			if ne := (*NetworkError)(nil); errors.As(err, &ne) {
				ne.ReferralID = req.referralID
			}
			return nil, nil, 0, err
		}
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		hr, err := http.NewRequestWithContext(ctx, req.method, req.url, rd)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("pcapi: %s: %w", req.op, err)
		}
		for k, v := range req.header {
			hr.Header[k] = v
		}
		hr.Header.Set("Authorization", "Bearer "+tok)
		hr.Header.Set("Accept", "application/json")
		if payload != nil {
			hr.Header.Set("Content-Type", "application/json")
		}
		hr.Header.Set("client-request-id", newGUID())
		if id, ok := ctx.Value(correlationKey{}).(string); ok && id != "" {
			hr.Header.Set("MS-CorrelationId", id)
		}
		start := time.Now()
		resp, err := c.http.Do(hr)
		if err != nil {
			c.record(req.op, 0, "error", start)
			return nil, nil, 0, &NetworkError{Op: req.op, ReferralID: req.referralID, Err: err}
		}
		body, err := readBody(resp, 32<<20)
		resp.Body.Close()
		if err != nil {
			c.record(req.op, resp.StatusCode, "error", start)
			return nil, nil, 0, &NetworkError{Op: req.op, ReferralID: req.referralID, Err: err}
		}
		if slices.Contains(req.want, resp.StatusCode) {
			c.record(req.op, resp.StatusCode, "", start)
			return body, resp.Header, resp.StatusCode, nil
		}
		code, msg := parseErrorBody(body)
		c.record(req.op, resp.StatusCode, code, start)
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			c.log.Info("partner center refused the token; refreshing", "op", req.op)
			continue
		}
		return nil, nil, 0, &APIError{Status: resp.StatusCode, Code: code, Message: msg, RetryAfter: retryAfter(resp.Header),
			Op: req.op, ReferralID: req.referralID}
	}
}

// readBody reads up to limit bytes of resp's body into one buffer of the length the response announces
// (io.ReadAll starts at 512 bytes and grows the buffer three or four times for a referral).
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 && n <= limit {
		buf.Grow(int(n) + bytes.MinRead) // room for the read that finds the end
	}
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, limit))
	return buf.Bytes(), err
}

// parseErrorBody reads the three error shapes Partner Center answers with: {"error":{code,message}},
// the throttling {"statusCode":429,"message":...} and Entra ID's {"error":"...","error_description":"..."}.
func parseErrorBody(b []byte) (code, msg string) {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		s := strings.TrimSpace(string(b))
		if len(s) > 200 {
			s = s[:200]
		}
		return "", s
	}
	var detail pc.ErrorDetail
	if raw, ok := m["error"]; ok {
		if json.Unmarshal(raw, &detail) == nil && detail.Code != "" {
			return detail.Code, detail.Message
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			_ = json.Unmarshal(m["error_description"], &msg)
			return s, msg
		}
	}
	_ = json.Unmarshal(m["message"], &msg)
	if _, ok := m["statusCode"]; ok {
		return "throttled", msg
	}
	return "", msg
}

// retryAfter reads Retry-After as seconds or an HTTP date.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
