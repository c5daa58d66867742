package pcapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// The two Partner Center hosts cosell calls take tokens for different audiences (Entra ID "resources"): a token
// issued for one is refused by the other. Source: Partner Center REST docs ("Get the list of leads and
// opportunities": resource https://api.partner.microsoft.com; "Partner Center webhooks": the CSP API resource
// https://api.partnercenter.microsoft.com), see ../shared/reference/partner-center.md §1, §4, §6.
const (
	ReferralsAudience = "https://api.partner.microsoft.com"
	WebhooksAudience  = "https://api.partnercenter.microsoft.com"
)

// AuthMethod names how the stages obtain App+User (delegated) tokens. The Referrals API accepts only those:
// "App+User (delegated) credentials only" (Partner Center docs, Referrals API prerequisites). App-only
// (client-credentials) tokens are refused, so there is deliberately no method for them.
type AuthMethod string

const (
	// AuthRefreshToken exchanges the refresh token `cosell pc login` stored (a one-time, MFA-compatible
	// device-code sign-in of the Referrals Admin user: Microsoft's Secure Application Model,
	// https://learn.microsoft.com/partner-center/developer/enable-secure-app-model) for access tokens, and
	// keeps the rotated refresh token Entra ID returns in the shared TokenStore. No password is kept.
	AuthRefreshToken AuthMethod = "refresh-token"
	// AuthPassword is the documented resource-owner password grant (grant_type=password with resource=, on the
	// v1 endpoint <authority>/oauth2/token: Partner Center REST docs, §6 of the reference). It works only for
	// an account without MFA, which Partner Center enforces for App+User calls from April 2026
	// (https://learn.microsoft.com/partner-center/developer/partner-center-authentication); prefer AuthRefreshToken.
	AuthPassword AuthMethod = "password"
)

// RefreshTokenInactivity is how long Entra ID keeps an unused refresh token valid: each use returns a new one
// valid for another 90 days; one left unused for 90 days fails with AADSTS700082. Source:
// https://learn.microsoft.com/entra/identity-platform/refresh-tokens#token-lifetime (and the message format
// "AADSTS700082: The refresh token has expired due to inactivity. The token was issued on … and was inactive
// for 90.00:00:00" quoted on the Microsoft Partner Community forum).
const RefreshTokenInactivity = 90 * 24 * time.Hour

// StoredToken is the shared refresh token record: the newest refresh token and where it came from. Its String
// and LogValue never show the token.
type StoredToken struct {
	RefreshToken string    `json:"refreshToken"`
	Method       string    `json:"method"`              // how it was obtained: "device-code"
	User         string    `json:"user,omitempty"`      // the signed-in user (preferred_username), when known
	Authority    string    `json:"authority"`           // e.g. https://login.microsoftonline.com/<tenant>
	ClientID     string    `json:"clientId"`            // the app registration it was issued to
	LoggedInAt   time.Time `json:"loggedInAt"`          // the `cosell pc login` that started the chain
	RotatedAt    time.Time `json:"rotatedAt"`           // when Entra ID last issued this token
	LastError    string    `json:"lastError,omitempty"` // the last refusal (e.g. AADSTS700082), cleared on success
}

// ExpiresAt is when the token stops working if nobody uses it: RotatedAt + 90 days. Revocation (a password
// reset, "revoke sessions", a Conditional Access change) can end it earlier; LastError then says so.
func (t StoredToken) ExpiresAt() time.Time { return t.RotatedAt.Add(RefreshTokenInactivity) }

// String describes the record without its secret.
func (t StoredToken) String() string {
	return fmt.Sprintf("refresh token for %s (client %s, %s, rotated %s, expires %s)", t.User, t.ClientID, t.Method,
		t.RotatedAt.UTC().Format(time.RFC3339), t.ExpiresAt().UTC().Format(time.RFC3339))
}

// LogValue keeps the token out of structured logs.
func (t StoredToken) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", t.User), slog.String("clientId", t.ClientID),
		slog.Time("rotatedAt", t.RotatedAt), slog.Time("expiresAt", t.ExpiresAt()))
}

