package sfemu

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// The tests in this file check the emulator against what Salesforce answers to an outside client (curl,
// x/oauth2): the versions list, describe, number coercion and the token endpoint's refusals.

func TestVersionsListNeedsNoSession(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, Options{})
	for _, path := range []string{"/services/data", "/services/data/"} {
		r := doWith(t, srv, "", http.MethodGet, path, "", nil)
		var list []apiVersion
		if r.status != 200 || json.Unmarshal([]byte(r.body), &list) != nil {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		first, last := list[0], list[len(list)-1]
		if first.Version != "31.0" || first.Label != "Summer '14" || last.Version != "62.0" ||
			last.Label != "Winter '25" || last.URL != "/services/data/v62.0" || len(list) != 32 {
			t.Fatalf("versions: first %+v last %+v (%d)", first, last, len(list))
		}
		for _, v := range list {
			// Every listed version is served.
			if r := do2(t, srv, login(t, srv), v.URL+"/limits", ""); r.status != 200 {
				t.Fatalf("listed %s not served: %d %s", v.Version, r.status, r.body)
			}
		}
	}
	if got := releaseLabel(60); got != "Spring '24" {
		t.Fatalf("v60.0 = %q, want Spring '24", got)
	}
}

func TestNumericStringsAreCoerced(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	token := login(t, srv)
	r := do(t, srv, token, "POST", "/sobjects/Opportunity", `{`+validOpp+`,"Amount":"1250.50","Probability":"40","TotalOpportunityQuantity":""}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var res saveResult
	_ = json.Unmarshal([]byte(r.body), &res)
	got, _ := e.Get("Opportunity", res.ID)
	if got["Amount"] != 1250.5 || got["Probability"] != 40.0 || got["TotalOpportunityQuantity"] != nil {
		t.Fatalf("stored %v %v %v", got["Amount"], got["Probability"], got["TotalOpportunityQuantity"])
	}
	if r := do(t, srv, token, "POST", "/sobjects/Account", `{"Name":"a","NumberOfEmployees":"100"}`); r.status != 201 {
		t.Fatalf("int from string: %d %s", r.status, r.body)
	}
}

func TestOpportunityStandardFields(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	token := login(t, srv)
	r := do(t, srv, token, "GET", "/sobjects/Opportunity/describe", "")
	var d struct {
		Fields []struct {
			Name       string
			Type       string
			Updateable bool
		}
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &d) != nil {
		t.Fatalf("describe: %d %s", r.status, r.body)
	}
	have := map[string]bool{}
	for _, f := range d.Fields {
		have[f.Name] = true
	}
	for _, name := range []string{"Id", "Name", "AccountId", "Amount", "CloseDate", "StageName", "Probability",
		"ForecastCategoryName", "ForecastCategory", "ExpectedRevenue", "Fiscal", "FiscalQuarter", "FiscalYear",
		"IsPrivate", "CampaignId", "ContactId", "ContractId", "Pricebook2Id", "TotalOpportunityQuantity",
		"HasOpportunityLineItem", "LastActivityDate", "Type", "LeadSource", "NextStep", "Description", "OwnerId",
		"IsClosed", "IsWon", "CreatedDate", "LastModifiedDate", "SystemModstamp", "IsDeleted"} {
		if !have[name] {
			t.Errorf("describe lacks %s", name)
		}
	}
	id := mustInsert(t, e, "Opportunity", map[string]any{"Name": "D", "StageName": "Negotiation/Review",
		"CloseDate": "2026-11-24", "Amount": 1000})
	got, _ := e.Get("Opportunity", id)
	if got["ForecastCategoryName"] != "Pipeline" || got["ForecastCategory"] != "Pipeline" ||
		got["ExpectedRevenue"] != 900.0 || got["Fiscal"] != "2026 4" || got["FiscalQuarter"] != 4.0 {
		t.Fatalf("derived: %v %v %v %v %v", got["ForecastCategoryName"], got["ForecastCategory"], got["ExpectedRevenue"],
			got["Fiscal"], got["FiscalQuarter"])
	}
	if err := e.Update("Opportunity", id, map[string]any{"StageName": "Closed Won"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Get("Opportunity", id); got["ForecastCategoryName"] != "Closed" || got["ForecastCategory"] != "Closed" {
		t.Fatalf("closed: %v %v", got["ForecastCategoryName"], got["ForecastCategory"])
	}
	q := do(t, srv, token, "GET", "/query?q="+url.QueryEscape("SELECT ForecastCategoryName FROM Opportunity WHERE ForecastCategoryName = 'Closed'"), "")
	if q.status != 200 || !strings.Contains(q.body, `"totalSize":1`) {
		t.Fatalf("query by forecast category: %d %s", q.status, q.body)
	}
}

// tokenCall posts a token request and returns the status and the OAuth error.
func tokenCall(t *testing.T, base string, form url.Values) (int, tokenError) {
	t.Helper()
	resp, err := http.PostForm(base+"/services/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body tokenError
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestTokenRefusals(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{Username: "int@example.com", Password: "pw"})
	login := httptest.NewServer(e.LoginHost(srv.URL))
	t.Cleanup(login.Close)
	cc := func(id, secret string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	}
	pw := url.Values{"grant_type": {"password"}, "client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret},
		"username": {"int@example.com"}, "password": {"pw"}}
	tests := []struct {
		name   string
		base   string
		form   url.Values
		status int
		want   tokenError
	}{
		{"wrong secret", srv.URL, cc(DefaultClientID, "nope"), 400, badClientSecret},
		{"unknown client", srv.URL, cc("someone-else", DefaultClientSecret), 400, unknownClient},
		{"client credentials on the login host", login.URL, cc(DefaultClientID, DefaultClientSecret), 400, notOnThisDomain},
		{"client credentials on My Domain", srv.URL, cc(DefaultClientID, DefaultClientSecret), 200, tokenError{}},
		{"password on the login host", login.URL, pw, 200, tokenError{}},
		{"unknown grant", srv.URL, url.Values{"grant_type": {"implicit"}}, 400, tokenError{"unsupported_grant_type", "grant type not supported"}},
	}
	for _, tt := range tests {
		status, body := tokenCall(t, tt.base, tt.form)
		if status != tt.status || body != tt.want {
			t.Errorf("%s: %d %+v, want %d %+v", tt.name, status, body, tt.status, tt.want)
		}
	}
}

// jwtToken runs the JWT bearer flow with x/oauth2's jwt package against base.
func jwtToken(t *testing.T, base, audience, user string, pemKey []byte) (*oauth2.Token, error) {
	cfg := &jwt.Config{Email: DefaultClientID, Subject: user, PrivateKey: pemKey, TokenURL: base + "/services/oauth2/token",
		Audience: audience, Expires: 3 * time.Minute}
	return cfg.TokenSource(t.Context()).Token()
}

func TestJWTBearer(t *testing.T) {
	t.Parallel()
	key, pemKey := testKey(t)
	_, otherPEM := testKey(t)
	e, srv := newServer(t, Options{Username: "int@example.com", JWTPublicKey: &key.PublicKey})
	loginHost := httptest.NewServer(e.LoginHost(srv.URL))
	t.Cleanup(loginHost.Close)
	tok, err := jwtToken(t, loginHost.URL, ProductionAudience, "int@example.com", pemKey)
	if err != nil {
		t.Fatalf("jwt on the login host: %v", err)
	}
	if tok.Extra("instance_url") != srv.URL {
		t.Fatalf("instance_url %v, want the My Domain %s", tok.Extra("instance_url"), srv.URL)
	}
	if r := do(t, srv, tok.AccessToken, "GET", "/limits", ""); r.status != 200 {
		t.Fatalf("data call with the JWT session: %d", r.status)
	}
	cases := []struct {
		name, audience, user string
		pem                  []byte
		want                 string
	}{
		{"signed by another key", ProductionAudience, "int@example.com", otherPEM, "invalid assertion"},
		{"sandbox audience on a production org", SandboxAudience, "int@example.com", pemKey, "audience is invalid"},
		{"the host as audience", loginHost.URL, "int@example.com", pemKey, "audience is invalid"},
		{"unknown user", ProductionAudience, "nobody@example.com", pemKey, "authentication failure"},
	}
	for _, c := range cases {
		_, err := jwtToken(t, srv.URL, c.audience, c.user, c.pem)
		if got := refusal(err); got.Description != c.want {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	_, srv2 := newServer(t, Options{JWTPublicKey: &key.PublicKey, JWTNotPreAuthorized: true})
	_, err = jwtToken(t, srv2.URL, ProductionAudience, DefaultUsername, pemKey)
	if got := refusal(err); got != consumerNotAllowed {
		t.Fatalf("not pre-authorized: %v", err)
	}
	_, srv3 := newServer(t, Options{})
	if _, err := jwtToken(t, srv3.URL, ProductionAudience, DefaultUsername, pemKey); refusal(err) != invalidAssertion {
		t.Fatalf("app without a certificate: %v", err)
	}
	_, srv4 := newServer(t, Options{JWTPublicKey: &key.PublicKey, Sandbox: true})
	if _, err := jwtToken(t, srv4.URL, SandboxAudience, DefaultUsername, pemKey); err != nil {
		t.Fatalf("sandbox audience on a sandbox: %v", err)
	}
}

func testKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// refusal is the OAuth error body of a failed x/oauth2 token call (its jwt package does not parse it).
func refusal(err error) tokenError {
	var re *oauth2.RetrieveError
	var body tokenError
	if errors.As(err, &re) {
		_ = json.Unmarshal(re.Body, &body)
	}
	return body
}

func TestOrgShapes(t *testing.T) {
	t.Parallel()
	single, srv := newServer(t, Options{SingleCurrency: true, Currency: "EUR"})
	token := login(t, srv)
	r := do(t, srv, token, "GET", "/sobjects/Opportunity/describe", "")
	if r.status != 200 || strings.Contains(r.body, `"CurrencyIsoCode"`) {
		t.Fatalf("single-currency describe: %d, CurrencyIsoCode listed: %v", r.status, strings.Contains(r.body, `"CurrencyIsoCode"`))
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/query?q=" + url.QueryEscape("SELECT Id, CurrencyIsoCode FROM Opportunity"), ""},
		{"GET", "/query?q=" + url.QueryEscape("SELECT Id FROM Account WHERE CurrencyIsoCode = 'EUR'"), ""},
		{"POST", "/sobjects/Opportunity", `{` + validOpp + `,"CurrencyIsoCode":"EUR"}`},
		{"POST", "/composite/sobjects", `{"records":[{"attributes":{"type":"Account"},"Name":"a","CurrencyIsoCode":"EUR"}]}`},
	} {
		r := do(t, srv, token, c.method, c.path, c.body)
		if r.status != 400 || errorCode(t, r) != "INVALID_FIELD" {
			t.Errorf("%s %s in a single-currency org: %d %s, want 400 INVALID_FIELD", c.method, c.path, r.status, r.body)
		}
	}
	if n := len(single.All("Opportunity")) + len(single.All("Account")); n != 0 {
		t.Fatalf("refused writes stored %d records", n)
	}
	org := do(t, srv, token, "GET", "/query?q="+url.QueryEscape("SELECT Id, DefaultCurrencyIsoCode FROM Organization"), "")
	if org.status != 200 || !strings.Contains(org.body, `"DefaultCurrencyIsoCode":"EUR"`) || !strings.Contains(org.body, single.OrgID()) {
		t.Fatalf("organization: %d %s", org.status, org.body)
	}
	if r := do(t, srv, token, "POST", "/sobjects/Organization", `{}`); r.status != 400 || errorCode(t, r) != "INVALID_TYPE_FOR_OPERATION" {
		t.Fatalf("insert an Organization: %d %s", r.status, r.body)
	}

	multi, msrv := newServer(t, Options{Currency: "GBP"})
	mtoken := login(t, msrv)
	r = do(t, msrv, mtoken, "POST", "/sobjects/Opportunity", `{`+validOpp+`}`)
	var res saveResult
	if r.status != 201 || json.Unmarshal([]byte(r.body), &res) != nil {
		t.Fatalf("multi-currency create: %d %s", r.status, r.body)
	}
	if got, _ := multi.Get("Opportunity", res.ID); got["CurrencyIsoCode"] != "GBP" {
		t.Fatalf("new record's currency %v, want the corporate GBP", got["CurrencyIsoCode"])
	}
	if _, err := New(Options{Currency: "XYZ"}); err == nil {
		t.Fatal("an unknown corporate currency was accepted")
	}
}

func TestCompositeSubrequestVersions(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, Options{})
	token := login(t, srv)
	r := do(t, srv, token, "POST", "/composite", `{"allOrNone":false,"compositeRequest":[
	 {"method":"GET","url":"/services/data/v30.0/limits","referenceId":"retired"},
	 {"method":"GET","url":"/services/data/v63.0/limits","referenceId":"future"},
	 {"method":"GET","url":"/services/data/v50.0/limits","referenceId":"served"}]}`)
	var res struct {
		CompositeResponse []struct {
			HTTPStatusCode int    `json:"httpStatusCode"`
			ReferenceID    string `json:"referenceId"`
		} `json:"compositeResponse"`
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &res) != nil || len(res.CompositeResponse) != 3 {
		t.Fatalf("composite: %d %s", r.status, r.body)
	}
	for i, want := range []int{410, 404, 200} {
		if got := res.CompositeResponse[i].HTTPStatusCode; got != want {
			t.Errorf("%s: %d, want %d", res.CompositeResponse[i].ReferenceID, got, want)
		}
	}
}
