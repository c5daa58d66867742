// Package oidctest is an OpenID Connect issuer for tests, shaped like Microsoft Entra ID's v2.0 endpoint:
// discovery, a JWKS, an authorization endpoint that signs in whoever the test says is at the browser, and a
// token endpoint that checks what Entra checks (client secret, exact redirect URI, single-use code, PKCE
// S256 verifier) and returns an RS256 ID token with Entra's claims (oid, tid, preferred_username, name,
// roles, groups, ver 2.0). It runs over real HTTP on 127.0.0.1, so the real go-oidc and x/oauth2 clients
// talk to it unchanged.
//
// Sources: OpenID Connect Core 1.0 §3.1 (authorization code flow), RFC 7636 (PKCE), Microsoft identity
// platform "ID token claims reference" (learn.microsoft.com/entra/identity-platform/id-token-claims-reference)
// and "OAuth 2.0 authorization code flow" (…/v2-oauth2-auth-code-flow: AADSTS50148 when the verifier does
// not match the challenge, codes valid about 10 minutes, single use).
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// User is who the issuer signs in at its authorization endpoint.
type User struct {
	// Name is the preferred_username (Entra: the UPN, e.g. ann@contoso.com); Display the name claim.
	Name, Display string
	// Roles are the app roles assigned to the user (the roles claim); Groups the groups' object ids.
	Roles, Groups []string
}

// Issuer is the running test issuer.
type Issuer struct {
	// URL is the issuer identifier (iss), e.g. http://127.0.0.1:PORT/TENANT/v2.0, as Entra's is
	// https://login.microsoftonline.com/TENANT/v2.0.
	URL string
	// ClientID and ClientSecret are the one registered client (an Entra app registration).
	ClientID, ClientSecret string
	// Tenant is the tid claim.
	Tenant string

	key  *rsa.PrivateKey
	kid  string
	srv  *httptest.Server
	mu   sync.Mutex
	user *User
	// RedirectURIs are the registered redirect URIs; an authorization request for another is refused.
	redirects []string
	codes     map[string]grant
	// TokenRequests counts calls to the token endpoint.
	TokenRequests int
	replay        string
}

type grant struct {
	user                       User
	redirect, challenge, nonce string
	expires                    time.Time
}

// Start serves an issuer with one client registered for redirectURIs (more with Register) until the
// test ends.
func Start(t testing.TB, redirectURIs ...string) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &Issuer{ClientID: "6731de76-14a6-49ae-97bc-6eba6914391e", ClientSecret: rand.Text(),
		Tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47", key: key, kid: rand.Text()[:8],
		redirects: redirectURIs, codes: map[string]grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", is.discovery)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", is.keys)
	mux.HandleFunc("GET /{tenant}/oauth2/v2.0/authorize", is.authorize)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", is.token)
	mux.HandleFunc("GET /{tenant}/oauth2/v2.0/logout", func(w http.ResponseWriter, r *http.Request) {
		if to := r.URL.Query().Get("post_logout_redirect_uri"); to != "" {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		_, _ = w.Write([]byte("signed out"))
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL + "/" + is.Tenant + "/v2.0"
	return is
}

// Register adds a redirect URI to the client (the app registration's list).
func (is *Issuer) Register(redirectURI string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.redirects = append(is.redirects, redirectURI)
}

// SignIn makes u the user at the browser: the authorization endpoint signs them in without a prompt.
// With no user, it answers access_denied (the user cancelled).
func (is *Issuer) SignIn(u *User) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.user = u
}

func (is *Issuer) base() string { return is.srv.URL + "/" + is.Tenant }

func (is *Issuer) discovery(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("tenant") != is.Tenant {
		http.Error(w, `{"error":"invalid_tenant"}`, http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                is.URL,
		"authorization_endpoint":                is.base() + "/oauth2/v2.0/authorize",
		"token_endpoint":                        is.base() + "/oauth2/v2.0/token",
		"jwks_uri":                              is.base() + "/discovery/v2.0/keys",
		"end_session_endpoint":                  is.base() + "/oauth2/v2.0/logout",
		"response_types_supported":              []string{"code", "id_token", "code id_token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		"code_challenge_methods_supported":      []string{"plain", "S256"},
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "nonce", "name", "preferred_username", "oid", "tid", "roles", "groups", "ver"},
	})
}

func (is *Issuer) keys(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: "RS256", Use: "sig"}}})
}

