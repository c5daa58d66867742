package auditor

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"
)

// Roles: a viewer reads the page and the API; an operator also re-drives and purges dead letters.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
)

// AuthConfig says who may use the status page and API. With nothing set every request is refused, with
// the variables to set in the answer: the page shows customer names and deal values.
type AuthConfig struct {
	UsersFile      string   `env:"COSELL_AUTH_USERS_FILE" help:"file of logins, one per line: NAME ROLE SECRET (ROLE viewer or operator); SECRET is the password on the login page and the bearer token of the API (Authorization: Bearer SECRET)"`
	ProxyCIDRs     []string `env:"COSELL_AUTH_PROXY_CIDRS" help:"addresses (CIDRs) of the auth proxy (oauth2-proxy, an ingress with external auth) whose X-Forwarded-User/X-Forwarded-Groups or X-Auth-Request-User/-Email/-Groups headers are trusted; from any other address those headers are ignored"`
	OperatorGroups []string `env:"COSELL_AUTH_OPERATOR_GROUPS" default:"cosell-operators" help:"groups (from the proxy's groups header) whose members are operators; other proxy users are viewers"`
	Hosts          []string `env:"COSELL_STATUS_HOSTS" help:"Host header values the page answers to (host or host:port); empty = loopback names only (localhost, 127.0.0.1, ::1) and the host of COSELL_AUTH_OIDC_REDIRECT_URL"`
	// OpenID Connect sign-in (oidc.go); Microsoft Entra ID is the documented issuer.
	OIDCIssuer       string   `env:"COSELL_AUTH_OIDC_ISSUER" help:"OpenID Connect issuer of the page's sign-in, e.g. Microsoft Entra ID https://login.microsoftonline.com/TENANT-ID/v2.0; its ID tokens are also accepted as API bearer tokens"`
	OIDCClientID     string   `env:"COSELL_AUTH_OIDC_CLIENT_ID" help:"the client (Entra ID: the app registration's Application (client) ID)"`
	OIDCClientSecret string   `env:"COSELL_AUTH_OIDC_CLIENT_SECRET" help:"the client's secret (Entra ID: Certificates & secrets)"`
	OIDCRedirectURL  string   `env:"COSELL_AUTH_OIDC_REDIRECT_URL" help:"the page's callback as registered at the issuer, https://HOST/auth/callback (Entra ID: a Web platform redirect URI)"`
	OIDCUserClaim    string   `env:"COSELL_AUTH_OIDC_USER_CLAIM" default:"preferred_username" help:"ID token claim naming the user (Entra ID v2.0: preferred_username, the UPN); email, then sub when it is missing"`
	OIDCRoleClaim    string   `env:"COSELL_AUTH_OIDC_ROLE_CLAIM" default:"roles" help:"ID token claim whose values give the role: roles (Entra ID app roles) or groups (group object ids)"`
	OIDCOperators    []string `env:"COSELL_AUTH_OIDC_OPERATORS" default:"cosell.operator" help:"values of the role claim that make an operator (app role values, or group object ids with COSELL_AUTH_OIDC_ROLE_CLAIM=groups)"`
	OIDCViewers      []string `env:"COSELL_AUTH_OIDC_VIEWERS" default:"cosell.viewer" help:"values of the role claim that make a viewer; * = everyone the issuer signs in; anyone else is refused"`
	SessionKey       string   `env:"COSELL_AUTH_SESSION_KEY" help:"secret of at least 32 characters that signs session cookies and CSRF tokens, the same on every auditor replica (e.g. openssl rand -hex 32); unset = random per process, so sessions end when it restarts"`
}

// OIDC reports whether OpenID Connect sign-in is configured.
func (c AuthConfig) OIDC() bool {
	return c.OIDCIssuer != "" || c.OIDCClientID != "" || c.OIDCRedirectURL != ""
}

// Open reports whether the configuration lets anyone in at all.
func (c AuthConfig) Open() bool { return c.UsersFile != "" || len(c.ProxyCIDRs) > 0 || c.OIDC() }

// Principal is who made a request.
type Principal struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Via is how they were identified: session, bearer, basic or proxy.
	Via string `json:"via"`
	// Method is how a session began: password (the login form) or oidc.
	Method string `json:"method,omitempty"`
}

