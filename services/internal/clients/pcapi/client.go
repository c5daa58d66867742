// Package pcapi is the Partner Center client cosell's services use: the co-sell Referrals API and the webhook
// registration API, authenticated with Entra ID client credentials. The same code talks to the real Partner
// Center and to pcemu; it classifies failures into *APIError but never retries a throttled call itself, so the
// caller (the runtime) can nak with the server's Retry-After.
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
	"strconv"
	"strings"
	"sync"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Config says where Partner Center is and how to authenticate to it.
type Config struct {
	ReferralsBaseURL string // default https://api.partner.microsoft.com
	WebhooksBaseURL  string // default https://api.partnercenter.microsoft.com
	TokenURL         string // Entra ID token endpoint (v2.0 with Scopes, or v1 with Resource)
	ClientID         string
	ClientSecret     string
	Scopes           []string // v2.0 endpoint, e.g. https://api.partner.microsoft.com/.default
	Resource         string   // v1 endpoint (…/oauth2/token): sent as resource=
	HTTPClient       *http.Client
	Logger           *slog.Logger
}

// Client calls Partner Center. It is safe for concurrent use.
type Client struct {
	cfg   Config
	cc    *clientcredentials.Config
	http  *http.Client
	log   *slog.Logger
	mu    sync.Mutex
	token *oauth2.Token
	calls map[string]int
}

// New validates cfg and builds a Client; it does not contact Partner Center.
func New(_ context.Context, cfg Config) (*Client, error) {
	if cfg.ReferralsBaseURL == "" {
		cfg.ReferralsBaseURL = "https://api.partner.microsoft.com"
	}
	if cfg.WebhooksBaseURL == "" {
		cfg.WebhooksBaseURL = "https://api.partnercenter.microsoft.com"
	}
	cfg.ReferralsBaseURL = strings.TrimRight(cfg.ReferralsBaseURL, "/")
	cfg.WebhooksBaseURL = strings.TrimRight(cfg.WebhooksBaseURL, "/")
	for name, v := range map[string]string{"ReferralsBaseURL": cfg.ReferralsBaseURL, "WebhooksBaseURL": cfg.WebhooksBaseURL, "TokenURL": cfg.TokenURL} {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("pcapi: config %s %q is not an absolute http(s) URL", name, v)
		}
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("pcapi: config ClientID and ClientSecret are required")
	}
	if len(cfg.Scopes) == 0 && cfg.Resource == "" {
		return nil, errors.New("pcapi: config needs Scopes (v2.0 token endpoint) or Resource (v1)")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cc := &clientcredentials.Config{
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenURL: cfg.TokenURL, Scopes: cfg.Scopes,
		AuthStyle: oauth2.AuthStyleInParams,
	}
	if cfg.Resource != "" {
		cc.EndpointParams = url.Values{"resource": {cfg.Resource}}
	}
	return &Client{cfg: cfg, cc: cc, http: cfg.HTTPClient, log: cfg.Logger.With("component", "pcapi"), calls: map[string]int{}}, nil
}

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

func (c *Client) countCall(op string, status int) {
	k := op + " error"
	if status > 0 {
		k = op + " " + strconv.Itoa(status)
	}
	c.mu.Lock()
	c.calls[k]++
	c.mu.Unlock()
}

type correlationKey struct{}

// WithCorrelationID makes the calls made with ctx carry MS-CorrelationId, tying them together in Partner Center's logs.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// accessToken returns the cached token, fetching a new one when it is missing, expiring or refresh is set.
func (c *Client) accessToken(ctx context.Context, refresh bool) (string, error) {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if !refresh && tok.Valid() {
		return tok.AccessToken, nil
	}
	tokenStart := time.Now()
	tok, err := c.cc.Token(context.WithValue(ctx, oauth2.HTTPClient, c.http))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			c.countCall("token", re.Response.StatusCode)
			observeCall("token", re.Response.StatusCode, tokenStart, re.Response.Header)
			ae := &APIError{Op: "token", Status: re.Response.StatusCode, Code: re.ErrorCode, Message: re.ErrorDescription}
			if ae.Code == "" {
				ae.Code, ae.Message = parseErrorBody(re.Body)
			}
			ae.RetryAfter = retryAfter(re.Response.Header)
			return "", ae
		}
		c.countCall("token", 0)
		observeCall("token", 0, tokenStart, nil)
		return "", &NetworkError{Op: "token", Err: err}
	}
	c.countCall("token", http.StatusOK)
	observeCall("token", http.StatusOK, tokenStart, nil)
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
	return tok.AccessToken, nil
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
		tok, err := c.accessToken(ctx, attempt > 0)
		if err != nil {
			var ae *APIError
			var ne *NetworkError
			switch {
			case errors.As(err, &ae):
				ae.ReferralID = req.referralID
			case errors.As(err, &ne):
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
			c.countCall(req.op, 0)
			observeCall(req.op, 0, start, nil)
			return nil, nil, 0, &NetworkError{Op: req.op, ReferralID: req.referralID, Err: err}
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
		resp.Body.Close()
		c.countCall(req.op, resp.StatusCode)
		observeCall(req.op, resp.StatusCode, start, resp.Header)
		if err != nil {
			return nil, nil, 0, &NetworkError{Op: req.op, ReferralID: req.referralID, Err: err}
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			c.log.Info("partner center refused the token; refreshing", "op", req.op)
			continue
		}
		for _, s := range req.want {
			if resp.StatusCode == s {
				return body, resp.Header, resp.StatusCode, nil
			}
		}
		code, msg := parseErrorBody(body)
		return nil, nil, 0, &APIError{Status: resp.StatusCode, Code: code, Message: msg, RetryAfter: retryAfter(resp.Header),
			Op: req.op, ReferralID: req.referralID}
	}
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
