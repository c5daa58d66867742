// Package sfapi is cosell's one Salesforce client: it logs in itself (token.go: JWT bearer, client
// credentials or password through golang.org/x/oauth2), hands the access token to
// github.com/k-capehart/go-salesforce/v2 and sends every REST call through its DoRequest, so the errors are
// classified once (transient, limit, permanent), each response's Sforce-Limit-Info is read (Usage), query
// results are paged one page at a time, Collections and Composite calls report each record's result, and
// every call is counted and reported to the client's own apicall.Observer.
//
// Every call that can block takes a context first and is bounded by it and by Config.RequestTimeout, per
// call. Each Client keeps its own HTTP client for logins, its timeout, observer, counts and allowance; the
// package holds no state and changes none.
//
// What stays shared between clients in one process, and why: go-salesforce v2.5.2 cannot be given an
// http.Client. It sends every data call with http.DefaultClient (so through http.DefaultTransport: one
// connection pool, the proxy settings from the environment, the default TLS configuration), and when it is
// handed an access token it checks it with one GET /limits that takes no context. sfapi never changes
// http.DefaultClient: a request option puts the call's context on each data request, which is what cancels
// it and enforces the timeout, and that token check is awaited only until the login's context is done (the
// abandoned request then finishes in the background and its answer is dropped).
package sfapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/k-capehart/go-salesforce/v2"

	"github.com/cosell-dev/cosell/services/internal/clients/apicall"
)

// DefaultRequestTimeout bounds one HTTP call when Config.RequestTimeout is zero.
const DefaultRequestTimeout = 30 * time.Second

// Config holds what a login needs. Domain is the login or My Domain URL (https://login.salesforce.com, a
// sandbox's https://test.salesforce.com, or the emulator's http://127.0.0.1:PORT).
type Config struct {
	Domain         string        `env:"COSELL_SF_URL" required:"true" validate:"url" help:"the Salesforce login or My Domain URL, e.g. https://login.salesforce.com"`
	ClientID       string        `env:"COSELL_SF_CLIENT_ID" required:"true" help:"the connected app's consumer key"`
	ClientSecret   string        `env:"COSELL_SF_CLIENT_SECRET" help:"the app's consumer secret (client credentials and password flows)"`
	Auth           string        `env:"COSELL_SF_AUTH" help:"login flow: jwt, client-credentials (needs the org's My Domain URL) or password; empty: jwt when COSELL_SF_JWT_KEY_FILE is set, password when COSELL_SF_PASSWORD is, else client-credentials"`
	JWTKeyFile     string        `env:"COSELL_SF_JWT_KEY_FILE" help:"JWT bearer flow: the PEM private key of the certificate uploaded to the app"`
	JWTAudience    string        `env:"COSELL_SF_JWT_AUDIENCE" help:"JWT bearer flow: the assertion's audience; empty: https://test.salesforce.com for a sandbox URL, else https://login.salesforce.com"`
	Username       string        `env:"COSELL_SF_USERNAME" help:"the integration user (JWT subject, or the username-password flow's user)"`
	Password       string        `env:"COSELL_SF_PASSWORD"`
	SecurityToken  string        `env:"COSELL_SF_SECURITY_TOKEN"`
	RequestTimeout time.Duration `env:"COSELL_SF_TIMEOUT" default:"30s" help:"how long one Salesforce HTTP call (or a login) may take"`
	// Observer is told about every REST call this client makes (nil: none). It is not read from the
	// environment: the stage wires it to its metrics.
	Observer apicall.Observer
}

// Client is a logged-in Salesforce client, safe for concurrent use. It logs in itself (login: the
// configured flow through golang.org/x/oauth2, over its own HTTP client), hands the access token to
// go-salesforce, and sends every call through its DoRequest, so that it sees every response's
// Sforce-Limit-Info header and the exact status; a call refused with INVALID_SESSION_ID logs in again once
// and is retried.
type Client struct {
	cfg     Config
	timeout time.Duration
	http    *http.Client // for the token requests
	observe apicall.Observer
	mu      sync.Mutex
	sf      *salesforce.Salesforce // the current session; replaced by relogin
	loginMu sync.Mutex             // one login at a time
	calls   map[string]int
	usage   Usage
}

// New checks the login settings (CheckLogin) and logs in; ctx (and Config.RequestTimeout) bound how long
// it waits for Salesforce.
func New(ctx context.Context, cfg Config) (*Client, error) {
	c := &Client{cfg: cfg, timeout: cfg.RequestTimeout, observe: cfg.Observer, calls: map[string]int{}}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	c.http = &http.Client{Timeout: c.timeout}
	if err := c.login(ctx); err != nil {
		return nil, fmt.Errorf("salesforce login at %s: %w", cfg.Domain, err)
	}
	return c, nil
}

