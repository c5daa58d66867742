package auditor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
	"github.com/cosell-dev/cosell/services/internal/testkit/oidctest"
)

// oidcFixture is a real auditor (its routes on real HTTP, over an embedded NATS) whose only way in is
// OpenID Connect sign-in at a test issuer shaped like Entra ID, with app roles cosell.operator and
// cosell.viewer.
type oidcFixture struct {
	a      *Auditor
	srv    *httptest.Server
	issuer *oidctest.Issuer
}

func startOIDC(t *testing.T) *oidcFixture {
	t.Helper()
	bus := bustest.Start(t, bustest.Config(3, 5*time.Second), contracts.StageAuditor, nil)
	ctx := context.Background()
	a, err := New(ctx, bus, testkit.Log())
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = http.NotFoundHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	is := oidctest.Start(t, srv.URL+"/auth/callback")
	cfg := AuthConfig{OIDCIssuer: is.URL, OIDCClientID: is.ClientID, OIDCClientSecret: is.ClientSecret,
		OIDCRedirectURL: srv.URL + "/auth/callback"}
	// The defaults, as the loader fills them.
	if err := platform.LoadConfig(&cfg, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	if cfg.OIDCUserClaim != "preferred_username" || cfg.OIDCRoleClaim != "roles" || cfg.OIDCOperators[0] != "cosell.operator" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if a.Guard, err = NewGuard(cfg, testkit.Log()); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Routes(mux)
	h = mux
	return &oidcFixture{a: a, srv: srv, issuer: is}
}

// browser is a client with a cookie jar that follows redirects, recording each redirect response.
func browser(t *testing.T) (*http.Client, *[]*http.Response) {
	jar, _ := cookiejar.New(nil)
	var hops []*http.Response
	return &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		hops = append(hops, req.Response)
		return nil
	}}, &hops
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// parkDeadLetter puts one dead letter on the stream, as the consumer loop does, and returns its sequence.
func (f *oidcFixture) parkDeadLetter(t *testing.T, referral string) uint64 {
	t.Helper()
	ctx := context.Background()
	subject := contracts.SubjectReferralObserved + "." + referral
	dl := contracts.DeadLetter{Stage: contracts.StageMapper, Stream: contracts.StreamObserved, Consumer: "mapper-observed",
		StreamSeq: 7, Subject: subject, Header: map[string][]string{"ce-id": {"pc/" + referral + "/1"}}, Data: []byte(`{}`),
		Reason: "poison for the test", Deliveries: 3, At: time.Now().UTC()}
	e, err := platform.NewEvent("COSELL_OBSERVED/"+referral, contracts.TypeDeadLetter, contracts.StageMapper, subject, dl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Bus.Publish(ctx, platform.DeadLetterSubject(contracts.StageMapper, subject), e); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	testkit.Eventually(t, 10*time.Second, "the dead letter stored", func() (bool, string) {
		dls, err := f.a.DeadLetters(ctx)
		for _, d := range dls {
			if d.Subject == subject {
				seq = d.Seq
			}
		}
		return seq > 0, fmt.Sprint(len(dls), err)
	})
	return seq
}

// signIn walks the browser through the sign-in as u and returns the status page's HTML.
func (f *oidcFixture) signIn(t *testing.T, c *http.Client, hops *[]*http.Response, u oidctest.User) (*http.Response, string) {
	t.Helper()
	f.issuer.SignIn(&u)
	*hops = nil
	return get(t, c, f.srv.URL+"/")
}

// TestOIDCSignInViewerAndOperator: the page's only way in is the issuer; the flow (state, nonce, PKCE S256,
// code exchange with the client secret, ID token verified against the JWKS) signs the user in with an
// HttpOnly SameSite session; a viewer cannot re-drive a dead letter, an operator can, and the re-drive is
// on the link's timeline with the operator's name; signing out ends the session at the issuer too.
func TestOIDCSignInViewerAndOperator(t *testing.T) {
	f := startOIDC(t)
	seq := f.parkDeadLetter(t, "R-1")

	// A viewer.
	viewer, hops := browser(t)
	resp, page := f.signIn(t, viewer, hops, oidctest.User{Name: "vic@contoso.com", Display: "Vic", Roles: []string{"cosell.viewer"}})
	if resp.StatusCode != 200 || !strings.Contains(page, "vic@contoso.com") {
		t.Fatalf("viewer's page after sign-in: %d\n%s", resp.StatusCode, page)
	}
	var sawAuthorize, sawSession bool
	for _, h := range *hops {
		if loc := h.Header.Get("Location"); strings.HasPrefix(loc, f.issuer.URL[:strings.Index(f.issuer.URL, "/v2.0")]) {
			q, _ := url.Parse(loc)
			sawAuthorize = q.Query().Get("code_challenge_method") == "S256" && q.Query().Get("nonce") != "" && q.Query().Get("state") != ""
		}
		for _, c := range h.Cookies() {
			if c.Name == sessionCookie && c.Value != "" {
				sawSession = c.HttpOnly && c.SameSite == http.SameSiteLaxMode && c.Path == "/" && !c.Secure // loopback: not Secure
			}
		}
	}
	if !sawAuthorize || !sawSession {
		t.Errorf("authorize request with S256/state/nonce: %v; HttpOnly SameSite=Lax session cookie: %v", sawAuthorize, sawSession)
	}
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	form := url.Values{"csrf": {m[1]}}
	r, err := viewer.PostForm(fmt.Sprintf("%s/deadletters/%d/retry", f.srv.URL, seq), form)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden {
		t.Errorf("viewer's re-drive: %d, want 403", r.StatusCode)
	}
	if _, err := f.a.DeadLetter(context.Background(), seq); err != nil {
		t.Fatalf("the viewer's refused re-drive removed the dead letter: %v", err)
	}

	// An operator, by app role.
	op, hops := browser(t)
	resp, page = f.signIn(t, op, hops, oidctest.User{Name: "ann@contoso.com", Display: "Ann", Roles: []string{"cosell.viewer", "cosell.operator"}})
	if resp.StatusCode != 200 || !strings.Contains(page, "ann@contoso.com") || !strings.Contains(page, "operator") {
		t.Fatalf("operator's page: %d\n%s", resp.StatusCode, page)
	}
	m = csrfField.FindStringSubmatch(page)
	r, err = op.PostForm(fmt.Sprintf("%s/deadletters/%d/retry", f.srv.URL, seq), url.Values{"csrf": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 200 || !strings.HasPrefix(r.Request.URL.Query().Get("flash"), fmt.Sprintf("re-driven dead letter %d", seq)) {
		t.Fatalf("operator's re-drive: %d at %s", r.StatusCode, r.Request.URL)
	}
	tl, err := f.a.Timeline(context.Background(), contracts.LinkIDFor(contracts.PartnerCenter, "R-1"))
	if err != nil {
		t.Fatal(err)
	}
	var by string
	for _, d := range tl {
		if d.Kind == contracts.DecisionRedriven {
			by = d.By
		}
	}
	if by != "ann@contoso.com (operator, session)" {
		t.Errorf("the re-drive on the timeline says by %q; timeline: %+v", by, tl)
	}

	// Sign out: the session ends here and at the issuer, and the page asks for a sign-in again.
	m = csrfField.FindStringSubmatch(page)
	f.issuer.SignIn(nil)
	r, err = op.PostForm(f.srv.URL+"/logout", url.Values{"csrf": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.Request.URL.Path != "/login" {
		t.Errorf("after sign-out: at %s", r.Request.URL)
	}
	var endedAtIssuer bool
	for _, h := range *hops {
		endedAtIssuer = endedAtIssuer || strings.Contains(h.Header.Get("Location"), "/oauth2/v2.0/logout?")
	}
	if !endedAtIssuer {
		t.Error("sign-out did not go through the issuer's end_session_endpoint")
	}
	if resp, body := get(t, op, f.srv.URL+"/api/status"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the API after sign-out: %d %s", resp.StatusCode, body)
	}
}

// TestOIDCRefusesBadTokensAndUsersWithoutARole: ID tokens as API bearer tokens are checked (signature,
// expiry, audience, issuer); a user the issuer signs in without one of the roles is refused; a code is
// good once; a callback that was not started here is refused.
func TestOIDCRefusesBadTokensAndUsersWithoutARole(t *testing.T) {
	f := startOIDC(t)
	viewer := oidctest.User{Name: "vic@contoso.com", Roles: []string{"cosell.viewer"}}
	api := func(method, path, token string) int {
		req, _ := http.NewRequest(method, f.srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, c := range map[string]struct {
		token string
		code  int
	}{
		"expired":                 {f.issuer.IDToken(viewer, "", -time.Minute), 401},
		"signed with another key": {f.issuer.ForgedIDToken(viewer, time.Hour), 401},
		"for another client":      {f.issuer.TokenFor(viewer, time.Hour, map[string]any{"aud": "another-app"}), 401},
		"from another issuer":     {f.issuer.TokenFor(viewer, time.Hour, map[string]any{"iss": "https://login.microsoftonline.com/other/v2.0"}), 401},
		"not a token at all":      {"a.b.c", 401},
		"valid, no role":          {f.issuer.IDToken(oidctest.User{Name: "eve@contoso.com"}, "", time.Hour), 401},
		"valid viewer reads":      {f.issuer.IDToken(viewer, "", time.Hour), 200},
		"valid operator":          {f.issuer.TokenFor(oidctest.User{Name: "op@contoso.com", Roles: []string{"cosell.operator"}}, time.Hour, nil), 200},
	} {
		if got := api("GET", "/api/status", c.token); got != c.code {
			t.Errorf("%s: GET /api/status %d, want %d", name, got, c.code)
		}
	}
	if got := api("POST", "/api/deadletters/1/retry", f.issuer.IDToken(viewer, "", time.Hour)); got != http.StatusForbidden {
		t.Errorf("viewer's token re-drives: %d, want 403", got)
	}
	opTok := f.issuer.IDToken(oidctest.User{Name: "op@contoso.com", Roles: []string{"cosell.operator"}}, "", time.Hour)
	if got := api("POST", "/api/deadletters/1/retry", opTok); got != http.StatusNotFound {
		t.Errorf("operator's token re-drives a missing dead letter: %d, want 404 (authorized, nothing there)", got)
	}

	// Signed in at the issuer, but holding neither role.
	c, hops := browser(t)
	resp, body := f.signIn(t, c, hops, oidctest.User{Name: "eve@contoso.com", Roles: []string{"sales"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "COSELL_AUTH_OIDC_VIEWERS") {
		t.Errorf("a user without a role: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(t, c, f.srv.URL+"/api/status"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a user without a role reads the API: %d", resp.StatusCode)
	}

	// A code used twice (a replayed callback URL), and a callback this browser never started.
	c, hops = browser(t)
	f.issuer.SignIn(&viewer)
	var callback string
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/auth/callback" && callback == "" {
			callback = req.URL.String()
		}
		return nil
	}
	if resp, _ := get(t, c, f.srv.URL+"/"); resp.StatusCode != 200 || callback == "" {
		t.Fatalf("sign-in: %d, callback %q", resp.StatusCode, callback)
	}
	other, _ := browser(t)
	if resp, body := get(t, other, callback); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a callback this browser did not start: %d %s", resp.StatusCode, body)
	}
	// The same browser again: its flow cookie is gone (one use), so the replay is refused before the issuer.
	if resp, _ := get(t, c, callback); resp.StatusCode == http.StatusOK && resp.Request.URL.Path == "/auth/callback" {
		t.Error("a replayed callback signed in")
	}
	// A valid ID token, but from another sign-in (its nonce is not this one's): refused.
	c, _ = browser(t)
	f.issuer.ReplayIDToken(f.issuer.IDToken(viewer, "another-sign-in", time.Hour))
	if resp, body := get(t, c, f.srv.URL+"/"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "nonce") {
		t.Errorf("replayed ID token: %d %.300s", resp.StatusCode, body)
	}
	f.issuer.ReplayIDToken("")
	// Tampered state: refused even with a valid flow cookie.
	c, _ = browser(t)
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/auth/callback" {
			q := req.URL.Query()
			q.Set("state", "forged")
			req.URL.RawQuery = q.Encode()
		}
		return nil
	}
	if resp, body := get(t, c, f.srv.URL+"/"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "state") {
		t.Errorf("forged state: %d %.300s", resp.StatusCode, body)
	}
	_ = hops
}

// TestOIDCConfigErrorsNameTheVariable: a half-done OpenID Connect configuration is a start-up error that
// says what is missing.
func TestOIDCConfigErrorsNameTheVariable(t *testing.T) {
	for _, c := range []struct {
		cfg  AuthConfig
		want string
	}{
		{AuthConfig{OIDCIssuer: "https://login.microsoftonline.com/t/v2.0"}, "COSELL_AUTH_OIDC_CLIENT_ID, COSELL_AUTH_OIDC_CLIENT_SECRET, COSELL_AUTH_OIDC_REDIRECT_URL"},
		{AuthConfig{OIDCIssuer: "https://i", OIDCClientID: "c", OIDCClientSecret: "s", OIDCRedirectURL: "http://cosell.example.com/auth/callback", OIDCOperators: []string{"x"}}, "must be https"},
		{AuthConfig{OIDCIssuer: "https://i", OIDCClientID: "c", OIDCClientSecret: "s", OIDCRedirectURL: "https://cosell.example.com", OIDCOperators: []string{"x"}}, "with a path"},
		{AuthConfig{SessionKey: "short"}, "COSELL_AUTH_SESSION_KEY"},
	} {
		if _, err := NewGuard(c.cfg, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}