// TokenStore holds the newest refresh token for every replica of every stage that calls Partner Center, so a
// rotation survives restarts and one replica's rotation is seen by the others. Implementations compare-and-set
// on a revision.
type TokenStore interface {
	// Load returns the record and its revision, or ErrNoRefreshToken.
	Load(ctx context.Context) (StoredToken, uint64, error)
	// Save writes t if the stored revision is still rev (0: only if none is stored) and returns the new
	// revision; ErrTokenConflict when another writer got there first.
	Save(ctx context.Context, t StoredToken, rev uint64) (uint64, error)
}

// ErrNoRefreshToken: nothing is stored yet.
var ErrNoRefreshToken = errors.New("no Partner Center refresh token is stored: sign in once as the Referrals Admin user with `cosell pc login` (docs/connect.md)")

// ErrTokenConflict: the store changed since it was loaded.
var ErrTokenConflict = errors.New("the stored Partner Center refresh token changed concurrently")

// AuthError is Entra ID refusing to issue a token: Code is the OAuth error (invalid_grant, invalid_client, …),
// AADSTS the Entra code in the description (e.g. "AADSTS700082"), Fix what the operator should do.
type AuthError struct {
	Op, Code, AADSTS, Description, Fix string
	Status                             int
}

func (e *AuthError) Error() string {
	s := fmt.Sprintf("pcapi: %s: Entra ID refused (%d %s", e.Op, e.Status, e.Code)
	if e.AADSTS != "" {
		s += " " + e.AADSTS
	}
	s += ")"
	if d := firstLine(e.Description); d != "" {
		s += ": " + d
	}
	if e.Fix != "" {
		s += "; fix: " + e.Fix
	}
	return s
}

// IsAuthExpired reports a refresh token Entra ID no longer accepts (expired, revoked, or never valid):
// only a new `cosell pc login` helps.
func IsAuthExpired(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae) && ae.Code == "invalid_grant"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s, _, _ = strings.Cut(s, " Trace ID:")
	return strings.TrimSpace(s)
}

// authFix names the fix for an Entra ID refusal, by AADSTS code where one is known. Codes:
// https://learn.microsoft.com/entra/identity-platform/reference-error-codes.
func authFix(code, aadsts string) string {
	login := "sign in again as the Referrals Admin user: cosell pc login"
	switch aadsts {
	case "AADSTS700082", "AADSTS70008":
		return "the refresh token expired (unused for 90 days); " + login
	case "AADSTS50173", "AADSTS50078", "AADSTS50076", "AADSTS70043":
		return "the sign-in was revoked or needs MFA again (password reset, revoked sessions, Conditional Access); " + login
	case "AADSTS7000215", "AADSTS7000222":
		return "COSELL_PC_CLIENT_SECRET is wrong or expired: create a new client secret on the app registration"
	case "AADSTS700016":
		return "COSELL_PC_CLIENT_ID is not an app registration in this tenant (check COSELL_PC_AUTHORITY's tenant id)"
	case "AADSTS90002":
		return "COSELL_PC_AUTHORITY names a tenant that does not exist: use https://login.microsoftonline.com/<your tenant id>"
	case "AADSTS65001":
		return "the app lacks admin consent for the delegated Partner Center user_impersonation permission: grant it in Entra ID (docs/connect.md)"
	case "AADSTS50126":
		return "COSELL_PC_USERNAME / COSELL_PC_PASSWORD are wrong"
	}
	switch code {
	case "invalid_grant":
		return login
	case "invalid_client", "unauthorized_client":
		return "check COSELL_PC_CLIENT_ID and COSELL_PC_CLIENT_SECRET against the app registration"
	}
	return ""
}

