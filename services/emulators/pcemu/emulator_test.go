package pcemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

type harness struct {
	t     *testing.T
	emu   *Emulator
	base  string
	token string
}

func start(t *testing.T) *harness {
	t.Helper()
	emu, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, emu: emu, base: serve(t, emu)}
	// A delegated token, the documented refresh shape: the Referrals API takes App+User tokens only.
	resp, body := h.form("/"+emu.TenantID()+"/oauth2/v2.0/token", url.Values{"grant_type": {"refresh_token"},
		"client_id": {emu.ClientID()}, "refresh_token": {emu.IssueRefreshToken()}, "scope": {"https://api.partner.microsoft.com/user_impersonation offline_access"}})
	if resp.StatusCode != 200 {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	var tok struct {
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.TokenType != "Bearer" || tok.ExpiresIn <= 0 {
		t.Fatalf("token body: %s", body)
	}
	h.token = tok.AccessToken
	return h
}

func (h *harness) form(path string, v url.Values) (*http.Response, []byte) {
	resp, err := http.PostForm(h.base+path, v)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (h *harness) do(method, path string, body any, hdr map[string]string) (*http.Response, []byte) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	u := path
	if !strings.HasPrefix(u, "http") {
		u = h.base + path
	}
	req, _ := http.NewRequest(method, u, rd)
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestTokenErrors(t *testing.T) {
	t.Parallel()
	h := start(t)
	for _, tc := range []struct {
		name, tenant string
		v            url.Values
		status       int
		code         string
	}{
		{"secret", h.emu.TenantID(), url.Values{"grant_type": {"client_credentials"}, "client_id": {h.emu.ClientID()}, "client_secret": {"x"}, "scope": {"s"}}, 401, "invalid_client"},
		{"client", h.emu.TenantID(), url.Values{"grant_type": {"client_credentials"}, "client_id": {"x"}, "client_secret": {"x"}, "scope": {"s"}}, 400, "unauthorized_client"},
		{"scope", h.emu.TenantID(), url.Values{"grant_type": {"client_credentials"}, "client_id": {h.emu.ClientID()}, "client_secret": {h.emu.ClientSecret()}}, 400, "invalid_request"},
		{"grant", h.emu.TenantID(), url.Values{"grant_type": {"authorization_code"}, "client_id": {h.emu.ClientID()}, "client_secret": {h.emu.ClientSecret()}, "scope": {"s"}}, 400, "unsupported_grant_type"},
		{"tenant", "other", url.Values{"grant_type": {"client_credentials"}, "client_id": {h.emu.ClientID()}, "client_secret": {h.emu.ClientSecret()}, "scope": {"s"}}, 400, "invalid_request"},
	} {
		resp, body := h.form("/"+tc.tenant+"/oauth2/v2.0/token", tc.v)
		var e struct {
			Error string `json:"error"`
			Desc  string `json:"error_description"`
		}
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != tc.status || e.Error != tc.code || !strings.HasPrefix(e.Desc, "AADSTS") {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
	}
	resp, body := h.form("/"+h.emu.TenantID()+"/oauth2/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {h.emu.ClientID()}, "client_secret": {h.emu.ClientSecret()}, "resource": {"https://api.partner.microsoft.com"}})
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"resource":"https://api.partner.microsoft.com"`) {
		t.Errorf("v1: %d %s", resp.StatusCode, body)
	}
	h.token = "bogus"
	resp, body = h.do("GET", "/v1.0/engagements/referrals", nil, nil)
	if resp.StatusCode != 401 || !strings.Contains(string(body), `"unauthenticated"`) {
		t.Errorf("bogus token: %d %s", resp.StatusCode, body)
	}
}

func TestHTTPSurface(t *testing.T) {
	t.Parallel()
	h := start(t)
	in := pc.Referral{Name: "d", Type: pc.TypeIndependent, ExternalReferenceID: "0065g00000AbCdEAAV", CustomerProfile: &pc.CustomerProfile{Name: "c"}, Consent: &pc.Consent{}, Details: &pc.Details{}}
	resp, body := h.do("POST", "/v1.0/engagements/referrals", in, map[string]string{"client-request-id": "abc"})
	if resp.StatusCode != 201 || resp.Header.Get("client-request-id") != "abc" || resp.Header.Get("request-id") == "" || resp.Header.Get("ETag") == "" {
		t.Fatalf("create: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	var r pc.Referral
	_ = json.Unmarshal(body, &r)

	// Unknown fields are refused.
	resp, _ = h.do("POST", "/v1.0/engagements/referrals", map[string]any{"name": "x", "nosuch": 1}, nil)
	if resp.StatusCode != 400 {
		t.Fatalf("unknown field: %d", resp.StatusCode)
	}

	// PATCH without Prefer → 204 with ETag.
	resp, _ = h.do("PATCH", "/v1.0/engagements/referrals/"+r.ID, []pc.PatchOp{{Op: "replace", Path: "/details/notes", Value: "n"}}, map[string]string{"If-Match": r.ETag})
	if resp.StatusCode != 204 || resp.Header.Get("ETag") == r.ETag {
		t.Fatalf("patch: %d", resp.StatusCode)
	}
	resp, _ = h.do("GET", "/v1.0/engagements/referrals/"+newGUID(), nil, nil)
	if resp.StatusCode != 404 {
		t.Fatalf("get missing: %d", resp.StatusCode)
	}

	// Seller endpoints.
	resp, body = h.do("POST", "/_emulator/referrals", pc.Referral{Name: "msft", Details: &pc.Details{Currency: "EUR"}}, nil)
	var s pc.Referral
	_ = json.Unmarshal(body, &s)
	if resp.StatusCode != 201 || s.Direction != pc.DirectionIncoming || s.Status != pc.StatusNew || s.Substatus != pc.SubstatusPending ||
		s.InviteContext.InvitedBy.OrganizationID != "msft" || s.Type != pc.TypeShared || s.Qualification != pc.QualificationSalesQualified {
		t.Fatalf("seller create: %d %s", resp.StatusCode, body)
	}
	resp, body = h.do("PATCH", "/_emulator/referrals/"+s.ID, map[string]any{"details": map[string]any{"dealValue": 5}}, nil)
	var s2 pc.Referral
	_ = json.Unmarshal(body, &s2)
	if resp.StatusCode != 200 || *s2.Details.DealValue != 5 || s2.Details.Currency != "EUR" || s2.UpdatedDateTime <= s.UpdatedDateTime {
		t.Fatalf("seller update: %d %s", resp.StatusCode, body)
	}
	resp, _ = h.do("POST", "/_emulator/referrals/"+s.ID+"/expire", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("expire: %d", resp.StatusCode)
	}
	resp, _ = h.do("POST", "/_emulator/referrals/"+s.ID+"/close", map[string]string{"substatus": "Won"}, nil)
	if resp.StatusCode != 409 {
		t.Fatalf("close after expire: %d", resp.StatusCode)
	}
	resp, body = h.do("GET", "/_emulator/referrals", nil, nil)
	var all []pc.Referral
	_ = json.Unmarshal(body, &all)
	if resp.StatusCode != 200 || len(all) != 2 {
		t.Fatalf("emulator list: %d %d", resp.StatusCode, len(all))
	}
	resp, body = h.do("GET", "/_emulator/referrals?count=true", nil, nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"distinctExternalReferenceIds":1,"total":2,"withExternalReferenceId":1}` {
		t.Fatalf("emulator count: %d %s", resp.StatusCode, body)
	}
	resp, _ = h.do("POST", "/_emulator/faults", Faults{Throttle429: 1}, nil)
	if resp.StatusCode != 200 {
		t.Fatal("faults")
	}
	resp, body = h.do("GET", "/v1.0/engagements/referrals", nil, nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), "Rate limit is exceeded. Try again in 1 seconds.") {
		t.Fatalf("429: %d %s", resp.StatusCode, body)
	}
	resp, body = h.do("GET", "/_emulator/counts", nil, nil)
	var counts map[string]int
	_ = json.Unmarshal(body, &counts)
	if counts["referrals.create"] != 2 || counts["referrals.patch"] != 1 || counts["token"] != 1 || counts["referrals.list"] != 1 {
		t.Fatalf("counts: %s", body)
	}
	// A second referral naming the same Opportunity (a duplicate create) shows in the count.
	if resp, body := h.do("POST", "/v1.0/engagements/referrals", in, nil); resp.StatusCode != 201 {
		t.Fatalf("second create: %d %s", resp.StatusCode, body)
	}
	resp, body = h.do("GET", "/_emulator/referrals?count=true", nil, nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"distinctExternalReferenceIds":1,"total":3,"withExternalReferenceId":2}` {
		t.Fatalf("emulator count with a duplicate: %d %s", resp.StatusCode, body)
	}
}

func TestNextLinkIsFullURL(t *testing.T) {
	t.Parallel()
	h := start(t)
	for range 3 {
		if _, err := h.emu.SellerCreate(pc.Referral{}); err != nil {
			t.Fatal(err)
		}
	}
	_, body := h.do("GET", "/v1.0/engagements/referrals?$top=2&$filter="+url.QueryEscape("status eq 'New'"), nil, nil)
	var page pc.ReferralList
	_ = json.Unmarshal(body, &page)
	if len(page.Value) != 2 || *page.ODataCount != 3 || !strings.HasPrefix(page.ODataNextLink, h.base+"/v1.0/engagements/referrals?") ||
		!strings.Contains(page.ODataNextLink, "%24skiptoken=2") {
		t.Fatalf("page 1: %s", body)
	}
	_, body = h.do("GET", page.ODataNextLink, nil, nil)
	page = pc.ReferralList{}
	_ = json.Unmarshal(body, &page)
	if len(page.Value) != 1 || page.ODataNextLink != "" {
		t.Fatalf("page 2: %s", body)
	}
}

func TestFilterParser(t *testing.T) {
	t.Parallel()
	r := &pc.Referral{ID: "A1", EngagementID: "e-1", Status: "New", Substatus: "Pending", Type: "Shared", Direction: "Incoming",
		ExternalReferenceID: "006xYz", UpdatedDateTime: "2024-05-01T10:00:00.0000000Z", CreatedDateTime: "2024-04-01T10:00:00.0000000Z",
		CustomerProfile: &pc.CustomerProfile{Address: &pc.Address{Country: "US"}}}
	for _, tc := range []struct {
		f      string
		want   bool
		parses bool
	}{
		{"status eq 'New' and qualification eq 'SalesQualified'", false, true},
		{"status eq 'new' and substatus eq 'Pending'", true, true},
		{"(type eq 'Shared' and direction eq 'Incoming')", true, true},
		{"customerProfile/address/country eq 'US' and direction eq 'Incoming'", true, true},
		{"engagementId eq e-1", true, true},
		{"externalReferenceId eq '006xyz'", false, true},
		{"externalReferenceId eq '006xYz'", true, true},
		{"externalReferenceId ne '006xYz' or status eq 'New'", true, true},
		{"not (status eq 'Closed')", true, true},
		{"updatedDateTime gt 2024-05-01T09:59:59Z", true, true},
		{"updatedDateTime ge 2024-05-01T10:00:00Z and createdDateTime lt 2024-04-01T10:00:00Z", false, true},
		{"updatedDateTime le 2024-05-01T10:00:00.0000000Z", true, true},
		{"status eq New", false, false},
		{"status gt 'New'", false, false},
		{"team/any(t:t/email eq 'x')", false, false},
		{"status eq 'New", false, false},
		{"updatedDateTime gt yesterday", false, false},
		{"status eq 'New' and", false, false},
	} {
		if _, err := parseFilter(tc.f, FilterRefuse); strings.Contains(tc.f, "externalReferenceId") && !errors.As(err, new(errNotFilterable)) {
			t.Errorf("%q: an undocumented property must be refused, got %v", tc.f, err)
		}
		p, err := parseFilter(tc.f, FilterHonor)
		if (err == nil) != tc.parses {
			t.Errorf("%q: parse err %v", tc.f, err)
			continue
		}
		if err == nil && p(r) != tc.want {
			t.Errorf("%q: got %v", tc.f, !tc.want)
		}
	}
}

func TestTimesStrictlyIncrease(t *testing.T) {
	t.Parallel()
	e := &Emulator{}
	prev := ""
	for range 1000 {
		ts := e.nextTime()
		if ts <= prev {
			t.Fatalf("%s after %s", ts, prev)
		}
		prev = ts
	}
}

// TestLinkedCountFollowsEdits: the count of referrals naming an Opportunity comes from an index kept on every
// create and edit; a patched externalReferenceId moves the referral from one Opportunity to the other.
func TestLinkedCountFollowsEdits(t *testing.T) {
	t.Parallel()
	h := start(t)
	count := func() string {
		t.Helper()
		resp, body := h.do("GET", "/_emulator/referrals?count=true", nil, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("count: %d %s", resp.StatusCode, body)
		}
		return strings.TrimSpace(string(body))
	}
	in := pc.Referral{Name: "d", Type: pc.TypeIndependent, ExternalReferenceID: "006A", CustomerProfile: &pc.CustomerProfile{Name: "c"}, Consent: &pc.Consent{}, Details: &pc.Details{}}
	resp, body := h.do("POST", "/v1.0/engagements/referrals", in, nil)
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var r pc.Referral
	_ = json.Unmarshal(body, &r)
	if _, err := h.emu.SellerCreate(pc.Referral{Name: "Microsoft's"}); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != `{"distinctExternalReferenceIds":1,"total":2,"withExternalReferenceId":1}` {
		t.Fatalf("after the creates: %s", got)
	}
	resp, body = h.do("PATCH", "/v1.0/engagements/referrals/"+r.ID, []pc.PatchOp{{Op: "replace", Path: "/externalReferenceId", Value: "006B"}}, nil)
	if resp.StatusCode != 204 {
		t.Fatalf("patch: %d %s", resp.StatusCode, body)
	}
	in.ExternalReferenceID = "006B"
	if resp, body := h.do("POST", "/v1.0/engagements/referrals", in, nil); resp.StatusCode != 201 {
		t.Fatalf("second create: %d %s", resp.StatusCode, body)
	}
	if got := count(); got != `{"distinctExternalReferenceIds":1,"total":3,"withExternalReferenceId":2}` {
		t.Errorf("after moving the first to 006B and creating another for it: %s", got)
	}
	resp, body = h.do("PATCH", "/v1.0/engagements/referrals/"+r.ID, []pc.PatchOp{{Op: "replace", Path: "/externalReferenceId", Value: "006C"}}, nil)
	if resp.StatusCode != 204 {
		t.Fatalf("patch: %d %s", resp.StatusCode, body)
	}
	if got := count(); got != `{"distinctExternalReferenceIds":2,"total":3,"withExternalReferenceId":2}` {
		t.Errorf("after moving the first to 006C: %s", got)
	}
}

// Seller edits of one referral made at once all apply, as if made one after the other: each is merged into
// the version the others left (an edit is computed outside the emulator's lock and redone when another was
// stored meanwhile), and every edit is a version of its own.
func TestConcurrentSellerEditsAllApply(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	v := 1.0
	r, err := e.SellerCreate(pc.Referral{Name: "race", Details: &pc.Details{DealValue: &v, Currency: "USD"}})
	if err != nil {
		t.Fatal(err)
	}
	const edits = 200
	var wg sync.WaitGroup
	versions := make(chan string, 2*edits)
	for _, field := range []string{"value", "notes"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= edits; i++ {
				patch := pc.Referral{Details: &pc.Details{Notes: fmt.Sprintf("note %d", i)}}
				if field == "value" {
					v := float64(i)
					patch = pc.Referral{Details: &pc.Details{DealValue: &v}}
				}
				out, err := e.SellerUpdate(r.ID, patch)
				if err != nil {
					t.Error(err)
					return
				}
				versions <- out.ETag
			}
		}()
	}
	wg.Wait()
	close(versions)
	seen := map[string]bool{}
	for tag := range versions {
		seen[tag] = true
	}
	got, err := e.Get(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Details == nil || got.Details.DealValue == nil || *got.Details.DealValue != edits || got.Details.Notes != fmt.Sprintf("note %d", edits) {
		t.Fatalf("after both sellers' last edits: details %+v, want deal value %d and notes %q", got.Details, edits, fmt.Sprintf("note %d", edits))
	}
	if len(seen) != 2*edits || got.Details.Currency != "USD" {
		t.Fatalf("%d distinct versions for %d edits; currency %q", len(seen), 2*edits, got.Details.Currency)
	}
}