// authorize answers like Entra: errors it can send back go to the redirect URI as error=...&state=...;
// an unknown client or redirect URI is shown to the user and never redirected to.
func (is *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	is.mu.Lock()
	defer is.mu.Unlock()
	redirect := q.Get("redirect_uri")
	if q.Get("client_id") != is.ClientID || !slices.Contains(is.redirects, redirect) {
		http.Error(w, "AADSTS50011: the redirect URI "+redirect+" does not match the redirect URIs configured for the application", http.StatusBadRequest)
		return
	}
	back := func(v url.Values) {
		v.Set("state", q.Get("state"))
		http.Redirect(w, r, redirect+"?"+v.Encode(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		back(url.Values{"error": {"unsupported_response_type"}})
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		back(url.Values{"error": {"invalid_scope"}, "error_description": {"openid scope missing"}})
		return
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		// Entra accepts plain too; cosell must send S256, so this issuer is stricter.
		back(url.Values{"error": {"invalid_request"}, "error_description": {"PKCE S256 code_challenge required"}})
		return
	case is.user == nil:
		back(url.Values{"error": {"access_denied"}, "error_description": {"AADSTS65004: User declined to consent"}})
		return
	}
	code := rand.Text()
	is.codes[code] = grant{user: *is.user, redirect: redirect, challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), expires: time.Now().Add(10 * time.Minute)}
	back(url.Values{"code": {code}})
}

func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.TokenRequests++
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != is.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(is.ClientSecret)) != 1 {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code")
		return
	}
	code := r.PostForm.Get("code")
	g, ok := is.codes[code]
	delete(is.codes, code) // single use, whatever happens next
	if !ok || time.Now().After(g.expires) {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired or was already used.")
		return
	}
	if r.PostForm.Get("redirect_uri") != g.redirect {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "AADSTS500112: The reply address does not match the reply address provided when requesting Authorization code.")
		return
	}
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "AADSTS50148: The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.")
		return
	}
	idToken := is.IDToken(g.user, g.nonce, time.Hour)
	if is.replay != "" {
		idToken = is.replay
	}
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "scope": "openid profile email",
		"expires_in": 3600, "access_token": rand.Text(), "id_token": idToken})
}

// IDToken is an ID token for u the issuer signs, valid for ttl (negative: already expired), for the client.
func (is *Issuer) IDToken(u User, nonce string, ttl time.Duration) string {
	return is.sign(is.key, is.kid, is.claims(u, nonce, ttl))
}

// ReplayIDToken makes the token endpoint answer with tok instead of a fresh ID token: an attacker's
// token injected into someone else's sign-in, whose nonce is not that sign-in's.
func (is *Issuer) ReplayIDToken(tok string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.replay = tok
}

// ForgedIDToken is the same token signed with a key the issuer never published.
func (is *Issuer) ForgedIDToken(u User, ttl time.Duration) string {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return is.sign(k, is.kid, is.claims(u, "", ttl))
}

// TokenFor is an ID token with claims over the usual ones (e.g. another aud or iss).
func (is *Issuer) TokenFor(u User, ttl time.Duration, over map[string]any) string {
	c := is.claims(u, "", ttl)
	for k, v := range over {
		c[k] = v
	}
	return is.sign(is.key, is.kid, c)
}

func (is *Issuer) claims(u User, nonce string, ttl time.Duration) map[string]any {
	now := time.Now()
	oid := base64.RawURLEncoding.EncodeToString([]byte(u.Name))
	c := map[string]any{
		"iss": is.URL, "aud": is.ClientID, "sub": "sub-" + oid, "oid": oid, "tid": is.Tenant, "ver": "2.0",
		"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(ttl).Unix(),
		"preferred_username": u.Name, "name": u.Display,
	}
	if ttl < 0 {
		c["iat"], c["nbf"] = now.Add(ttl-time.Hour).Unix(), now.Add(ttl-time.Hour).Unix()
	}
	if nonce != "" {
		c["nonce"] = nonce
	}
	if len(u.Roles) > 0 {
		c["roles"] = u.Roles
	}
	if len(u.Groups) > 0 {
		c["groups"] = u.Groups
	}
	return c
}

func (is *Issuer) sign(key *rsa.PrivateKey, kid string, claims map[string]any) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		panic(err)
	}
	tok, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		panic(err)
	}
	return tok
}

func oauthError(w http.ResponseWriter, code int, err, desc string) {
	writeJSON(w, code, map[string]string{"error": err, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