// authError turns an x/oauth2 failure into *AuthError (Entra answered) or *NetworkError.
func authError(op string, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return &NetworkError{Op: op, Err: err}
	}
	ae := &AuthError{Op: op, Status: re.Response.StatusCode, Code: re.ErrorCode, Description: re.ErrorDescription}
	if ae.Code == "" {
		ae.Code, ae.Description = parseErrorBody(re.Body)
	}
	if m := strings.Fields(ae.Description); len(m) > 0 && strings.HasPrefix(m[0], "AADSTS") {
		ae.AADSTS = strings.TrimSuffix(m[0], ":")
	}
	ae.Fix = authFix(ae.Code, ae.AADSTS)
	return ae
}

// oauthConfig is the x/oauth2 view of the app registration against the tenant's authority (v2.0 endpoints).
func (c *Client) oauthConfig(scopes ...string) *oauth2.Config {
	return oauthConfig(c.cfg.Authority, c.cfg.ClientID, c.cfg.ClientSecret, scopes...)
}

func oauthConfig(authority, clientID, secret string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{ClientID: clientID, ClientSecret: secret, Scopes: scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:       authority + "/oauth2/v2.0/authorize",
			TokenURL:      authority + "/oauth2/v2.0/token",
			DeviceAuthURL: authority + "/oauth2/v2.0/devicecode",
			AuthStyle:     oauth2.AuthStyleInParams,
		}}
}

// Scopes asks Entra ID (v2.0) for a delegated token for one audience, with a refresh token.
func Scopes(audience string) []string {
	return []string{audience + "/user_impersonation", "offline_access"}
}

// withForm returns ctx carrying an HTTP client that adds params to every token request's form body. x/oauth2's
// refresh grant sends no scope (golang/oauth2 PR #540: "it is required to pass a scope when refreshing an
// access token for the Microsoft identity platform") and its password grant no resource, so the audience
// is added here rather than by hand-writing the grants.
func withForm(ctx context.Context, base *http.Client, params url.Values) context.Context {
	rt := base.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc := *base
	hc.Transport = formParams{next: rt, params: params}
	return context.WithValue(ctx, oauth2.HTTPClient, &hc)
}

type formParams struct {
	next   http.RoundTripper
	params url.Values
}

func (f formParams) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || r.Body == nil {
		return f.next.RoundTrip(r)
	}
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	v, err := url.ParseQuery(string(b))
	if err != nil {
		return nil, err
	}
	for k, vs := range f.params {
		v[k] = vs
	}
	enc := v.Encode()
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(strings.NewReader(enc))
	r2.ContentLength = int64(len(enc))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(enc)), nil }
	return f.next.RoundTrip(r2)
}

// fetchToken obtains a delegated access token for audience with the configured method.
func (c *Client) fetchToken(ctx context.Context, audience string) (*oauth2.Token, error) {
	switch c.cfg.Auth {
	case AuthPassword:
		// v1 endpoint, resource= (the documented Partner Center sample); x/oauth2 does the grant.
		conf := oauthConfig(c.cfg.Authority, c.cfg.ClientID, c.cfg.ClientSecret)
		conf.Endpoint.TokenURL = c.cfg.Authority + "/oauth2/token"
		tok, err := conf.PasswordCredentialsToken(withForm(ctx, c.http, url.Values{"resource": {audience}}), c.cfg.Username, c.cfg.Password)
		if err != nil {
			return nil, authError("token", err)
		}
		return tok, nil
	default:
		return c.refreshFor(ctx, audience)
	}
}