// await runs f, which go-salesforce gives no context, and returns its result or, once ctx is done, ctx's
// error. An abandoned f runs on in the background; drop (when set) disposes of its late result.
func await[T any](ctx context.Context, f func() (T, error), drop func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		select {
		case r := <-done: // finished at the same moment: keep the answer rather than drop it
			return r.v, r.err
		default:
		}
		go func() {
			if r := <-done; drop != nil {
				drop(r.v)
			}
		}()
		var zero T
		return zero, ctx.Err()
	}
}

// Error is a Salesforce refusal.
type Error struct {
	Op      string
	Code    string
	Message string
	Fields  []string
	// Transient is true when a retry can succeed (lock contention, limits, outages, network).
	Transient bool
	// Err is the underlying failure when it was not Salesforce's answer (a network error, a timeout, a
	// cancelled context), so errors.Is(err, context.Canceled) holds.
	Err error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("salesforce %s: %s: %s", e.Op, e.Code, e.Message)
	if len(e.Fields) > 0 {
		s += fmt.Sprintf(" (fields %s)", strings.Join(e.Fields, ", "))
	}
	return s
}

// Unwrap returns the underlying network or context error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Codes a retry can cure.
var transientCodes = map[string]bool{
	"UNABLE_TO_LOCK_ROW": true, "REQUEST_LIMIT_EXCEEDED": true, "SERVER_UNAVAILABLE": true,
	"UNKNOWN_EXCEPTION": true, "INVALID_SESSION_ID": true, "REQUEST_RUNNING_TOO_LONG": true,
}

// classify turns go-salesforce's error (the raw response body as text) into an *Error.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var body []struct {
		Message   string   `json:"message"`
		ErrorCode string   `json:"errorCode"`
		Fields    []string `json:"fields"`
	}
	if jerr := json.Unmarshal([]byte(err.Error()), &body); jerr == nil && len(body) > 0 {
		b := body[0]
		return &Error{Op: op, Code: b.ErrorCode, Message: b.Message, Fields: b.Fields, Transient: transientCodes[b.ErrorCode]}
	}
	var oauth struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if jerr := json.Unmarshal([]byte(err.Error()), &oauth); jerr == nil && oauth.Error != "" {
		return &Error{Op: op, Code: oauth.Error, Message: oauth.Description}
	}
	// Not Salesforce's error shape: a network failure, a timeout or cancellation, or an outage page. Worth a
	// retry (the caller's own cancellation shows through errors.Is).
	return &Error{Op: op, Code: "TRANSPORT", Message: err.Error(), Transient: true, Err: err}
}

// IsTransient reports whether err is worth a retry.
func IsTransient(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Transient
	}
	return err != nil
}

// IsRefusedForNow reports whether err is Salesforce's own answer that a later try can succeed (a spent
// daily allowance, an outage, a lock, a 500): a *Error marked Transient that is not a network failure
// (TRANSPORT), which can as well be a wrong host that no retry cures. A refused login (*LoginError) and
// anything else are not.
func IsRefusedForNow(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Transient && e.Code != "TRANSPORT"
}

// Code returns the Salesforce error code of err, or "".
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func (c *Client) count(op string) {
	c.mu.Lock()
	c.calls[op]++
	c.mu.Unlock()
}

// Calls returns the number of calls made per operation.
func (c *Client) Calls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.calls))
	for k, v := range c.calls {
		out[k] = v
	}
	return out
}

// soqlEscaper escapes what a SOQL string literal may not hold bare; one for every call (a Replacer is
// safe for concurrent use and builds its tables once).
var soqlEscaper = strings.NewReplacer(`\`, `\\`, `'`, `\'`)

// Quote makes s a SOQL string literal.
func Quote(s string) string {
	return "'" + soqlEscaper.Replace(s) + "'"
}

// Flatten turns a query row into flat fields: nested parent records become "Parent.Field" keys and the
// "attributes" entries are dropped.
func Flatten(row map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range row {
		if k == "attributes" {
			continue
		}
		if nested, ok := v.(map[string]any); ok {
			if _, isQuery := nested["records"]; isQuery {
				out[k] = v
				continue
			}
			for nk, nv := range nested {
				if nk != "attributes" {
					out[k+"."+nk] = nv
				}
			}
			continue
		}
		out[k] = v
	}
	return out
}

// TimeLayout is Salesforce's datetime format in responses.
const TimeLayout = "2006-01-02T15:04:05.000-0700"

// ParseTime reads a Salesforce datetime.
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(TimeLayout, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UTC(), err
}

// FormatTime writes a SOQL datetime literal.
func FormatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