// Operator reports whether p may change things.
func (p Principal) Operator() bool { return p.Role == RoleOperator }

func (p Principal) String() string { return p.Name + " (" + p.Role + ", " + p.Via + ")" }

type login struct{ name, role, secret string }

// Guard authenticates and authorizes every request to the status page and API.
type Guard struct {
	users     map[string]login
	proxies   []netip.Prefix
	operators map[string]bool
	hosts     map[string]bool
	key       []byte
	origin    *http.CrossOriginProtection
	oidc      *oidcLogin
	log       *slog.Logger
}

// NewGuard reads the configuration; an unreadable users file or a bad CIDR is an error naming the variable.
func NewGuard(cfg AuthConfig, log *slog.Logger) (*Guard, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{users: map[string]login{}, operators: map[string]bool{}, hosts: map[string]bool{},
		key: make([]byte, 32), origin: http.NewCrossOriginProtection(), log: log}
	_, _ = rand.Read(g.key)
	if cfg.SessionKey != "" {
		if len(cfg.SessionKey) < 32 {
			return nil, errors.New("COSELL_AUTH_SESSION_KEY: at least 32 characters (e.g. from `openssl rand -hex 32`)")
		}
		k := sha256.Sum256([]byte(cfg.SessionKey))
		g.key = k[:]
	}
	if cfg.OIDC() {
		o, err := newOIDCLogin(cfg)
		if err != nil {
			return nil, err
		}
		g.oidc = o
		if u, err := url.Parse(cfg.OIDCRedirectURL); err == nil {
			// The page answers on the host the issuer sends the browser back to.
			g.hosts[strings.ToLower(u.Host)] = true
		}
	}
	if cfg.UsersFile != "" {
		users, err := ReadUsers(cfg.UsersFile)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			g.users[u.name] = u
		}
	}
	for _, c := range cfg.ProxyCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, fmt.Errorf("COSELL_AUTH_PROXY_CIDRS: %q is not a CIDR (e.g. 10.0.0.0/8) or an address", c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		g.proxies = append(g.proxies, p.Masked())
	}
	for _, o := range cfg.OperatorGroups {
		g.operators[o] = true
	}
	for _, h := range cfg.Hosts {
		g.hosts[strings.ToLower(h)] = true
	}
	if len(cfg.Hosts) == 0 && len(g.hosts) > 0 {
		for _, h := range []string{"localhost", "127.0.0.1", "::1", "[::1]"} {
			g.hosts[h] = true
		}
	}
	g.origin.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "cross-site request refused: re-drives and purges are accepted only from the status page itself (Origin / Sec-Fetch-Site)", http.StatusForbidden)
	}))
	return g, nil
}

// ReadUsers reads a users file: NAME ROLE SECRET per line, # comments.
func ReadUsers(path string) ([]login, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("COSELL_AUTH_USERS_FILE: %w", err)
	}
	defer f.Close()
	var out []login
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) != 3 || (fs[1] != RoleViewer && fs[1] != RoleOperator) || len(fs[2]) < 16 {
			return nil, fmt.Errorf("COSELL_AUTH_USERS_FILE %s:%d: want NAME ROLE SECRET with ROLE viewer or operator and a SECRET of at least 16 characters (e.g. from `openssl rand -hex 24`)", path, n)
		}
		out = append(out, login{fs[0], fs[1], fs[2]})
	}
	return out, sc.Err()
}

// WriteUsers writes a users file (mode 0600) with one generated secret per name and role: the login the
// all-in-one `cosell run` prints. It returns the secrets by name.
func WriteUsers(path string, roles map[string]string) (map[string]string, error) {
	var b strings.Builder
	secrets := map[string]string{}
	for name, role := range roles {
		s := rand.Text()
		secrets[name] = s
		fmt.Fprintf(&b, "%s %s %s\n", name, role, s)
	}
	return secrets, os.WriteFile(path, []byte(b.String()), 0o600)
}

type principalKey struct{}

// Who is the principal of a request the Guard let through, or the one WithPrincipal set (zero otherwise).
func Who(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p
}

