package pcemu

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// tokenBody is the part of an Entra ID token or error response the tests read.
type tokenBody struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	Resource     string `json:"resource"`
	Error        string `json:"error"`
	Desc         string `json:"error_description"`
	Codes        []int  `json:"error_codes"`
	UserCode     string `json:"user_code"`
	DeviceCode   string `json:"device_code"`
	Verification string `json:"verification_uri"`
	Interval     int    `json:"interval"`
}

func (h *harness) entra(path string, v url.Values) (int, tokenBody) {
	h.t.Helper()
	resp, body := h.form("/"+h.emu.TenantID()+path, v)
	var tb tokenBody
	if err := json.Unmarshal(body, &tb); err != nil {
		h.t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
	}
	return resp.StatusCode, tb
}

func (h *harness) call(token, method, path string) (int, string) {
	h.t.Helper()
	saved := h.token
	h.token = token
	defer func() { h.token = saved }()
	resp, body := h.do(method, path, nil, nil)
	return resp.StatusCode, string(body)
}

const (
	referralsScope = "https://api.partner.microsoft.com/user_impersonation offline_access"
	webhooksScope  = "https://api.partnercenter.microsoft.com/user_impersonation offline_access"
)

// An app-only (client-credentials) token is refused by the Referrals API with Partner Center's error shape,
// and accepted by the webhook API, as the docs say of each.
func TestAppOnlyTokenRefusedByReferrals(t *testing.T) {
	t.Parallel()
	h := start(t)
	st, tb := h.entra("/oauth2/v2.0/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {h.emu.ClientID()},
		"client_secret": {h.emu.ClientSecret()}, "scope": {"https://api.partner.microsoft.com/.default"}})
	if st != 200 || tb.RefreshToken != "" {
		t.Fatalf("client credentials: %d %+v", st, tb)
	}
	if code, body := h.call(tb.AccessToken, "GET", "/v1.0/engagements/referrals"); code != 403 || !strings.Contains(body, `"code":"accessDenied"`) ||
		!strings.Contains(body, "App+User") {
		t.Errorf("app-only on referrals: %d %s", code, body)
	}
	_, wh := h.entra("/oauth2/v2.0/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {h.emu.ClientID()},
		"client_secret": {h.emu.ClientSecret()}, "scope": {"https://api.partnercenter.microsoft.com/.default"}})
	if code, body := h.call(wh.AccessToken, "GET", "/webhooks/v1/registration"); code != 404 {
		t.Errorf("app-only on webhooks: %d %s", code, body)
	}
	if h.emu.Counts()["refused.app_only"] != 1 {
		t.Errorf("counts %v", h.emu.Counts())
	}
}

// Each host refuses a token issued for the other.
func TestAudienceCheckedPerHost(t *testing.T) {
	t.Parallel()
	h := start(t)
	rt := h.emu.IssueRefreshToken()
	_, wh := h.entra("/oauth2/v2.0/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {h.emu.ClientID()},
		"refresh_token": {rt}, "scope": {webhooksScope}})
	if code, body := h.call(wh.AccessToken, "GET", "/v1.0/engagements/referrals"); code != 401 ||
		!strings.Contains(body, "audience 'https://api.partnercenter.microsoft.com' is not valid") {
		t.Errorf("webhooks token on referrals: %d %s", code, body)
	}
	if code, body := h.call(h.token, "GET", "/webhooks/v1/registration"); code != 401 || !strings.Contains(body, "audience") {
		t.Errorf("referrals token on webhooks: %d %s", code, body)
	}
	if code, _ := h.call(wh.AccessToken, "GET", "/webhooks/v1/registration"); code != 404 {
		t.Errorf("webhooks token on webhooks: %d", code)
	}
	// One resource per request, and only the two Partner Center ones.
	if st, tb := h.entra("/oauth2/v2.0/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {h.emu.ClientID()},
		"refresh_token": {rt}, "scope": {"https://api.partner.microsoft.com/user_impersonation https://graph.microsoft.com/User.Read"}}); st != 400 || tb.Error != "invalid_scope" {
		t.Errorf("two resources: %d %+v", st, tb)
	}
	if st, tb := h.entra("/oauth2/v2.0/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {h.emu.ClientID()},
		"refresh_token": {rt}, "scope": {"https://example.com/.default"}}); st != 400 || tb.Codes[0] != 500011 {
		t.Errorf("unknown resource: %d %+v", st, tb)
	}
}

