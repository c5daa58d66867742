package pcemu

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The emulated Entra ID tenant. It issues what Entra ID issues — app-only tokens from client credentials,
// delegated (App+User) tokens from the device-code, refresh-token and password grants — and the Partner Center
// APIs check what the real ones check: the Referrals API refuses app-only tokens, and each host refuses a token
// issued for the other (audience). Refresh tokens rotate on every use and fail with invalid_grant and the AADSTS
// code Entra uses once revoked or expired. Sources: https://learn.microsoft.com/entra/identity-platform/
// v2-oauth2-device-code (device flow and its errors), .../refresh-tokens (90-day inactivity, rotation),
// .../reference-error-codes (AADSTS codes), and ../shared/reference/partner-center.md (audiences, App+User only).

// Audiences of the two Partner Center hosts.
const (
	AudienceReferrals = "https://api.partner.microsoft.com"
	AudienceWebhooks  = "https://api.partnercenter.microsoft.com"
)

// DefaultUser is the Referrals Admin user of the emulated tenant.
const DefaultUser = "referrals.admin@contoso.example"

// accessToken is what the emulator knows about a bearer token it issued.
type accessToken struct {
	audience string
	appOnly  bool   // client credentials: no user
	user     string // delegated
	expires  time.Time
}

// refreshToken is one issued refresh token. Entra ID keeps a replaced one valid until it expires itself;
// so does the emulator.
type refreshToken struct {
	user     string
	clientID string
	issued   time.Time
	lastUsed time.Time
	revoked  bool
	expired  bool // forced by /_emulator/refresh-tokens/expire
}

// deviceCode is one pending device authorization.
type deviceCode struct {
	userCode, clientID, scope string
	expires                   time.Time
	lastPoll                  time.Time
	approvedBy                string
}

// aad writes an Entra ID error body: {"error","error_description","error_codes",...}.
func aad(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	writeJSON(w, status, map[string]any{
		"error": code, "error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", aadsts, desc,
			newGUID(), newGUID(), time.Now().UTC().Format("2006-01-02 15:04:05Z")),
		"error_codes": []int{aadsts},
		"timestamp":   time.Now().UTC().Format("2006-01-02 15:04:05Z"), "trace_id": newGUID(), "correlation_id": newGUID(),
	})
}

// tokenRequest is the parsed, tenant-checked form of a token or devicecode request.
type tokenRequest struct {
	w              http.ResponseWriter
	r              *http.Request
	v1             bool
	clientID       string
	secret         string
	secretProvided bool
}