// WithPrincipal is ctx acting as p: the CLI's re-drives, purges and drift fixes are audited as its user.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// CLIOperator is the principal of a cosell command run on this machine: the operating-system user at
// the host (whoever may reach NATS as an admin is an operator).
func CLIOperator() Principal {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return Principal{Name: name, Role: RoleOperator, Via: "cli"}
}

// actor is what the audit trail records as who made a change ("" when nobody is known).
func (p Principal) actor() string {
	if p.Name == "" {
		return ""
	}
	return p.String()
}

// by is " by NAME" for a timeline's detail, or "".
func (p Principal) by() string {
	if p.Name == "" {
		return ""
	}
	return " by " + p.Name
}

const sessionCookie = "cosell_session"

// Protect wraps h: a forged Host is refused, an unknown caller is sent to the login page (or gets 401 on
// /api/), a viewer cannot change anything, and a change made with the browser's credentials (session,
// basic, proxy) needs the page's CSRF token and must not come from another site.
func (g *Guard) Protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.hostAllowed(r.Host) {
			g.misdirected(w, r)
			return
		}
		p, ok := g.identify(r)
		if !ok {
			if strings.HasPrefix(r.URL.Path, "/api/") || r.Method != http.MethodGet {
				w.Header().Set("WWW-Authenticate", `Bearer realm="cosell", Basic realm="cosell"`)
				http.Error(w, "login needed: send Authorization: Bearer SECRET (a line of COSELL_AUTH_USERS_FILE, or an ID token of COSELL_AUTH_OIDC_ISSUER), or come through the auth proxy of COSELL_AUTH_PROXY_CIDRS", http.StatusUnauthorized)
				return
			}
			to := "/login"
			if g.oidc != nil && len(g.users) == 0 {
				// The issuer's sign-in is the only way in: straight there.
				to = oidcStartPath
			}
			http.Redirect(w, r, to+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		unsafe := r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions
		if unsafe {
			if err := g.origin.Check(r); err != nil {
				http.Error(w, "cross-site request refused: "+err.Error(), http.StatusForbidden)
				return
			}
			if !p.Operator() {
				http.Error(w, p.Name+" is a viewer: re-drive and purge need the operator role", http.StatusForbidden)
				return
			}
			if p.Via != "bearer" && !g.csrfOK(r, p) {
				http.Error(w, "missing or wrong CSRF token: submit the form from the status page (reload it first)", http.StatusForbidden)
				return
			}
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func (g *Guard) misdirected(w http.ResponseWriter, r *http.Request) {
	http.Error(w, fmt.Sprintf("Host %q is not one this status page answers to: add it to COSELL_STATUS_HOSTS", r.Host), http.StatusMisdirectedRequest)
}

// isLoopbackHost reports whether a Host header names this machine (localhost, 127.0.0.0/8, ::1).
func isLoopbackHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(strings.ToLower(h), "[]")
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// cookie is one of the Guard's cookies: HttpOnly, SameSite=Lax (the issuer's redirect back is a top-level
// cross-site GET, which Strict would strip), and Secure unless the page is reached on a loopback address
// (a browser keeps Secure cookies only over https, and TLS usually ends at the ingress, not here).
func (g *Guard) cookie(r *http.Request, name, value string, ttl time.Duration) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: !isLoopbackHost(r.Host), SameSite: http.SameSiteLaxMode}
	if ttl < 0 || value == "" {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(ttl / time.Second)
	}
	return c
}

// safeNext keeps a post-login target on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (g *Guard) hostAllowed(host string) bool {
	host = strings.ToLower(host)
	if len(g.hosts) > 0 {
		if g.hosts[host] {
			return true
		}
		h, _, err := net.SplitHostPort(host)
		return err == nil && g.hosts[h]
	}
	return isLoopbackHost(host)
}

