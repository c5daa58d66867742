package auditor

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OpenID Connect sign-in for the status page: the authorization code flow with PKCE (S256), state and
// nonce, through go-oidc (discovery, JWKS, ID token checks) over x/oauth2 (the code exchange). Microsoft
// Entra ID is the documented issuer: https://login.microsoftonline.com/<tenant-id>/v2.0, whose v2.0 ID
// tokens carry the user in preferred_username (the UPN; name is the display name, oid the immutable id)
// and the app roles assigned to them in roles, or, configured on the app registration, group object ids
// in groups (more than 200 groups leave only an overage pointer in _claim_names). Source: Microsoft identity
// platform, "ID token claims reference", learn.microsoft.com/entra/identity-platform/id-token-claims-reference.

const (
	oidcCookie = "cosell_oidc"
	// oidcFlowTTL bounds the sign-in round trip at the issuer (Entra's codes live about 10 minutes).
	oidcFlowTTL = 10 * time.Minute
	// oidcStartPath begins a sign-in; the callback is the path of COSELL_AUTH_OIDC_REDIRECT_URL.
	oidcStartPath = "/auth/oidc"
)

type oidcLogin struct {
	cfg      AuthConfig
	callback string // the redirect URL's path
	client   *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config
	logout   string // the issuer's end_session_endpoint, "" when it has none
}

func newOIDCLogin(cfg AuthConfig) (*oidcLogin, error) {
	var missing []string
	for name, v := range map[string]string{"COSELL_AUTH_OIDC_ISSUER": cfg.OIDCIssuer, "COSELL_AUTH_OIDC_CLIENT_ID": cfg.OIDCClientID,
		"COSELL_AUTH_OIDC_CLIENT_SECRET": cfg.OIDCClientSecret, "COSELL_AUTH_OIDC_REDIRECT_URL": cfg.OIDCRedirectURL} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("OpenID Connect sign-in needs %s too (Entra ID: the app registration's Application (client) ID, a client secret, and its Web redirect URI https://HOST/auth/callback)", strings.Join(missing, ", "))
	}
	u, err := url.Parse(cfg.OIDCRedirectURL)
	if err != nil || !u.IsAbs() || u.Path == "" || u.Path == "/" {
		return nil, fmt.Errorf("COSELL_AUTH_OIDC_REDIRECT_URL: %q is not an absolute URL with a path (e.g. https://cosell.example.com/auth/callback)", cfg.OIDCRedirectURL)
	}
	if u.Scheme != "https" && !isLoopbackHost(u.Host) {
		return nil, fmt.Errorf("COSELL_AUTH_OIDC_REDIRECT_URL: %q must be https (Entra ID accepts http only for localhost)", cfg.OIDCRedirectURL)
	}
	if len(cfg.OIDCOperators) == 0 && len(cfg.OIDCViewers) == 0 {
		return nil, errors.New("COSELL_AUTH_OIDC_OPERATORS and COSELL_AUTH_OIDC_VIEWERS are both empty: nobody the issuer signs in would get a role")
	}
	return &oidcLogin{cfg: cfg, callback: u.Path, client: &http.Client{Timeout: 15 * time.Second}}, nil
}