// refreshFor exchanges the stored refresh token for an access token for audience, and stores the rotated refresh
// token. When Entra refuses a token another replica has already replaced, it retries once with the newer one.
func (c *Client) refreshFor(ctx context.Context, audience string) (*oauth2.Token, error) {
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		st, rev, err := c.cfg.Tokens.Load(ctx)
		if err != nil {
			if errors.Is(err, ErrNoRefreshToken) {
				return nil, &AuthError{Op: "token", Code: "no_refresh_token", Description: err.Error(), Fix: "cosell pc login"}
			}
			return nil, fmt.Errorf("pcapi: load the Partner Center refresh token: %w", err)
		}
		if st.ClientID != "" && st.ClientID != c.cfg.ClientID {
			return nil, &AuthError{Op: "token", Code: "client_mismatch",
				Description: fmt.Sprintf("the stored refresh token was issued to client %s, but COSELL_PC_CLIENT_ID is %s", st.ClientID, c.cfg.ClientID),
				Fix:         "run cosell pc login with this COSELL_PC_CLIENT_ID"}
		}
		if attempt > 0 && st.RefreshToken == lastUsed(lastErr) {
			break
		}
		ts := c.oauthConfig().TokenSource(withForm(ctx, c.http, url.Values{"scope": {strings.Join(Scopes(audience), " ")}}),
			&oauth2.Token{RefreshToken: st.RefreshToken})
		tok, err := ts.Token()
		if err != nil {
			err = authError("token", err)
			if IsAuthExpired(err) {
				lastErr = usedTokenError{err: err, token: st.RefreshToken}
				c.noteRefusal(ctx, st, rev, err)
				continue
			}
			return nil, err
		}
		c.rotated(ctx, st, rev, tok)
		return tok, nil
	}
	return nil, errors.Unwrap(lastErr)
}

// usedTokenError remembers which refresh token a refusal was for, so a retry only happens with a newer one.
type usedTokenError struct {
	err   error
	token string
}

func (u usedTokenError) Error() string { return u.err.Error() }
func (u usedTokenError) Unwrap() error { return u.err }

func lastUsed(err error) string {
	var u usedTokenError
	if errors.As(err, &u) {
		return u.token
	}
	return ""
}

// rotated stores the new refresh token Entra returned (it returns one on every refresh). A conflict means
// another replica stored a newer one meanwhile; Entra keeps both valid, so the newer record wins.
func (c *Client) rotated(ctx context.Context, st StoredToken, rev uint64, tok *oauth2.Token) {
	if tok.RefreshToken == "" || tok.RefreshToken == st.RefreshToken {
		c.observeRefresh(st, nil)
		return
	}
	st.RefreshToken, st.RotatedAt, st.LastError = tok.RefreshToken, c.now(), ""
	if _, err := c.cfg.Tokens.Save(ctx, st, rev); err != nil && !errors.Is(err, ErrTokenConflict) {
		c.log.Error("could not store the rotated Partner Center refresh token; the previous one stays valid until it expires",
			"token", st, "err", err)
	}
	c.observeRefresh(st, nil)
}

// noteRefusal records Entra's refusal on the stored record (for `cosell doctor`), without touching the token.
func (c *Client) noteRefusal(ctx context.Context, st StoredToken, rev uint64, err error) {
	st.LastError = err.Error()
	_, _ = c.cfg.Tokens.Save(ctx, st, rev)
	c.observeRefresh(st, err)
}

func (c *Client) observeRefresh(st StoredToken, err error) {
	if c.cfg.OnRefresh != nil {
		c.cfg.OnRefresh(st.ExpiresAt(), err)
	}
}

func (c *Client) now() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

// Login is the one-time consent `cosell pc login` runs: the OAuth 2.0 device authorization grant (RFC 8628)
// against the tenant's Entra authority, as the Referrals Admin user, with x/oauth2's DeviceAuth. prompt is
// given Entra's message (the URL to open and the code to enter); Login then polls until the user has signed
// in (authorization_pending / slow_down are handled by x/oauth2) and stores the refresh token in store.
// Source: https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code.
func Login(ctx context.Context, cfg LoginConfig, store TokenStore, prompt func(*oauth2.DeviceAuthResponse)) (StoredToken, error) {
	if err := cfg.check(); err != nil {
		return StoredToken{}, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	conf := oauthConfig(strings.TrimRight(cfg.Authority, "/"), cfg.ClientID, cfg.ClientSecret,
		append([]string{"openid", "profile"}, Scopes(ReferralsAudience)...)...)
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return StoredToken{}, authError("devicecode", err)
	}
	prompt(da)
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return StoredToken{}, authError("devicecode token", err)
	}
	if tok.RefreshToken == "" {
		return StoredToken{}, errors.New("pcapi: Entra ID issued no refresh token (the offline_access scope was refused); check the app registration allows it")
	}
	now := time.Now()
	if cfg.Now != nil {
		now = cfg.Now()
	}
	st := StoredToken{RefreshToken: tok.RefreshToken, Method: "device-code", User: idTokenUser(tok),
		Authority: strings.TrimRight(cfg.Authority, "/"), ClientID: cfg.ClientID, LoggedInAt: now, RotatedAt: now}
	if err := Put(ctx, store, st); err != nil {
		return StoredToken{}, err
	}
	return st, nil
}

