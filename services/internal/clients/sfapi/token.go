package sfapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/k-capehart/go-salesforce/v2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"
)

// The login flows cosell supports, as COSELL_SF_AUTH names them.
const (
	// AuthJWT is the OAuth 2.0 JWT bearer flow: an RS256 assertion signed with the private key of the
	// certificate on the Connected App / External Client App (iss = consumer key, sub = the integration
	// user, aud = the login host). The usual server-to-server choice: no secret, no password.
	AuthJWT = "jwt"
	// AuthClientCredentials is the client credentials flow with the app's "Run As" user. Salesforce serves
	// it only on the org's My Domain, never on login.salesforce.com or test.salesforce.com.
	AuthClientCredentials = "client-credentials"
	// AuthPassword is the username-password flow (password + security token); Salesforce is retiring it.
	AuthPassword = "password"
)

// Audiences of a JWT bearer assertion (Salesforce Help, "OAuth 2.0 JWT Bearer Flow for Server-to-Server
// Integration": aud is https://login.salesforce.com, or https://test.salesforce.com for a sandbox).
const (
	ProductionAudience = "https://login.salesforce.com"
	SandboxAudience    = "https://test.salesforce.com"
)

// IsLoginHost reports whether u is one of Salesforce's shared login hosts rather than an org's own My
// Domain. Client credentials there get 400 invalid_grant "request not supported on this domain"
// (github.com/pozil/pub-sub-api-node-client issue 58).
func IsLoginHost(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	switch strings.ToLower(p.Hostname()) {
	case "login.salesforce.com", "test.salesforce.com":
		return true
	}
	return false
}

// jwtAudience is the aud a JWT for the org at domain must carry: the sandbox login host for sandboxes
// (test.salesforce.com, or a My Domain under .sandbox.my.salesforce.com), the production one otherwise,
// which is what go-salesforce derives too.
func jwtAudience(domain string) string {
	p, err := url.Parse(domain)
	if err == nil {
		h := strings.ToLower(p.Hostname())
		if h == "test.salesforce.com" || strings.HasSuffix(h, ".sandbox.my.salesforce.com") {
			return SandboxAudience
		}
	}
	return ProductionAudience
}

// Flow is the login flow cfg asks for: COSELL_SF_AUTH, or what the settings imply (a JWT key: JWT; a
// password: password; else client credentials).
func (cfg Config) Flow() string {
	switch {
	case cfg.Auth != "":
		return cfg.Auth
	case cfg.JWTKeyFile != "":
		return AuthJWT
	case cfg.Password != "":
		return AuthPassword
	}
	return AuthClientCredentials
}

// SettingsError is a login setting Salesforce would refuse: what is wrong and the fix.
type SettingsError struct{ Problem, Fix string }

func (e *SettingsError) Error() string { return e.Problem + ": " + e.Fix }

// CheckLogin refuses, before any call, the settings Salesforce would refuse, naming the setting and the
// fix (a *SettingsError). cosell doctor and every login run it.
func (cfg Config) CheckLogin() error {
	domain := strings.TrimRight(cfg.Domain, "/")
	switch cfg.Flow() {
	case AuthJWT:
		if cfg.JWTKeyFile == "" || cfg.Username == "" {
			return &SettingsError{"COSELL_SF_AUTH=jwt without COSELL_SF_JWT_KEY_FILE or COSELL_SF_USERNAME",
				"set COSELL_SF_JWT_KEY_FILE to the private key of the certificate uploaded to the app and COSELL_SF_USERNAME to the integration user"}
		}
	case AuthClientCredentials:
		if IsLoginHost(domain) {
			return &SettingsError{"COSELL_SF_URL=" + domain + " with the client credentials flow, which Salesforce serves only on the org's My Domain (\"request not supported on this domain\")",
				"set COSELL_SF_URL to the org's My Domain URL (https://<your-domain>.my.salesforce.com; Setup → My Domain), or use the JWT bearer flow (COSELL_SF_AUTH=jwt with COSELL_SF_JWT_KEY_FILE and COSELL_SF_USERNAME)"}
		}
		if cfg.ClientSecret == "" {
			return &SettingsError{"the client credentials flow without COSELL_SF_CLIENT_SECRET", "set COSELL_SF_CLIENT_SECRET to the app's consumer secret, or use the JWT bearer flow (COSELL_SF_AUTH=jwt)"}
		}
	case AuthPassword:
		if cfg.Username == "" || cfg.Password == "" || cfg.ClientSecret == "" {
			return &SettingsError{"the username-password flow without COSELL_SF_USERNAME, COSELL_SF_PASSWORD or COSELL_SF_CLIENT_SECRET",
				"set all three (the password followed by COSELL_SF_SECURITY_TOKEN), or use the JWT bearer flow (COSELL_SF_AUTH=jwt)"}
		}
	default:
		return &SettingsError{fmt.Sprintf("COSELL_SF_AUTH=%q is not a login flow", cfg.Auth),
			fmt.Sprintf("use %s, %s or %s", AuthJWT, AuthClientCredentials, AuthPassword)}
	}
	return nil
}