func (g *Guard) identify(r *http.Request) (Principal, bool) {
	if g.fromProxy(r) {
		user := first(r.Header, "X-Forwarded-User")
		groups := first(r.Header, "X-Forwarded-Groups")
		if user == "" {
			user = first(r.Header, "X-Auth-Request-User")
			if user == "" {
				user = first(r.Header, "X-Auth-Request-Email")
			}
			groups = first(r.Header, "X-Auth-Request-Groups")
		}
		if user != "" {
			role := RoleViewer
			for _, gr := range strings.Split(groups, ",") {
				if g.operators[strings.TrimSpace(gr)] {
					role = RoleOperator
				}
			}
			return Principal{Name: user, Role: role, Via: "proxy"}, true
		}
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		if tok, ok := strings.CutPrefix(auth, "Bearer "); ok {
			for _, u := range g.users {
				if subtle.ConstantTimeCompare([]byte(tok), []byte(u.secret)) == 1 {
					return Principal{Name: u.name, Role: u.role, Via: "bearer"}, true
				}
			}
			if g.oidc != nil && strings.Count(tok, ".") == 2 {
				// A JWT: an ID token of the issuer (signature, issuer, audience, expiry checked by go-oidc).
				p, err := g.oidc.bearer(r.Context(), tok)
				if err == nil {
					return p, true
				}
				g.log.Warn("API bearer token refused", "err", err, "remote", r.RemoteAddr)
			}
			return Principal{}, false
		}
		if name, pw, ok := r.BasicAuth(); ok {
			if u, ok := g.check(name, pw); ok {
				return Principal{Name: u.name, Role: u.role, Via: "basic"}, true
			}
			return Principal{}, false
		}
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if p, ok := g.session(c.Value); ok {
			return p, true
		}
	}
	return Principal{}, false
}

func (g *Guard) fromProxy(r *http.Request) bool {
	if len(g.proxies) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	for _, p := range g.proxies {
		if p.Contains(ap.Addr().Unmap()) {
			return true
		}
	}
	return false
}

func (g *Guard) check(name, pw string) (login, bool) {
	u, ok := g.users[name]
	if !ok {
		// Compare anyway, so a wrong name takes as long as a wrong secret.
		subtle.ConstantTimeCompare([]byte(pw), []byte(pw+"x"))
		return login{}, false
	}
	return u, subtle.ConstantTimeCompare([]byte(pw), []byte(u.secret)) == 1
}