// The device-code flow as Entra ID runs it: authorization_pending, slow_down when polled too fast, the
// sign-in approved through the control API, then tokens; a used or expired code is refused.
func TestDeviceCodeFlow(t *testing.T) {
	t.Parallel()
	h := start(t)
	st, dc := h.entra("/oauth2/v2.0/devicecode", url.Values{"client_id": {h.emu.ClientID()}, "scope": {"openid profile " + referralsScope}})
	if st != 200 || dc.DeviceCode == "" || len(dc.UserCode) != 9 || dc.Interval != 5 || !strings.HasSuffix(dc.Verification, "/_emulator/devicelogin") {
		t.Fatalf("devicecode: %d %+v", st, dc)
	}
	poll := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "client_id": {h.emu.ClientID()}, "device_code": {dc.DeviceCode}}
	if st, tb := h.entra("/oauth2/v2.0/token", poll); st != 400 || tb.Error != "authorization_pending" || tb.Codes[0] != 70016 {
		t.Fatalf("pending: %d %+v", st, tb)
	}
	if st, tb := h.entra("/oauth2/v2.0/token", poll); st != 400 || tb.Error != "slow_down" {
		t.Fatalf("polled at once: %d %+v", st, tb)
	}
	resp, body := h.do("POST", "/_emulator/devicelogin", map[string]string{"userCode": strings.ToLower(dc.UserCode)},
		map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 {
		t.Fatalf("approve: %d %s", resp.StatusCode, body)
	}
	st, tb := h.entra("/oauth2/v2.0/token", poll)
	if st != 200 || tb.AccessToken == "" || tb.RefreshToken == "" || tb.IDToken == "" {
		t.Fatalf("approved: %d %+v", st, tb)
	}
	if code, _ := h.call(tb.AccessToken, "GET", "/v1.0/engagements/referrals"); code != 200 {
		t.Errorf("device-code token on referrals: %d", code)
	}
	if st, tb := h.entra("/oauth2/v2.0/token", poll); st != 400 || tb.Error != "invalid_grant" {
		t.Errorf("code used twice: %d %+v", st, tb)
	}

	short, err := New(Options{DeviceCodeTTL: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.emu = short
	srv := serve(t, short)
	h.base = srv
	_, dc = h.entra("/oauth2/v2.0/devicecode", url.Values{"client_id": {short.ClientID()}, "scope": {referralsScope}})
	poll.Set("device_code", dc.DeviceCode)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, tb := h.entra("/oauth2/v2.0/token", poll)
		if tb.Error == "expired_token" && st == 400 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never expired: %d %+v", st, tb)
		}
	}
}