// session is a logged-in session: the access token and the instance to call with it.
type session struct {
	AccessToken, InstanceURL string
}

// LoginError is a refusal of the token endpoint, with Salesforce's error and description and what to do.
type LoginError struct {
	Flow, Code, Description, Fix string
}

func (e *LoginError) Error() string {
	s := fmt.Sprintf("%s login refused: %s", e.Flow, e.Code)
	if e.Description != "" {
		s += " (" + e.Description + ")"
	}
	if e.Fix != "" {
		s += ": " + e.Fix
	}
	return s
}

// loginFix names the fix of a token endpoint refusal (Salesforce's error_description texts).
func loginFix(flow, code, description string) string {
	switch d := strings.ToLower(description); {
	case strings.Contains(d, "request not supported on this domain"):
		return "client credentials need the org's My Domain: set COSELL_SF_URL to https://<your-domain>.my.salesforce.com"
	case strings.Contains(d, "user hasn't approved this consumer"):
		return "pre-authorize the integration user for the app: its OAuth policy Permitted Users = Admin approved users are pre-authorized, then add the user's profile or permission set (Cosell_Integration) to the app"
	case strings.Contains(d, "audience is invalid"):
		return "the JWT audience must be https://login.salesforce.com (production) or https://test.salesforce.com (sandbox); set COSELL_SF_JWT_AUDIENCE if COSELL_SF_URL does not tell"
	case strings.Contains(d, "invalid assertion"):
		return "the JWT signature does not match the app's certificate: upload the certificate of COSELL_SF_JWT_KEY_FILE's key to the app (Use digital signatures), or point COSELL_SF_JWT_KEY_FILE at the key of the uploaded certificate"
	case strings.Contains(d, "invalid client credentials"):
		return "COSELL_SF_CLIENT_SECRET is not the app's consumer secret (Setup → App Manager → the app → Manage Consumer Details)"
	case code == "invalid_client_id":
		return "COSELL_SF_CLIENT_ID is not the consumer key of an app in this org (Setup → App Manager → the app → Manage Consumer Details)"
	case strings.Contains(d, "no client credentials user enabled"):
		return "enable the client credentials flow on the app and set its Run As user (the integration user)"
	case strings.Contains(d, "authentication failure"):
		if flow == AuthJWT {
			return "COSELL_SF_USERNAME is not an active user of this org"
		}
		return "check COSELL_SF_USERNAME, COSELL_SF_PASSWORD and COSELL_SF_SECURITY_TOKEN"
	}
	return ""
}

