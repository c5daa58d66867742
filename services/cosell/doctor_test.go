package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
)

// doctorEnv starts the emulators and an embedded NATS (no pipeline) and points the doctor at them.
func doctorEnv(t *testing.T) *stack.Stack {
	t.Helper()
	s, err := stack.StartInfra(context.Background(), stack.Options{DataDir: t.TempDir(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	for k, v := range map[string]string{
		"COSELL_SF_URL": s.SFURL, "COSELL_SF_CLIENT_ID": stack.SFClientID, "COSELL_SF_CLIENT_SECRET": stack.SFClientSecret,
		"COSELL_PC_URL": s.PCURL, "COSELL_PC_WEBHOOKS_URL": s.PCURL, "COSELL_PC_AUTHORITY": s.PC.Authority(),
		"COSELL_PC_CLIENT_ID": s.PC.ClientID(),
		"COSELL_NATS_URL":     s.NATS.ClientURL(),
	} {
		t.Setenv(k, v)
	}
	return s
}

func runDoctor(args ...string) (int, string) {
	var out bytes.Buffer
	code := Run(context.Background(), append([]string{"doctor"}, args...), &out, &out)
	return code, out.String()
}

func TestDoctorPassesOnAReadyDeploymentAndNamesEachFix(t *testing.T) {
	s := doctorEnv(t)
	const hook = "https://cosell.example.com/webhooks/partner-center"
	r, err := s.PC.SellerCreate(pc.Referral{Name: "Doctor's referral", Details: &pc.Details{Notes: "keep me"}})
	if err != nil {
		t.Fatal(err)
	}

	// Nothing provisioned, no webhook: each failure comes with its fix, and the exit code says so.
	code, out := runDoctor("--webhook-url", hook)
	if code != 1 {
		t.Fatalf("exit %d before provisioning, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		"ok    sf       login (", "ok    sf       fields cosell and the mapping read", "ok    sf       Opportunity custom fields", "ok    sf       Opportunity Teams",
		"FAIL  pc       configuration", "the Partner Center refresh token is kept in the cosell_pc_credentials bucket; create it with cosell doctor --provision --only nats",
		"FAIL  nats     stream " + contracts.StreamObserved, "fix:     run the provisioning Job",
		"FAIL  nats     bucket " + contracts.BucketLinks,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}

	// Apply the fixes: register the webhook, provision; then every check passes, including the write check.
	if code, out := runDoctor("--only", "nats", "--provision"); code != 0 {
		t.Fatalf("provision: exit %d\n%s", code, out)
	}
	// Provisioned, but nobody signed in yet.
	code, out = runDoctor("--only", "pc")
	if want := "FAIL  pc       sign-in\n      problem: no Partner Center refresh token is stored in " + contracts.BucketPCCredentials +
		"\n      fix:     sign in once as the Referrals Admin user: cosell pc login"; code != 1 || !strings.Contains(out, want) {
		t.Errorf("exit %d, doctor output lacks %q:\n%s", code, want, out)
	}
	client, err := s.PCClient(context.Background()) // seeds the sign-in, as cosell pc login would
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.RegisterWebhook(context.Background(), hook, defaultEvents, true); err != nil {
		t.Fatal(err)
	}
	code, out = runDoctor("--webhook-url", hook, "--pc-write-referral", r.ID)
	if code != 0 || strings.Contains(out, "FAIL") {
		t.Fatalf("exit %d after the fixes:\n%s", code, out)
	}
	for _, want := range []string{"referral write (referral " + r.ID, "ok    pc       sign-in: refresh token of " + pcemu.DefaultUser,
		"ok    pc       referral read (api.partner.microsoft.com audience)", "ok    pc       webhook API (api.partnercenter.microsoft.com audience)"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	if got, _ := client.GetReferral(context.Background(), r.ID); got.Details == nil || got.Details.Notes != "keep me" {
		t.Errorf("the write check changed the referral: %+v", got.Details)
	}

	// A stream with the wrong settings and a registration pointing elsewhere are named with their fix.
	nc, err := nats.Connect(s.NATS.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), contracts.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxAge = time.Hour
	if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RegisterWebhook(context.Background(), "https://elsewhere.example.com/hook", []string{pc.EventReferralCreated}, true); err != nil {
		t.Fatal(err)
	}
	code, out = runDoctor("--only", "webhook,nats", "--webhook-url", hook)
	defer func() {
		// The Partner Center sign-in's failures, each with its fix. A token unused for 80 days is reported
		// before it expires (and the doctor's own call renews it).
		kv, err := js.KeyValue(context.Background(), contracts.BucketPCCredentials)
		if err != nil {
			t.Fatal(err)
		}
		store := pcapi.KVTokenStore{KV: kv}
		st, _, err := store.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st.RotatedAt = time.Now().Add(-80 * 24 * time.Hour)
		if err := pcapi.Put(context.Background(), store, st); err != nil {
			t.Fatal(err)
		}
		code, out := runDoctor("--only", "pc")
		if want := "FAIL  pc       sign-in\n      problem: the refresh token of " + pcemu.DefaultUser + " expires "; code != 1 || !strings.Contains(out, want) ||
			!strings.Contains(out, "ok    pc       referral read") {
			t.Errorf("expiring: exit %d, doctor output lacks %q:\n%s", code, want, out)
		}
		if code, out := runDoctor("--only", "pc"); code != 0 {
			t.Errorf("after the doctor's own call renewed it: exit %d\n%s", code, out)
		}
		s.PC.RevokeRefreshTokens()
		s.PC.ExpireTokens()
		code, out = runDoctor("--only", "pc")
		for _, want := range []string{"FAIL  pc       referral read", "AADSTS50173", "fix:     the sign-in was revoked or needs MFA again", "cosell pc login"} {
			if code != 1 || !strings.Contains(out, want) {
				t.Errorf("revoked: exit %d, doctor output lacks %q:\n%s", code, want, out)
			}
		}
		if code, out = runDoctor("--only", "pc"); code != 1 || !strings.Contains(out, "FAIL  pc       sign-in\n      problem: Entra ID refused the stored refresh token") {
			t.Errorf("the recorded refusal: exit %d\n%s", code, out)
		}
		t.Setenv("COSELL_PC_TOKEN_URL", s.PC.TokenURL())
		code, out = runDoctor("--only", "pc")
		if want := "FAIL  pc       configuration\n      problem: app-only (client credentials) configuration"; code != 1 || !strings.Contains(out, want) ||
			!strings.Contains(out, "cosell pc login") {
			t.Errorf("app-only: exit %d, doctor output lacks %q:\n%s", code, want, out)
		}
	}()
	for _, want := range []string{
		"FAIL  nats     stream " + contracts.StreamAudit + "\n      problem: max age is 1h0m0s, want 168h0m0s",
		"FAIL  webhook  registration URL\n      problem: Partner Center posts to https://elsewhere.example.com/hook, not to " + hook,
		"FAIL  webhook  registered events\n      problem: not registered for " + pc.EventReferralUpdated,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d with failures, want 1", code)
	}
	// As data: every check with its verdict; a failing one carries its problem and fix.
	code, out = runDoctor("--only", "nats", "-o", "json")
	var rep struct {
		Passed bool
		Checks []struct{ Group, Name, Problem, Fix string }
	}
	err = json.Unmarshal([]byte(out), &rep)
	failing := slices.IndexFunc(rep.Checks, func(c struct{ Group, Name, Problem, Fix string }) bool {
		return c.Name == "stream "+contracts.StreamAudit && strings.Contains(c.Problem, "max age is 1h0m0s") && strings.Contains(c.Fix, "--provision")
	})
	if err != nil || code != 1 || rep.Passed || len(rep.Checks) < 10 || rep.Checks[0].Group != "nats" || failing < 0 {
		t.Errorf("doctor -o json: exit %d, %v, want 1 and the failing stream with its fix\n%s", code, err, out)
	}
	// The connection flags the other commands take work here too: --nats instead of COSELL_NATS_URL.
	t.Setenv("COSELL_NATS_URL", "")
	if code, out = runDoctor("--only", "nats", "--nats", s.NATS.ClientURL()); code != 1 || !strings.Contains(out, "ok    nats     connection nats://") {
		t.Errorf("doctor --nats: exit %d\n%s", code, out)
	}
	t.Setenv("COSELL_NATS_URL", s.NATS.ClientURL()) // for the checks deferred above
}

// TestDoctorNamesAWrongAudience: the webhook API reached on the Referrals host (COSELL_PC_WEBHOOKS_URL pointing
// at the wrong host, here a proxy onto the emulator's Referrals API) refuses the webhook-audience token; the
// doctor names the audience and the fix.
func TestDoctorNamesAWrongAudience(t *testing.T) {
	s := doctorEnv(t)
	if code, out := runDoctor("--only", "nats", "--provision"); code != 0 {
		t.Fatalf("provision: exit %d\n%s", code, out)
	}
	if _, err := s.PCClient(context.Background()); err != nil { // seeds the sign-in
		t.Fatal(err)
	}
	target, _ := url.Parse(s.PCURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	direct := proxy.Director
	proxy.Director = func(r *http.Request) {
		direct(r)
		r.URL.Path = "/v1.0/engagements/referrals" // every webhook call lands on the Referrals API
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	t.Setenv("COSELL_PC_WEBHOOKS_URL", srv.URL)
	code, out := runDoctor("--only", "pc")
	for _, want := range []string{"FAIL  pc       webhook API (api.partnercenter.microsoft.com audience)", "problem: wrong token audience",
		"fix:     COSELL_PC_URL must be the Referrals host (https://api.partner.microsoft.com) and COSELL_PC_WEBHOOKS_URL the webhooks host"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("exit %d, doctor output lacks %q:\n%s", code, want, out)
		}
	}
}