// Put stores st, replacing whatever is stored (a new login supersedes the old chain).
func Put(ctx context.Context, store TokenStore, st StoredToken) error {
	for range 5 {
		_, rev, err := store.Load(ctx)
		if err != nil && !errors.Is(err, ErrNoRefreshToken) {
			return fmt.Errorf("pcapi: read the token store: %w", err)
		}
		if _, err = store.Save(ctx, st, rev); err == nil {
			return nil
		} else if !errors.Is(err, ErrTokenConflict) {
			return fmt.Errorf("pcapi: store the refresh token: %w", err)
		}
	}
	return ErrTokenConflict
}

// LoginConfig is what the device-code sign-in needs.
type LoginConfig struct {
	Authority    string // https://login.microsoftonline.com/<tenant id>
	ClientID     string // the app registration (a public client, or a web app with ClientSecret)
	ClientSecret string // optional
	HTTPClient   *http.Client
	Now          func() time.Time
}

func (c LoginConfig) check() error {
	if err := checkAuthority(c.Authority); err != nil {
		return err
	}
	if c.ClientID == "" {
		return errors.New("pcapi: COSELL_PC_CLIENT_ID is empty: set it to the app registration's Application (client) ID")
	}
	return nil
}

func checkAuthority(a string) error {
	u, err := url.Parse(a)
	if a == "" || err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("pcapi: COSELL_PC_AUTHORITY %q is not the tenant's Entra authority: use https://login.microsoftonline.com/<your tenant id>", a)
	}
	if strings.Contains(u.Path, "/oauth2") {
		return fmt.Errorf("pcapi: COSELL_PC_AUTHORITY %q includes an endpoint path: use only https://login.microsoftonline.com/<your tenant id>", a)
	}
	return nil
}

// idTokenUser reads preferred_username from the id_token Entra returns with the openid scope, only to show
// who signed in (the token itself was just received over TLS from the authority; it is not trusted further).
func idTokenUser(tok *oauth2.Token) string {
	raw, _ := tok.Extra("id_token").(string)
	parts := strings.Split(raw, ".")
	if len(parts) < 2 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		PreferredUsername string `json:"preferred_username"`
		UPN               string `json:"upn"`
	}
	if json.NewDecoder(bytes.NewReader(b)).Decode(&claims) != nil {
		return ""
	}
	if claims.PreferredUsername != "" {
		return claims.PreferredUsername
	}
	return claims.UPN
}

// MemoryTokenStore keeps the record in this process only. It suits tests and one-shot tools; the stages use
// a shared store (KVTokenStore) so a rotated token survives restarts and reaches every replica.
type MemoryTokenStore struct {
	mu  sync.Mutex
	tok StoredToken
	rev uint64
}

// NewMemoryTokenStore holds st (an empty RefreshToken means none).
func NewMemoryTokenStore(st StoredToken) *MemoryTokenStore {
	m := &MemoryTokenStore{tok: st}
	if st.RefreshToken != "" {
		m.rev = 1
	}
	return m
}

// Load returns the record.
func (m *MemoryTokenStore) Load(context.Context) (StoredToken, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rev == 0 {
		return StoredToken{}, 0, ErrNoRefreshToken
	}
	return m.tok, m.rev, nil
}

// Save compares the revision and stores t.
func (m *MemoryTokenStore) Save(_ context.Context, t StoredToken, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev != m.rev {
		return 0, ErrTokenConflict
	}
	m.tok = t
	m.rev++
	return m.rev, nil
}