func (g *Guard) sign(parts ...string) string {
	m := hmac.New(sha256.New, g.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

const sessionTTL = 12 * time.Hour

// seal signs fields (and an expiry ttl from now) for a cookie of the given purpose.
func (g *Guard) seal(purpose string, ttl time.Duration, fields ...string) string {
	exp := strconv.FormatInt(time.Now().Add(ttl).Unix(), 10)
	body := base64.RawURLEncoding.EncodeToString([]byte(strings.Join(append(fields, exp), "\x00")))
	return body + "." + g.sign(purpose, body)
}

// unseal checks a sealed value's signature and expiry and returns its fields.
func (g *Guard) unseal(purpose, v string) ([]string, bool) {
	body, mac, ok := strings.Cut(v, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(g.sign(purpose, body))) {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, false
	}
	fs := strings.Split(string(raw), "\x00")
	exp, err := strconv.ParseInt(fs[len(fs)-1], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return nil, false
	}
	return fs[:len(fs)-1], true
}

func (g *Guard) session(v string) (Principal, bool) {
	fs, ok := g.unseal("session", v)
	if !ok || len(fs) != 3 {
		return Principal{}, false
	}
	if fs[2] == "password" {
		// A login removed from the file (or its role changed) no longer works, even with a session.
		if u, ok := g.users[fs[0]]; !ok || u.role != fs[1] {
			return Principal{}, false
		}
	} else if fs[2] != "oidc" || g.oidc == nil {
		return Principal{}, false
	}
	return Principal{Name: fs[0], Role: fs[1], Via: "session", Method: fs[2]}, true
}

// CSRF is the token the page's forms carry for r's caller: bound to the session cookie when there is one,
// else to the caller's name and how they were identified.
func (g *Guard) CSRF(r *http.Request) string {
	p := Who(r.Context())
	bind := p.Via + "\x00" + p.Name
	if c, err := r.Cookie(sessionCookie); err == nil && p.Via == "session" {
		bind = c.Value
	}
	return g.sign("csrf", bind)
}

func (g *Guard) csrfOK(r *http.Request, p Principal) bool {
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" {
		tok = r.PostFormValue("csrf")
	}
	want := g.CSRF(r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	return tok != "" && hmac.Equal([]byte(tok), []byte(want))
}

// Routes mounts /login and /logout.
func (g *Guard) Routes(mux interface {
	Handle(string, http.Handler)
}) {
	mux.Handle("/login", http.HandlerFunc(g.loginPage))
	mux.Handle("/logout", g.origin.Handler(http.HandlerFunc(g.logout)))
	if g.oidc != nil {
		mux.Handle(oidcStartPath, http.HandlerFunc(g.oidcStart))
		mux.Handle(g.oidc.callback, http.HandlerFunc(g.oidcCallback))
	}
}

// logout ends the session; one that began at the OpenID Connect issuer is also ended there (its
// end_session_endpoint, back to this page's /login, which must be a registered sign-out URL).
func (g *Guard) logout(w http.ResponseWriter, r *http.Request) {
	var p Principal
	if c, err := r.Cookie(sessionCookie); err == nil {
		p, _ = g.session(c.Value)
	}
	http.SetCookie(w, g.cookie(r, sessionCookie, "", -1))
	if p.Name != "" {
		g.log.Info("signed out of the status page", "user", p.Name, "via", p.Method)
	}
	to := "/login"
	if p.Method == "oidc" {
		if _, _, err := g.oidc.ready(); err == nil && g.oidc.logout != "" {
			back, _ := url.Parse(g.oidc.cfg.OIDCRedirectURL)
			back.Path, back.RawQuery = "/login", ""
			to = g.oidc.logout + "?" + url.Values{"client_id": {g.oidc.cfg.OIDCClientID}, "post_logout_redirect_uri": {back.String()}}.Encode()
		}
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cosell — sign in</title>` + pageStyle + `</head><body>
<h1>cosell — sign in</h1>
{{if .Err}}<p class="bad">{{.Err}}</p>{{end}}
<form method="post" action="/login"><input type="hidden" name="next" value="{{.Next}}">
<p><label>Name <input name="user" autocomplete="username" required></label></p>
<p><label>Secret <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Sign in</button></p></form>
{{if .OIDC}}<p><a class="button" href="/auth/oidc?next={{.Next}}">Sign in with {{.OIDC}}</a></p>{{end}}
<p class="meta">A login is a line of COSELL_AUTH_USERS_FILE; <code>cosell run</code> prints the ones it generated.</p>
</body></html>`))

func (g *Guard) loginPage(w http.ResponseWriter, r *http.Request) {
	if !g.hostAllowed(r.Host) {
		g.misdirected(w, r)
		return
	}
	next := safeNext(r.FormValue("next"))
	data := map[string]any{"Next": next}
	if g.oidc != nil {
		data["OIDC"] = "your organisation's account"
		if strings.HasPrefix(g.oidc.cfg.OIDCIssuer, "https://login.microsoftonline.com/") {
			data["OIDC"] = "Microsoft Entra ID"
		}
	}
	if r.Method == http.MethodPost {
		if err := g.origin.Check(r); err != nil {
			http.Error(w, "cross-site request refused: "+err.Error(), http.StatusForbidden)
			return
		}
		u, ok := g.check(r.PostFormValue("user"), r.PostFormValue("password"))
		if ok {
			http.SetCookie(w, g.cookie(r, sessionCookie, g.seal("session", sessionTTL, u.name, u.role, "password"), sessionTTL))
			g.log.Info("signed in to the status page", "user", u.name, "role", u.role)
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		g.log.Warn("status page sign-in refused", "user", r.PostFormValue("user"), "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusUnauthorized)
		data["Err"] = "wrong name or secret"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = loginTemplate.Execute(w, data)
}

// errNoLogins is returned when nothing would let anyone in.
var errNoLogins = errors.New("the status page has no way in: set COSELL_AUTH_USERS_FILE (logins and API tokens), COSELL_AUTH_OIDC_* (OpenID Connect sign-in, e.g. Microsoft Entra ID) and/or COSELL_AUTH_PROXY_CIDRS (a trusted auth proxy)")