// ready discovers the issuer once (and again after a failure, so an issuer away at start-up does not need
// a restart).
func (o *oidcLogin) ready() (*oidc.IDTokenVerifier, *oauth2.Config, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider == nil {
		// The provider keeps this context for fetching rotated keys later: not a request's.
		ctx := oidc.ClientContext(context.Background(), o.client)
		p, err := oidc.NewProvider(ctx, o.cfg.OIDCIssuer)
		if err != nil {
			return nil, nil, fmt.Errorf("OpenID Connect issuer %s (COSELL_AUTH_OIDC_ISSUER): %w", o.cfg.OIDCIssuer, err)
		}
		var extra struct {
			EndSession string `json:"end_session_endpoint"`
		}
		_ = p.Claims(&extra)
		o.provider, o.logout = p, extra.EndSession
		o.verifier = p.VerifierContext(ctx, &oidc.Config{ClientID: o.cfg.OIDCClientID})
		o.oauth = oauth2.Config{ClientID: o.cfg.OIDCClientID, ClientSecret: o.cfg.OIDCClientSecret,
			Endpoint: p.Endpoint(), RedirectURL: o.cfg.OIDCRedirectURL, Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	}
	return o.verifier, &o.oauth, nil
}

// principal maps a verified ID token to a principal: the name from COSELL_AUTH_OIDC_USER_CLAIM (then
// email, then sub), the role from the values of COSELL_AUTH_OIDC_ROLE_CLAIM.
func (o *oidcLogin) principal(t *oidc.IDToken) (Principal, error) {
	var claims map[string]any
	if err := t.Claims(&claims); err != nil {
		return Principal{}, err
	}
	name := claimString(claims[o.cfg.OIDCUserClaim])
	for _, c := range []string{"email", "sub"} {
		if name == "" {
			name = claimString(claims[c])
		}
	}
	values := claimStrings(claims[o.cfg.OIDCRoleClaim])
	if names, ok := claims["_claim_names"].(map[string]any); ok && len(values) == 0 {
		if _, over := names[o.cfg.OIDCRoleClaim]; over {
			return Principal{Name: name}, fmt.Errorf("%s is in more groups than fit in a token (Entra's groups overage): use app roles (COSELL_AUTH_OIDC_ROLE_CLAIM=roles) or emit only the groups assigned to the application", name)
		}
	}
	role := ""
	for _, v := range values {
		if slices.Contains(o.cfg.OIDCOperators, v) {
			role = RoleOperator
			break
		}
		if slices.Contains(o.cfg.OIDCViewers, v) {
			role = RoleViewer
		}
	}
	if role == "" && slices.Contains(o.cfg.OIDCViewers, "*") {
		role = RoleViewer
	}
	if role == "" {
		return Principal{Name: name}, fmt.Errorf("%s is signed in, but the token's %s claim (%s) holds none of COSELL_AUTH_OIDC_OPERATORS (%s) or COSELL_AUTH_OIDC_VIEWERS (%s): assign the user an app role (Entra ID: Enterprise applications → the app → Users and groups)",
			name, o.cfg.OIDCRoleClaim, strings.Join(values, ", "), strings.Join(o.cfg.OIDCOperators, ", "), strings.Join(o.cfg.OIDCViewers, ", "))
	}
	return Principal{Name: name, Role: role}, nil
}

// bearer verifies a JWT sent as Authorization: Bearer: an ID token (audience: the client id) of the
// issuer, unexpired, signed by a key it publishes.
func (o *oidcLogin) bearer(ctx context.Context, raw string) (Principal, error) {
	v, _, err := o.ready()
	if err != nil {
		return Principal{}, err
	}
	t, err := v.Verify(ctx, raw)
	if err != nil {
		return Principal{}, err
	}
	p, err := o.principal(t)
	p.Via = "bearer"
	return p, err
}

func claimString(v any) string {
	s, _ := v.(string)
	return s
}

func claimStrings(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// oidcStart sends the browser to the issuer with a fresh state, nonce and PKCE verifier, kept in a signed,
// HttpOnly cookie for the round trip.
func (g *Guard) oidcStart(w http.ResponseWriter, r *http.Request) {
	if !g.hostAllowed(r.Host) {
		g.misdirected(w, r)
		return
	}
	_, oc, err := g.oidc.ready()
	if err != nil {
		g.log.Warn("OpenID Connect sign-in unavailable", "err", err)
		http.Error(w, "sign-in is unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	http.SetCookie(w, g.cookie(r, oidcCookie, g.seal("oidc", oidcFlowTTL, state, nonce, verifier, safeNext(r.FormValue("next"))), oidcFlowTTL))
	http.Redirect(w, r, oc.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// oidcCallback is the redirect URI: it checks the state against the cookie, exchanges the code with the
// PKCE verifier, verifies the ID token (signature, issuer, audience, expiry) and its nonce, maps the role
// and starts a session.
func (g *Guard) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if !g.hostAllowed(r.Host) {
		g.misdirected(w, r)
		return
	}
	fail := func(code int, msg string, args ...any) {
		g.log.Warn("status page sign-in refused", append([]any{"via", "oidc", "why", msg, "remote", r.RemoteAddr}, args...)...)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		_ = oidcErrorTemplate.Execute(w, msg)
	}
	c, err := r.Cookie(oidcCookie)
	http.SetCookie(w, g.cookie(r, oidcCookie, "", -1))
	if err != nil {
		fail(http.StatusBadRequest, "this sign-in was not started here, or took longer than 10 minutes: start again")
		return
	}
	fs, ok := g.unseal("oidc", c.Value)
	if !ok || len(fs) != 4 {
		fail(http.StatusBadRequest, "this sign-in expired (10 minutes) or its cookie was changed: start again")
		return
	}
	state, nonce, verifier, next := fs[0], fs[1], fs[2], fs[3]
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
		fail(http.StatusBadRequest, "the sign-in's state does not match: start again from this page")
		return
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusUnauthorized, "the issuer refused the sign-in: "+e+": "+q.Get("error_description"))
		return
	}
	v, oc, err := g.oidc.ready()
	if err != nil {
		fail(http.StatusServiceUnavailable, err.Error())
		return
	}
	ctx := oidc.ClientContext(r.Context(), g.oidc.client)
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		fail(http.StatusUnauthorized, "the issuer did not exchange the code: "+err.Error())
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fail(http.StatusUnauthorized, "the issuer's token response has no id_token (is the openid scope allowed?)")
		return
	}
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		fail(http.StatusUnauthorized, "the ID token is not valid: "+err.Error())
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		fail(http.StatusUnauthorized, "the ID token's nonce is not this sign-in's (a replayed token)")
		return
	}
	p, err := g.oidc.principal(idt)
	if err != nil {
		fail(http.StatusForbidden, err.Error(), "user", p.Name)
		return
	}
	http.SetCookie(w, g.cookie(r, sessionCookie, g.seal("session", sessionTTL, p.Name, p.Role, "oidc"), sessionTTL))
	g.log.Info("signed in to the status page", "user", p.Name, "role", p.Role, "via", "oidc")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

var oidcErrorTemplate = template.Must(template.New("oidc").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cosell — sign-in refused</title>` + pageStyle + `</head><body>
<h1>cosell — sign-in refused</h1><p class="bad">{{.}}</p><p><a href="/login">Sign in again</a></p></body></html>`))
