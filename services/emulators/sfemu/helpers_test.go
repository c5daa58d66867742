package sfemu

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// newServer starts an emulator over real HTTP on 127.0.0.1.
func newServer(t *testing.T, opts Options) (*Emulator, *httptest.Server) {
	t.Helper()
	e, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return e, srv
}

// login gets an access token with the client_credentials grant.
func login(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	resp, err := http.PostForm(srv.URL+"/services/oauth2/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil || body.AccessToken == "" {
		t.Fatalf("login: status %d", resp.StatusCode)
	}
	return body.AccessToken
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends one data API call (path relative to /services/data/v62.0) with the token.
func do(t *testing.T, srv *httptest.Server, token, method, path, body string) response {
	t.Helper()
	return doWith(t, srv, token, method, path, body, nil)
}

// do2 GETs a full path with Sforce-Query-Options set to options.
func do2(t *testing.T, srv *httptest.Server, token, path, options string) response {
	t.Helper()
	return doWith(t, srv, token, http.MethodGet, path, "", http.Header{"Sforce-Query-Options": {options}})
}

func doWith(t *testing.T, srv *httptest.Server, token, method, path, body string, header http.Header) response {
	t.Helper()
	target := path
	if !strings.HasPrefix(path, "/services/") && !strings.HasPrefix(path, "/_emulator/") {
		target = "/services/data/v62.0" + path
	}
	req, err := http.NewRequest(method, srv.URL+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// errorCode returns the errorCode of a top-level Salesforce error array.
func errorCode(t *testing.T, r response) string {
	t.Helper()
	var errs []errorBody
	if err := json.Unmarshal([]byte(r.body), &errs); err != nil || len(errs) == 0 {
		t.Fatalf("not a Salesforce error array (status %d): %s", r.status, r.body)
	}
	return errs[0].ErrorCode
}

func mustInsert(t *testing.T, e *Emulator, obj string, fields map[string]any) string {
	t.Helper()
	id, err := e.Insert(obj, fields)
	if err != nil {
		t.Fatalf("Insert %s: %v", obj, err)
	}
	return id
}
