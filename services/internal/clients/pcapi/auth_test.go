package pcapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

// kvStores starts an embedded nats-server with the provisioned buckets and returns a function that opens the
// token store over a new connection each call — one per replica or restart, as separate processes would.
func kvStores(t *testing.T) func() pcapi.TokenStore {
	t.Helper()
	ns := bustest.Server(t)
	return func() pcapi.TokenStore {
		kv, err := bustest.Bus(t, ns, bustest.Config(3, time.Second), contracts.StagePCWriter, nil).KV(t.Context(), contracts.BucketPCCredentials)
		if err != nil {
			t.Fatal(err)
		}
		return pcapi.KVTokenStore{KV: kv}
	}
}

// expiryLog records what the client reports after each refresh (the metric's input).
type expiryLog struct {
	mu      sync.Mutex
	expires []time.Time
	errs    []error
}

func (l *expiryLog) observe(exp time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expires = append(l.expires, exp)
	l.errs = append(l.errs, err)
}

// The delegated path end to end over HTTP: a device-code sign-in with x/oauth2 stores the refresh token in the
// KV bucket; a stage's client exchanges it (rotating it); a restarted client and a second replica use the newest
// one after the older ones are revoked; an expired token is reported, with its fix, to the caller, the store and
// the metric hook.
func TestDelegatedLoginRotationRestartReplicasAndExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	emu, base := emutest.PartnerCenterServer(t, pcemu.Options{DeviceCodeInterval: time.Second})
	stores := kvStores(t)

	// cosell pc login: the prompt is where the user signs in (here: the verification page's form, over HTTP).
	var prompted *oauth2.DeviceAuthResponse
	login, err := pcapi.Login(ctx, pcapi.LoginConfig{Authority: emu.Authority(), ClientID: emu.ClientID()}, stores(),
		func(da *oauth2.DeviceAuthResponse) {
			prompted = da
			resp, err := http.PostForm(da.VerificationURI, url.Values{"user_code": {da.UserCode}})
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("approve: %v %v", err, resp)
			}
			resp.Body.Close()
		})
	if err != nil {
		t.Fatal(err)
	}
	if prompted == nil || prompted.VerificationURI != base+"/_emulator/devicelogin" || login.User != pcemu.DefaultUser ||
		login.Method != "device-code" || !login.ExpiresAt().Equal(login.RotatedAt.Add(90*24*time.Hour)) {
		t.Fatalf("login = %v, prompt %+v", login, prompted)
	}
	if strings.Contains(login.String(), login.RefreshToken) {
		t.Fatal("StoredToken.String shows the token")
	}

	var rec expiryLog
	newClient := func() *pcapi.Client {
		c, err := pcapi.New(ctx, pcapi.Config{ReferralsBaseURL: base, WebhooksBaseURL: base, Authority: emu.Authority(),
			ClientID: emu.ClientID(), Tokens: stores(), OnRefresh: rec.observe})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	current := func() pcapi.StoredToken {
		st, _, err := stores().Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	a := newClient()
	if _, err := a.GetReferral(ctx, "missing"); !pcapi.IsNotFound(err) {
		t.Fatalf("delegated call: %v", err)
	}
	rotated := current()
	if rotated.RefreshToken == login.RefreshToken || rotated.User != pcemu.DefaultUser {
		t.Fatalf("the refresh token was not rotated into the store: %v", rotated)
	}
	// Both audiences: the webhook API gets its own token from the same refresh token.
	if _, err := a.GetWebhook(ctx); !pcapi.IsNotFound(err) {
		t.Fatalf("webhooks audience: %v", err)
	}

	// Restart: only the newest refresh token works, and a fresh process finds it in the bucket.
	emu.RevokeRefreshTokens(login.RefreshToken, rotated.RefreshToken)
	restarted := newClient()
	if _, err := restarted.GetReferral(ctx, "missing"); !pcapi.IsNotFound(err) {
		t.Fatalf("after restart: %v", err)
	}

	// Two replicas share it: b rotates, every older token is revoked, a's access token expires, and a carries on
	// with b's rotation from the bucket.
	afterRestart := current().RefreshToken
	b := newClient()
	emu.ExpireTokens()
	if _, err := b.GetReferral(ctx, "missing"); !pcapi.IsNotFound(err) {
		t.Fatalf("replica b: %v", err)
	}
	byB := current().RefreshToken
	if byB == afterRestart {
		t.Fatal("b did not rotate the shared token")
	}
	emu.RevokeRefreshTokens(afterRestart)
	emu.ExpireTokens()
	if _, err := a.GetReferral(ctx, "missing"); !pcapi.IsNotFound(err) {
		t.Fatalf("replica a after b's rotation: %v", err)
	}
	if current().RefreshToken == byB {
		t.Fatal("a did not rotate the shared token")
	}

	// Expiry: Entra answers AADSTS700082; the caller gets an *AuthError naming cosell pc login, the record keeps
	// the refusal for cosell doctor, and the hook sees it (the failures metric).
	emu.ExpireRefreshTokens()
	emu.ExpireTokens()
	_, err = a.GetReferral(ctx, "missing")
	var ae *pcapi.AuthError
	if !errors.As(err, &ae) || ae.AADSTS != "AADSTS700082" || !pcapi.IsAuthExpired(err) || !strings.Contains(ae.Fix, "cosell pc login") {
		t.Fatalf("expired: %v", err)
	}
	if !pcapi.IsTransient(err) {
		t.Error("an expired sign-in must not fail commands permanently")
	}
	if st := current(); !strings.Contains(st.LastError, "AADSTS700082") {
		t.Errorf("the store does not record the refusal: %q", st.LastError)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if n := len(rec.errs); n == 0 || rec.errs[n-1] == nil || rec.expires[0].Before(time.Now().Add(89*24*time.Hour)) {
		t.Errorf("refresh observations: %v %v", rec.expires, rec.errs)
	}
}

// A client-credentials token is refused by the Referrals API; the delegated client on the same emulator works.
func TestClientCredentialsRefusedByReferralsAPI(t *testing.T) {
	t.Parallel()
	emu, base := emutest.PartnerCenterServer(t, pcemu.Options{})
	resp, err := http.PostForm(emu.TokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {emu.ClientID()},
		"client_secret": {emu.ClientSecret()}, "scope": {"https://api.partner.microsoft.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	decodeJSON(t, resp, &tok)
	req, _ := http.NewRequest("GET", base+"/v1.0/engagements/referrals", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	decodeJSON(t, resp, &body)
	if resp.StatusCode != http.StatusForbidden || body.Error.Code != "accessDenied" {
		t.Fatalf("app-only: %d %+v", resp.StatusCode, body)
	}
	c, err := pcapi.New(context.Background(), emutest.PartnerCenterConfig(emu, base))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetReferral(context.Background(), "x"); !pcapi.IsNotFound(err) {
		t.Fatalf("delegated: %v", err)
	}
	// The removed method cannot be configured.
	if _, err := pcapi.New(context.Background(), pcapi.Config{Authority: emu.Authority(), ClientID: "x", Auth: "client-credentials"}); err == nil ||
		!strings.Contains(err.Error(), "app-only") {
		t.Errorf("client-credentials method: %v", err)
	}
}

// The password grant is the explicitly named option for an account without MFA; with MFA it fails with the fix.
func TestPasswordMethod(t *testing.T) {
	t.Parallel()
	emu, base := emutest.PartnerCenterServer(t, pcemu.Options{})
	cfg := pcapi.Config{ReferralsBaseURL: base, WebhooksBaseURL: base, Authority: emu.Authority(), ClientID: emu.ClientID(),
		Auth: pcapi.AuthPassword, Username: pcemu.DefaultUser, Password: "cosell-emulator-password"}
	c, err := pcapi.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetReferral(context.Background(), "x"); !pcapi.IsNotFound(err) {
		t.Fatalf("password: %v", err)
	}
	if _, err := c.GetWebhook(context.Background()); !pcapi.IsNotFound(err) {
		t.Fatalf("password, webhooks audience: %v", err)
	}
	emu.SetMFARequired(true)
	emu.ExpireTokens()
	_, err = c.GetReferral(context.Background(), "x")
	var ae *pcapi.AuthError
	if !errors.As(err, &ae) || ae.AADSTS != "AADSTS50076" || !strings.Contains(ae.Fix, "cosell pc login") {
		t.Fatalf("MFA: %v", err)
	}
	cfg.Password = ""
	if _, err := pcapi.New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "COSELL_PC_PASSWORD") {
		t.Errorf("no password: %v", err)
	}
}

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// Concurrent calls that all need a token share one exchange (one rotation of the stored refresh token).
func TestConcurrentCallsShareOneRefresh(t *testing.T) {
	t.Parallel()
	emu, base := emutest.PartnerCenterServer(t, pcemu.Options{})
	c, err := pcapi.New(context.Background(), emutest.PartnerCenterConfig(emu, base))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.GetReferral(context.Background(), "x"); !pcapi.IsNotFound(err) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := emu.Counts()["token.refresh_token"]; n != 1 {
		t.Errorf("%d refresh-token exchanges for 8 concurrent calls, want 1", n)
	}
}