// token runs the configured flow against the login or My Domain URL with x/oauth2 and returns a session;
// hc carries the request timeout. The secrets are sent, never logged or put into errors.
func (cfg Config) token(ctx context.Context, hc *http.Client) (session, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	tokenURL := strings.TrimRight(cfg.Domain, "/") + "/services/oauth2/token"
	flow := cfg.Flow()
	var tok *oauth2.Token
	var err error
	switch flow {
	case AuthJWT:
		key, rerr := os.ReadFile(cfg.JWTKeyFile)
		if rerr != nil {
			return session{}, fmt.Errorf("COSELL_SF_JWT_KEY_FILE: %w", rerr)
		}
		aud := cfg.JWTAudience
		if aud == "" {
			aud = jwtAudience(cfg.Domain)
		}
		// Salesforce wants exp within a few minutes (the assertion is good for one token request).
		jc := &jwt.Config{Email: cfg.ClientID, Subject: cfg.Username, PrivateKey: key, TokenURL: tokenURL,
			Audience: aud, Expires: 3 * time.Minute}
		tok, err = jc.TokenSource(ctx).Token()
		if err != nil && strings.Contains(err.Error(), "private key") {
			return session{}, fmt.Errorf("COSELL_SF_JWT_KEY_FILE %s is not an RSA private key in PEM (PKCS#1 or PKCS#8): %w", cfg.JWTKeyFile, err)
		}
	case AuthClientCredentials:
		// Salesforce reads the client id and secret from the body only (scribejava issue 823).
		cc := &clientcredentials.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenURL: tokenURL,
			AuthStyle: oauth2.AuthStyleInParams}
		tok, err = cc.Token(ctx)
	case AuthPassword:
		pc := &oauth2.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
			Endpoint: oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}}
		tok, err = pc.PasswordCredentialsToken(ctx, cfg.Username, cfg.Password+cfg.SecurityToken)
	default:
		return session{}, cfg.CheckLogin()
	}
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			_ = json.Unmarshal(re.Body, &body)
			if body.Error != "" {
				return session{}, &LoginError{Flow: flow, Code: body.Error, Description: body.Description,
					Fix: loginFix(flow, body.Error, body.Description)}
			}
			return session{}, &LoginError{Flow: flow, Code: fmt.Sprintf("HTTP %d", re.Response.StatusCode)}
		}
		return session{}, fmt.Errorf("%s login: %w", flow, err)
	}
	instance, _ := tok.Extra("instance_url").(string)
	if instance == "" {
		return session{}, &LoginError{Flow: flow, Code: "no instance_url", Description: "the token response names no instance"}
	}
	return session{AccessToken: tok.AccessToken, InstanceURL: strings.TrimRight(instance, "/")}, nil
}

// login is the one place cosell logs in to Salesforce: the configured flow through x/oauth2 (token), then
// go-salesforce takes the access token and the instance URL. go-salesforce checks a token it is given with
// one call (GET /limits), so a login costs one API call besides the token request.
func (c *Client) login(ctx context.Context) error {
	if err := c.cfg.CheckLogin(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, err := c.cfg.token(ctx, c.http)
	if err != nil {
		return err
	}
	// go-salesforce's check of the token (GET /limits) takes no context: wait for it no longer than ctx.
	sf, err := await(ctx, func() (*salesforce.Salesforce, error) {
		return salesforce.Init(salesforce.Creds{Domain: s.InstanceURL, AccessToken: s.AccessToken})
	}, nil)
	if err != nil {
		return classify("login", err)
	}
	c.mu.Lock()
	c.sf = sf
	c.mu.Unlock()
	return nil
}

// session is the current go-salesforce session.
func (c *Client) session() *salesforce.Salesforce {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sf
}

// relogin logs in again, under ctx, after a call with session stale was refused; when another call has
// already replaced stale, it does nothing.
func (c *Client) relogin(ctx context.Context, stale *salesforce.Salesforce) error {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	if c.session() != stale {
		return nil
	}
	if err := c.login(ctx); err != nil {
		var le *LoginError
		if errors.As(err, &le) {
			return &Error{Op: "login", Code: le.Code, Message: le.Error()}
		}
		return err
	}
	return nil
}

// expired reports whether go-salesforce gave up on a call because the session is no longer valid: given an
// access token it cannot refresh one, so on 401 INVALID_SESSION_ID its refreshSession answers with this
// error, and DoRequest returns no response (go-salesforce v2.5.2, auth.go and requests.go).
func expired(_ *http.Response, err error) bool {
	return err != nil && err.Error() == "invalid session, unable to refresh session"
}