func (e *Emulator) parseTokenRequest(w http.ResponseWriter, r *http.Request, v1 bool) (*tokenRequest, bool) {
	if t := r.PathValue("tenant"); t != e.opts.TenantID {
		aad(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", t))
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		aad(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must be application/x-www-form-urlencoded.")
		return nil, false
	}
	tr := &tokenRequest{w: w, r: r, v1: v1, clientID: r.PostForm.Get("client_id"), secret: r.PostForm.Get("client_secret")}
	tr.secretProvided = r.PostForm.Has("client_secret")
	if u, p, ok := r.BasicAuth(); ok { // x/oauth2 may send the credentials in the header, URL-encoded
		tr.clientID, tr.secret, tr.secretProvided = unescape(u), unescape(p), true
	}
	switch {
	case tr.clientID == "":
		aad(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return nil, false
	case tr.clientID != e.opts.ClientID:
		aad(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", tr.clientID, e.opts.TenantID))
		return nil, false
	case tr.secretProvided && tr.secret != e.opts.ClientSecret:
		aad(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+tr.clientID+"'.")
		return nil, false
	}
	return tr, true
}

// audience reads the requested resource: resource= on v1, the resource part of the scopes on v2.0 (one
// resource per request, as Entra ID requires).
func (e *Emulator) audience(tr *tokenRequest) (string, bool) {
	if tr.v1 {
		res := strings.TrimRight(tr.r.PostForm.Get("resource"), "/")
		if res == "" {
			aad(tr.w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'resource'.")
			return "", false
		}
		return e.knownResource(tr, res)
	}
	return e.scopeAudience(tr, tr.r.PostForm.Get("scope"))
}

func (e *Emulator) scopeAudience(tr *tokenRequest, scope string) (string, bool) {
	if strings.TrimSpace(scope) == "" {
		aad(tr.w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
		return "", false
	}
	var res string
	for _, s := range strings.Fields(scope) {
		switch s {
		case "openid", "profile", "offline_access", "email":
			continue
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			aad(tr.w, http.StatusBadRequest, "invalid_scope", 70011, fmt.Sprintf("The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.", s))
			return "", false
		}
		r := u.Scheme + "://" + u.Host
		if res != "" && r != res {
			aad(tr.w, http.StatusBadRequest, "invalid_scope", 28000, "Provided value for the input parameter scope is not valid because it contains more than one resource.")
			return "", false
		}
		res = r
	}
	if res == "" {
		aad(tr.w, http.StatusBadRequest, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid: it names no resource.")
		return "", false
	}
	return e.knownResource(tr, res)
}

func (e *Emulator) knownResource(tr *tokenRequest, res string) (string, bool) {
	if res != AudienceReferrals && res != AudienceWebhooks {
		aad(tr.w, http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf("The resource principal named %s was not found in the tenant named %s.", res, e.opts.TenantID))
		return "", false
	}
	return res, true
}

// token is the v2.0 token endpoint (scope=); tokenV1 the v1 endpoint (resource=).
func (e *Emulator) tokenV2(w http.ResponseWriter, r *http.Request) { e.token(w, r, false) }
func (e *Emulator) tokenV1(w http.ResponseWriter, r *http.Request) { e.token(w, r, true) }

func (e *Emulator) token(w http.ResponseWriter, r *http.Request, v1 bool) {
	e.count("token")
	tr, ok := e.parseTokenRequest(w, r, v1)
	if !ok {
		return
	}
	switch g := r.PostForm.Get("grant_type"); g {
	case "client_credentials":
		e.count("token.client_credentials")
		if !tr.secretProvided {
			aad(w, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
			return
		}
		aud, ok := e.audience(tr)
		if !ok {
			return
		}
		e.issue(tr, aud, accessToken{appOnly: true}, "", false)
	case "urn:ietf:params:oauth:grant-type:device_code":
		e.count("token.device_code")
		e.deviceToken(tr)
	case "refresh_token":
		e.count("token.refresh_token")
		e.refreshGrant(tr)
	case "password":
		e.count("token.password")
		e.passwordGrant(tr)
	case "":
		aad(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
	default:
		aad(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+g+"'.")
	}
}

// issue answers a token request with an access token for aud and, for a delegated grant that asked for
// offline_access (v2.0) or on v1, a new refresh token.
func (e *Emulator) issue(tr *tokenRequest, aud string, at accessToken, user string, withRefresh bool) {
	tok := "emu." + randomHex(24)
	at.audience, at.user = aud, user
	at.expires = time.Now().Add(e.opts.TokenTTL)
	var rt string
	e.mu.Lock()
	e.tokens[tok] = &at
	if withRefresh {
		rt = "emurt." + randomHex(32)
		now := time.Now()
		e.refresh[rt] = &refreshToken{user: user, clientID: tr.clientID, issued: now, lastUsed: now}
		e.counts["refresh_tokens.issued"]++
	}
	e.mu.Unlock()
	secs := int(e.opts.TokenTTL.Seconds())
	body := map[string]any{"token_type": "Bearer", "access_token": tok}
	if tr.v1 {
		body["expires_in"], body["ext_expires_in"] = strconv.Itoa(secs), strconv.Itoa(secs)
		body["expires_on"] = strconv.FormatInt(at.expires.Unix(), 10)
		body["resource"] = aud
	} else {
		body["expires_in"], body["ext_expires_in"] = secs, secs
		if s := tr.r.PostForm.Get("scope"); s != "" {
			body["scope"] = s
		}
	}
	if rt != "" {
		body["refresh_token"] = rt
	}
	if user != "" && strings.Contains(" "+tr.r.PostForm.Get("scope")+" ", " openid ") {
		body["id_token"] = unsignedJWT(map[string]any{"aud": tr.clientID, "tid": e.opts.TenantID,
			"iss": e.base() + "/" + e.opts.TenantID + "/v2.0", "preferred_username": user, "name": "Referrals Admin"})
	}
	writeJSON(tr.w, http.StatusOK, body)
}

// unsignedJWT builds an id_token shaped like Entra's (alg none: the emulator signs nothing it does not have to).
func unsignedJWT(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

func wantsRefresh(tr *tokenRequest) bool {
	return tr.v1 || strings.Contains(" "+tr.r.PostForm.Get("scope")+" ", " offline_access ")
}

// deviceAuthorize is POST /{tenant}/oauth2/v2.0/devicecode.
func (e *Emulator) deviceAuthorize(w http.ResponseWriter, r *http.Request) {
	e.count("devicecode")
	tr, ok := e.parseTokenRequest(w, r, false)
	if !ok {
		return
	}
	if _, ok := e.audience(tr); !ok {
		return
	}
	dc := &deviceCode{userCode: userCode(), clientID: tr.clientID, scope: r.PostForm.Get("scope"),
		expires: time.Now().Add(e.opts.DeviceCodeTTL)}
	if e.opts.ApproveSignIns {
		dc.approvedBy = DefaultUser
	}
	code := "emudc." + randomHex(24)
	e.mu.Lock()
	e.devices[code] = dc
	e.mu.Unlock()
	verify := e.base() + "/_emulator/devicelogin"
	writeJSON(w, http.StatusOK, map[string]any{
		"user_code": dc.userCode, "device_code": code, "verification_uri": verify,
		"expires_in": int(e.opts.DeviceCodeTTL.Seconds()), "interval": int(e.opts.DeviceCodeInterval.Seconds()),
		"message": fmt.Sprintf("To sign in, use a web browser to open the page %s and enter the code %s to authenticate.", verify, dc.userCode),
	})
}

func userCode() string {
	const alphabet = "BCDFGHJKLMNPQRSTVWXZ23456789"
	b := []byte(randomHex(9))
	out := make([]byte, 9)
	for i := range out {
		out[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(out)
}

// deviceToken polls a device code: authorization_pending until approved, slow_down when polled faster than
// the interval, expired_token after expires_in.
func (e *Emulator) deviceToken(tr *tokenRequest) {
	code := tr.r.PostForm.Get("device_code")
	e.mu.Lock()
	dc, ok := e.devices[code]
	var pending, slow, expired bool
	var user string
	if ok {
		now := time.Now()
		switch {
		case now.After(dc.expires):
			expired = true
		case dc.approvedBy == "":
			pending = true
			slow = !dc.lastPoll.IsZero() && now.Sub(dc.lastPoll) < e.opts.DeviceCodeInterval/2
			dc.lastPoll = now
		default:
			user = dc.approvedBy
			delete(e.devices, code)
		}
	}
	e.mu.Unlock()
	switch {
	case !ok || dc.clientID != tr.clientID:
		aad(tr.w, http.StatusBadRequest, "invalid_grant", 70000, "Provided grant is invalid or malformed: the device_code is unknown or was issued to another client.")
	case expired:
		aad(tr.w, http.StatusBadRequest, "expired_token", 70020, "The provided value for the input parameter 'device_code' is not valid. This device code has expired.")
	case slow:
		aad(tr.w, http.StatusBadRequest, "slow_down", 70016, "OAuth 2.0 device flow error. Polling too fast: wait the interval between requests.")
	case pending:
		aad(tr.w, http.StatusBadRequest, "authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
	default:
		tr.r.PostForm.Set("scope", dc.scope)
		aud, ok := e.scopeAudience(tr, dc.scope)
		if !ok {
			return
		}
		e.issue(tr, aud, accessToken{}, user, wantsRefresh(tr))
	}
}

// refreshGrant redeems a refresh token for an access token for the requested audience and a new refresh token.
func (e *Emulator) refreshGrant(tr *tokenRequest) {
	rt := tr.r.PostForm.Get("refresh_token")
	if rt == "" {
		aad(tr.w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'refresh_token'.")
		return
	}
	aud, ok := e.audience(tr)
	if !ok {
		return
	}
	e.mu.Lock()
	info, found := e.refresh[rt]
	var rec refreshToken
	if found {
		rec = *info
	}
	now := time.Now()
	inactive := found && now.Sub(rec.lastUsed) > e.opts.RefreshTokenInactivity
	if found && !rec.revoked && !rec.expired && !inactive && rec.clientID == tr.clientID {
		info.lastUsed = now
	}
	e.mu.Unlock()
	switch {
	case !found:
		aad(tr.w, http.StatusBadRequest, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid: the refresh token was not issued by this tenant.")
	case rec.clientID != tr.clientID:
		aad(tr.w, http.StatusBadRequest, "invalid_grant", 700005, "Provided Authorization Code is intended to use against other tenant or client, thus rejected.")
	case rec.revoked:
		aad(tr.w, http.StatusBadRequest, "invalid_grant", 50173, fmt.Sprintf("The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '%s' and the TokensValidFrom date (before which tokens are not valid) for this user is '%s'.",
			rec.issued.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano)))
	case rec.expired || inactive:
		aad(tr.w, http.StatusBadRequest, "invalid_grant", 700082, fmt.Sprintf("The refresh token has expired due to inactivity. The token was issued on %s and was inactive for 90.00:00:00.",
			rec.issued.UTC().Format(time.RFC3339Nano)))
	default:
		e.issue(tr, aud, accessToken{}, rec.user, true)
	}
}

// passwordGrant is the resource-owner password grant, for an account without MFA.
func (e *Emulator) passwordGrant(tr *tokenRequest) {
	user, pass := tr.r.PostForm.Get("username"), tr.r.PostForm.Get("password")
	e.mu.Lock()
	mfa := e.mfaRequired
	e.mu.Unlock()
	switch {
	case user == "" || pass == "":
		aad(tr.w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameters: 'username' and 'password'.")
		return
	case !strings.EqualFold(user, e.opts.Username) || pass != e.opts.Password:
		aad(tr.w, http.StatusBadRequest, "invalid_grant", 50126, "Error validating credentials due to invalid username or password.")
		return
	case mfa:
		aad(tr.w, http.StatusBadRequest, "invalid_grant", 50076, "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '"+AudienceReferrals+"'.")
		return
	}
	aud, ok := e.audience(tr)
	if !ok {
		return
	}
	e.issue(tr, aud, accessToken{}, e.opts.Username, wantsRefresh(tr))
}

// apiAuth checks the bearer token of a call to the host serving audience. It writes the refusal and returns
// false when the token is missing, expired, for the other host, or app-only on the Referrals API.
func (e *Emulator) apiAuth(w http.ResponseWriter, r *http.Request, audience string) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request", error_description="no bearer token"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "The bearer token is missing.", "")
		return false
	}
	e.mu.Lock()
	at, found := e.tokens[tok]
	var cp accessToken
	if found {
		cp = *at
	}
	e.mu.Unlock()
	switch {
	case !found || !time.Now().Before(cp.expires):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="The access token is expired or invalid"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated", "The bearer token is invalid or expired.", "")
		return false
	case cp.audience != audience:
		e.count("refused.audience")
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="The audience is invalid"`)
		writeError(w, http.StatusUnauthorized, "unauthenticated",
			fmt.Sprintf("The token's audience '%s' is not valid for this host; request a token for the resource '%s'.", cp.audience, audience), "")
		return false
	case cp.appOnly && audience == AudienceReferrals:
		// The Referrals API supports App+User only (partner-center.md §1 "Auth"). The exact body Partner
		// Center answers an app-only token with is not documented; this is its error shape with a 403.
		e.count("refused.app_only")
		writeError(w, http.StatusForbidden, "accessDenied",
			"App-only (client credentials) tokens are not supported by the Referrals API: use App+User (delegated) credentials of a user with the Referrals Admin role.", "")
		return false
	}
	return true
}

// emuDeviceLogin approves a pending device code as the tenant's Referrals Admin user: POST
// /_emulator/devicelogin with user_code (a form, as the browser page posts it, or JSON {"userCode","user"}).
// GET shows the page a user opens from the verification_uri.
func (e *Emulator) emuDeviceLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>Partner Center emulator sign-in</title><h1>Enter code</h1>
<form method="post"><input name="user_code" autofocus> <button>Sign in as `+DefaultUser+`</button></form>`)
		return
	}
	var in struct {
		UserCode string `json:"userCode"`
		User     string `json:"user"`
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		if err := decodeStrict(r.Body, &in); err != nil {
			writeError(w, http.StatusBadRequest, "invalidRequest", err.Error(), "")
			return
		}
	} else {
		in.UserCode, in.User = r.FormValue("user_code"), r.FormValue("user")
	}
	if in.User == "" {
		in.User = DefaultUser
	}
	if err := e.ApproveDeviceCode(in.UserCode, in.User); err != nil {
		writeError(w, http.StatusNotFound, "itemNotFound", err.Error(), "userCode")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"approved": in.UserCode, "user": in.User})
}

// ApproveDeviceCode signs user in for the pending device code userCode, as the user would in a browser.
func (e *Emulator) ApproveDeviceCode(userCode, user string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, dc := range e.devices {
		if strings.EqualFold(dc.userCode, strings.TrimSpace(userCode)) && time.Now().Before(dc.expires) {
			dc.approvedBy = user
			return nil
		}
	}
	return fmt.Errorf("no pending device code %q (expired, already used, or mistyped)", userCode)
}

// IssueRefreshToken returns a refresh token for the tenant's Referrals Admin user, as if they had completed a
// device-code sign-in: the harness uses it (through the KV token store) instead of a browser.
func (e *Emulator) IssueRefreshToken() string {
	rt := "emurt." + randomHex(32)
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refresh[rt] = &refreshToken{user: DefaultUser, clientID: e.opts.ClientID, issued: now, lastUsed: now}
	e.counts["refresh_tokens.issued"]++
	return rt
}

// RevokeRefreshTokens revokes the given refresh tokens, or every one when none is given (as "revoke sessions"
// or a password reset does); ExpireRefreshTokens makes them fail as unused for 90 days.
func (e *Emulator) RevokeRefreshTokens(tokens ...string) int {
	return e.markRefresh(tokens, func(r *refreshToken) { r.revoked = true })
}

// ExpireRefreshTokens makes the given refresh tokens (or all) fail with AADSTS700082.
func (e *Emulator) ExpireRefreshTokens(tokens ...string) int {
	return e.markRefresh(tokens, func(r *refreshToken) { r.expired = true })
}

func (e *Emulator) markRefresh(tokens []string, f func(*refreshToken)) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	if len(tokens) == 0 {
		for _, r := range e.refresh {
			f(r)
			n++
		}
		return n
	}
	for _, t := range tokens {
		if r, ok := e.refresh[t]; ok {
			f(r)
			n++
		}
	}
	return n
}

// SetMFARequired makes the password grant fail with AADSTS50076, as for an account with MFA.
func (e *Emulator) SetMFARequired(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mfaRequired = on
}

// emuRefreshTokens is the control API: POST /_emulator/refresh-tokens issues one ({"refresh_token"});
// POST /_emulator/refresh-tokens/{action} with {"refreshTokens":[...]} (empty: all) revokes or expires them.
func (e *Emulator) emuRefreshTokens(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if action == "" {
		writeJSON(w, http.StatusOK, map[string]string{"refresh_token": e.IssueRefreshToken(), "user": DefaultUser})
		return
	}
	var in struct {
		RefreshTokens []string `json:"refreshTokens"`
	}
	if r.ContentLength != 0 {
		if err := decodeStrict(r.Body, &in); err != nil {
			writeError(w, http.StatusBadRequest, "invalidRequest", err.Error(), "")
			return
		}
	}
	var n int
	switch action {
	case "revoke":
		n = e.RevokeRefreshTokens(in.RefreshTokens...)
	case "expire":
		n = e.ExpireRefreshTokens(in.RefreshTokens...)
	default:
		writeError(w, http.StatusNotFound, "itemNotFound", "unknown action "+action+": use revoke or expire", "action")
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{action + "d": n})
}
