package auditor

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// guardFixture is a Guard over a handler that records whether it ran, with an operator and a viewer
// login, and a trusted proxy at 10.1.2.3.
func guardFixture(t *testing.T) (*Guard, http.Handler, map[string]string, *bool) {
	t.Helper()
	users := filepath.Join(t.TempDir(), "users")
	secrets, err := WriteUsers(users, map[string]string{"op": RoleOperator, "view": RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGuard(AuthConfig{UsersFile: users, ProxyCIDRs: []string{"10.1.2.3/32"}, OperatorGroups: []string{"cosell-operators"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ran := new(bool)
	h := g.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*ran = true
		_, _ = w.Write([]byte(Who(r.Context()).String()))
	}))
	return g, h, secrets, ran
}

func do(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestGuardRefusesWhoItCannotTrust(t *testing.T) {
	_, h, secrets, ran := guardFixture(t)
	cases := []struct {
		name string
		req  func() *http.Request
		code int
	}{
		{"no credentials on the API", func() *http.Request { return httptest.NewRequest("GET", "http://127.0.0.1:8080/api/links", nil) }, 401},
		{"no credentials on the page: sent to the login", func() *http.Request { return httptest.NewRequest("GET", "http://127.0.0.1:8080/", nil) }, 303},
		{"wrong bearer token", func() *http.Request {
			r := httptest.NewRequest("GET", "http://127.0.0.1:8080/api/links", nil)
			r.Header.Set("Authorization", "Bearer "+secrets["op"]+"x")
			return r
		}, 401},
		{"forged Host", func() *http.Request {
			r := httptest.NewRequest("GET", "http://evil.example/api/links", nil)
			r.Header.Set("Authorization", "Bearer "+secrets["op"])
			return r
		}, http.StatusMisdirectedRequest},
		{"proxy headers from an untrusted address are ignored", func() *http.Request {
			r := httptest.NewRequest("GET", "http://127.0.0.1:8080/api/links", nil)
			r.RemoteAddr = "10.9.9.9:5555"
			r.Header.Set("X-Forwarded-User", "mallory")
			r.Header.Set("X-Forwarded-Groups", "cosell-operators")
			return r
		}, 401},
		{"viewer re-drives with a bearer token", func() *http.Request {
			r := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/deadletters/1/retry", nil)
			r.Header.Set("Authorization", "Bearer "+secrets["view"])
			return r
		}, 403},
		{"cross-site form post with the operator's credentials", func() *http.Request {
			r := httptest.NewRequest("POST", "http://127.0.0.1:8080/deadletters/1/retry", strings.NewReader("csrf=x"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.SetBasicAuth("op", secrets["op"])
			r.Header.Set("Origin", "https://evil.example")
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			return r
		}, 403},
		{"same-site form post without the CSRF token", func() *http.Request {
			r := httptest.NewRequest("POST", "http://127.0.0.1:8080/deadletters/1/retry", nil)
			r.SetBasicAuth("op", secrets["op"])
			return r
		}, 403},
		{"proxy user outside the operators' groups re-drives", func() *http.Request {
			r := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/deadletters/1/retry", nil)
			r.RemoteAddr = "10.1.2.3:5555"
			r.Header.Set("X-Auth-Request-Email", "ann@example.com")
			r.Header.Set("X-Auth-Request-Groups", "sales")
			return r
		}, 403},
	}
	for _, c := range cases {
		*ran = false
		w := do(h, c.req())
		if w.Code != c.code || *ran {
			t.Errorf("%s: %d (handler ran: %v) %s, want %d and not run", c.name, w.Code, *ran, w.Body, c.code)
		}
	}
}

func TestGuardLetsOperatorsAndViewersIn(t *testing.T) {
	g, h, secrets, ran := guardFixture(t)
	r := httptest.NewRequest("GET", "http://127.0.0.1:8080/api/links", nil)
	r.Header.Set("Authorization", "Bearer "+secrets["view"])
	if w := do(h, r); w.Code != 200 || w.Body.String() != "view (viewer, bearer)" {
		t.Errorf("viewer reads: %d %s", w.Code, w.Body)
	}
	r = httptest.NewRequest("POST", "http://127.0.0.1:8080/api/deadletters/1/retry", nil)
	r.Header.Set("Authorization", "Bearer "+secrets["op"])
	if w := do(h, r); w.Code != 200 || w.Body.String() != "op (operator, bearer)" {
		t.Errorf("operator re-drives through the API: %d %s", w.Code, w.Body)
	}
	// A proxy user in the operators' group, with the page's CSRF token.
	proxied := func(method, body string) *http.Request {
		r := httptest.NewRequest(method, "http://127.0.0.1:8080/deadletters/1/retry", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "10.1.2.3:5555"
		r.Header.Set("X-Forwarded-User", "ann")
		r.Header.Set("X-Forwarded-Groups", "sales, cosell-operators")
		return r
	}
	page := httptest.NewRecorder()
	var token string
	g.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { token = g.CSRF(r) })).ServeHTTP(page, proxied("GET", ""))
	*ran = false
	if w := do(h, proxied("POST", "csrf="+url.QueryEscape(token))); w.Code != 200 || !*ran || w.Body.String() != "ann (operator, proxy)" {
		t.Errorf("proxy operator re-drives: %d %s", w.Code, w.Body)
	}
	// The login form gives a session cookie; the session reads the page.
	lw := httptest.NewRecorder()
	g.loginPage(lw, func() *http.Request {
		r := httptest.NewRequest("POST", "http://localhost:8080/login", strings.NewReader(url.Values{"user": {"view"}, "password": {secrets["view"]}, "next": {"//evil.example"}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}())
	if lw.Code != 303 || lw.Header().Get("Location") != "/" || len(lw.Result().Cookies()) != 1 {
		t.Fatalf("login: %d %v", lw.Code, lw.Header())
	}
	r = httptest.NewRequest("GET", "http://localhost:8080/", nil)
	r.AddCookie(lw.Result().Cookies()[0])
	if w := do(h, r); w.Code != 200 || w.Body.String() != "view (viewer, session)" {
		t.Errorf("session reads: %d %s", w.Code, w.Body)
	}
	bad := httptest.NewRecorder()
	g.loginPage(bad, func() *http.Request {
		r := httptest.NewRequest("POST", "http://localhost:8080/login", strings.NewReader("user=view&password=wrong"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}())
	if bad.Code != 401 || len(bad.Result().Cookies()) != 0 {
		t.Errorf("wrong secret: %d %v", bad.Code, bad.Result().Cookies())
	}
}