// Refresh tokens rotate on every use; a revoked or expired one is refused with invalid_grant and Entra's code.
func TestRefreshRotationRevocationAndExpiry(t *testing.T) {
	t.Parallel()
	h := start(t)
	rt := h.emu.IssueRefreshToken()
	grant := func(rt string) (int, tokenBody) {
		return h.entra("/oauth2/v2.0/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {h.emu.ClientID()},
			"refresh_token": {rt}, "scope": {referralsScope}})
	}
	st, tb := grant(rt)
	if st != 200 || tb.RefreshToken == "" || tb.RefreshToken == rt {
		t.Fatalf("refresh: %d %+v", st, tb)
	}
	next := tb.RefreshToken
	resp, body := h.do("POST", "/_emulator/refresh-tokens/revoke", map[string][]string{"refreshTokens": {rt}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"revoked":1`) {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if st, tb := grant(rt); st != 400 || tb.Error != "invalid_grant" || tb.Codes[0] != 50173 || !strings.HasPrefix(tb.Desc, "AADSTS50173:") {
		t.Errorf("revoked: %d %+v", st, tb)
	}
	if st, _ := grant(next); st != 200 {
		t.Errorf("the rotated token must still work: %d", st)
	}
	resp, _ = h.do("POST", "/_emulator/refresh-tokens/expire", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	if st, tb := grant(next); st != 400 || tb.Codes[0] != 700082 || !strings.Contains(tb.Desc, "expired due to inactivity") {
		t.Errorf("expired: %d %+v", st, tb)
	}
	if st, tb := grant("never-issued"); st != 400 || tb.Error != "invalid_grant" {
		t.Errorf("unknown: %d %+v", st, tb)
	}
}

// The documented password grant (v1, resource=) works for an account without MFA and is refused with
// AADSTS50076 for one with MFA.
func TestPasswordGrant(t *testing.T) {
	t.Parallel()
	h := start(t)
	v := url.Values{"grant_type": {"password"}, "client_id": {h.emu.ClientID()}, "username": {DefaultUser},
		"password": {"cosell-emulator-password"}, "resource": {"https://api.partner.microsoft.com"}}
	st, tb := h.entra("/oauth2/token", v)
	if st != 200 || tb.Resource != "https://api.partner.microsoft.com" || tb.RefreshToken == "" {
		t.Fatalf("password: %d %+v", st, tb)
	}
	if code, _ := h.call(tb.AccessToken, "GET", "/v1.0/engagements/referrals"); code != 200 {
		t.Errorf("password token on referrals: %d", code)
	}
	v.Set("password", "wrong")
	if st, tb := h.entra("/oauth2/token", v); st != 400 || tb.Codes[0] != 50126 {
		t.Errorf("wrong password: %d %+v", st, tb)
	}
	v.Set("password", "cosell-emulator-password")
	h.emu.SetMFARequired(true)
	if st, tb := h.entra("/oauth2/token", v); st != 400 || tb.Codes[0] != 50076 {
		t.Errorf("MFA account: %d %+v", st, tb)
	}
}

func serve(t *testing.T, e *Emulator) string {
	t.Helper()
	srv := httptest.NewServer(e)
	e.SetBaseURL(srv.URL)
	t.Cleanup(func() { srv.Close(); e.Close() })
	return srv.URL
}

// What a Microsoft seller sends is kept, or refused with the reason — never silently rewritten.
func TestSellerReferralKeptOrRefused(t *testing.T) {
	t.Parallel()
	h := start(t)
	created := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
	expires := time.Now().UTC().Add(10 * 24 * time.Hour).Truncate(time.Second).Format(time.RFC3339)
	in := map[string]any{"id": "7d4c5b3a-0000-4000-8000-0000000000aa", "name": "Seller's own name", "type": "Shared",
		"organizationId": h.emu.opts.OrganizationID, "createdDateTime": created, "expirationDateTime": expires,
		"qualification": "MarketingQualified"}
	resp, body := h.do("POST", "/_emulator/referrals", in, nil)
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var r struct {
		ID, Name, Type, OrganizationID, CreatedDateTime, Qualification string
		ExpirationDateTime                                             *string
	}
	_ = json.Unmarshal(body, &r)
	ct, _ := time.Parse(time.RFC3339Nano, r.CreatedDateTime)
	et, _ := time.Parse(time.RFC3339Nano, *r.ExpirationDateTime)
	if r.ID != in["id"] || r.Name != in["name"] || r.Type != "Shared" || r.Qualification != "MarketingQualified" ||
		ct.Format(time.RFC3339) != created || et.Format(time.RFC3339) != expires {
		t.Errorf("the seller's values were rewritten: %s", body)
	}
	for _, tc := range []struct {
		field string
		v     any
	}{
		{"type", "Independent"}, {"organizationId", "00000000-0000-4000-8000-00000000beef"}, {"updatedDateTime", created},
		{"direction", "Outgoing"}, {"status", "Active"}, {"id", "not-a-guid"}, {"createdDateTime", "2999-01-01T00:00:00Z"},
	} {
		resp, body := h.do("POST", "/_emulator/referrals", map[string]any{"name": "x", tc.field: tc.v}, nil)
		if resp.StatusCode != 400 || !strings.Contains(string(body), `"target":"`+tc.field+`"`) {
			t.Errorf("%s=%v: %d %s", tc.field, tc.v, resp.StatusCode, body)
		}
	}
	if resp, body := h.do("POST", "/_emulator/referrals", in, nil); resp.StatusCode != 409 {
		t.Errorf("duplicate id: %d %s", resp.StatusCode, body)
	}
	if resp, body := h.do("PATCH", "/_emulator/referrals/"+r.ID, map[string]any{"organizationId": "other"}, nil); resp.StatusCode != 400 ||
		!strings.Contains(string(body), "organizationId cannot be changed") {
		t.Errorf("edit of a server-owned field: %d %s", resp.StatusCode, body)
	}
}
