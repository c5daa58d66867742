package pcwebhook_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/pcwebhook"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

// delivery is one request the test receiver got.
type delivery struct {
	header http.Header
	body   []byte
	err    error // the verifier's verdict
}

type receiver struct {
	mu     sync.Mutex
	got    []delivery
	status int // answer while > 0, else 200
}

func (rc *receiver) all() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

type env struct {
	emu      *pcemu.Emulator
	client   *pcapi.Client
	verifier *pcwebhook.Verifier
	recv     *receiver
	hookURL  string
	base     string
}

func setup(t *testing.T) *env {
	t.Helper()
	emu, base := emutest.PartnerCenterServer(t, pcemu.Options{WebhookBackoff: 10 * time.Millisecond})
	v := emutest.PartnerCenterVerifier(emu, base)
	rc := &receiver{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := v.Verify(r.Context(), r.Header, body)
		rc.mu.Lock()
		rc.got = append(rc.got, delivery{header: r.Header.Clone(), body: body, err: err})
		st := http.StatusOK
		if rc.status > 0 {
			st = rc.status
		}
		rc.mu.Unlock()
		if err != nil {
			st = pcwebhook.StatusCode(err)
		}
		w.WriteHeader(st)
	}))
	t.Cleanup(hook.Close)
	c, err := pcapi.New(context.Background(), emutest.PartnerCenterConfig(emu, base))
	if err != nil {
		t.Fatal(err)
	}
	return &env{emu: emu, client: c, verifier: v, recv: rc, hookURL: hook.URL, base: base}
}

var referralEvents = []string{pc.EventReferralCreated, pc.EventReferralUpdated, pc.EventTestCreated}

func TestSignedNotificationEndToEnd(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	reg, err := e.client.RegisterWebhook(ctx, e.hookURL, referralEvents, false)
	if err != nil || reg.SubscriberID == "" {
		t.Fatalf("register: %+v %v", reg, err)
	}
	r, err := e.emu.SellerCreate(pc.Referral{Name: "msft deal"})
	if err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 10*time.Second, "referral-created", func() bool { return len(e.recv.all()) == 1 })
	d := e.recv.all()[0]
	if d.err != nil {
		t.Fatalf("verifier refused a genuine delivery: %v", d.err)
	}
	n, id, err := pcwebhook.ParseNotification(d.body)
	if err != nil || id != r.ID || n.EventName != pc.EventReferralCreated || n.ResourceName != "referral" {
		t.Fatalf("notification: %+v %s %v", n, id, err)
	}
	if !strings.HasPrefix(d.header.Get("Authorization"), "Signature ") || d.header.Get(pc.HeaderSignatureAlgorithm) != "rsa-sha256" {
		t.Fatalf("headers: %v", d.header)
	}

	// Update fires referral-updated.
	if _, err := e.emu.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{Notes: "hello"}}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 10*time.Second, "referral-updated", func() bool { return len(e.recv.all()) == 2 })
	n, _, _ = pcwebhook.ParseNotification(e.recv.all()[1].body)
	if n.EventName != pc.EventReferralUpdated || e.recv.all()[1].err != nil {
		t.Fatalf("update: %+v %v", n, e.recv.all()[1].err)
	}

	// Tampering: each must be refused by the verifier.
	good := d.header
	cases := []struct {
		name   string
		header func() http.Header
		body   []byte
		want   error
		status int
	}{
		{"forged body", func() http.Header { return good.Clone() }, []byte(strings.Replace(string(d.body), r.ID, "other", 1)), pcwebhook.ErrBadSignature, 401},
		{"forged signature", func() http.Header {
			h := good.Clone()
			h.Set("Authorization", "Signature "+strings.Repeat("A", 344))
			return h
		}, d.body, pcwebhook.ErrBadSignature, 401},
		{"missing signature", func() http.Header { h := good.Clone(); h.Del("Authorization"); return h }, d.body, pcwebhook.ErrMissingSignature, 401},
		{"missing cert url", func() http.Header { h := good.Clone(); h.Del(pc.HeaderCertificateURL); return h }, d.body, pcwebhook.ErrMissingCertURL, 400},
		{"missing algorithm", func() http.Header { h := good.Clone(); h.Del(pc.HeaderSignatureAlgorithm); return h }, d.body, pcwebhook.ErrMissingAlgorithm, 400},
		{"other algorithm", func() http.Header { h := good.Clone(); h.Set(pc.HeaderSignatureAlgorithm, "rsa-sha1"); return h }, d.body, pcwebhook.ErrUnsupportedAlgorithm, 400},
		{"untrusted host", func() http.Header {
			h := good.Clone()
			h.Set(pc.HeaderCertificateURL, "http://evil.example.com/_emulator/cert/x.cer")
			return h
		}, d.body, pcwebhook.ErrUntrustedCertURL, 401},
		{"untrusted path", func() http.Header {
			h := good.Clone()
			h.Set(pc.HeaderCertificateURL, e.base+"/_emulator/referrals")
			return h
		}, d.body, pcwebhook.ErrUntrustedCertURL, 401},
	}
	for _, tc := range cases {
		err := e.verifier.Verify(ctx, tc.header(), tc.body)
		if !errors.Is(err, tc.want) || pcwebhook.StatusCode(err) != tc.status {
			t.Errorf("%s: got %v (status %d), want %v", tc.name, err, pcwebhook.StatusCode(err), tc.want)
		}
	}

	// A verifier that does not trust the emulator's CA refuses the chain.
	strict := &pcwebhook.Verifier{TrustedHosts: e.verifier.TrustedHosts, AllowInsecureHTTP: true, AllowedPathPrefix: "/_emulator/cert/"}
	if err := strict.Verify(ctx, good, d.body); !errors.Is(err, pcwebhook.ErrCertificate) {
		t.Errorf("system roots: %v", err)
	}
	// The default verifier refuses the emulator's http URL and host.
	if err := (&pcwebhook.Verifier{}).Verify(ctx, good, d.body); !errors.Is(err, pcwebhook.ErrUntrustedCertURL) {
		t.Errorf("default verifier: %v", err)
	}
}

func TestRegistrationLifecycleAndValidationEvent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	if _, err := e.client.GetWebhook(ctx); !pcapi.IsNotFound(err) {
		t.Fatalf("get before register: %v", err)
	}
	evs, err := e.client.WebhookEvents(ctx)
	if err != nil || len(evs) < 4 {
		t.Fatalf("events: %v %v", evs, err)
	}
	if _, err := e.client.RegisterWebhook(ctx, e.hookURL, []string{pc.EventReferralCreated}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.RegisterWebhook(ctx, e.hookURL+"/other", referralEvents, false); !pcapi.IsConflict(err) {
		t.Fatalf("second register: %v", err)
	}
	if _, err := e.client.RegisterWebhook(ctx, e.hookURL, []string{"no-such-event"}, true); err == nil {
		t.Fatal("unknown event accepted")
	}
	// Validation needs test-created.
	if _, err := e.client.SendValidationEvent(ctx); err == nil {
		t.Fatal("validation without test-created")
	}
	if _, err := e.client.RegisterWebhook(ctx, e.hookURL, referralEvents, true); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	got, err := e.client.GetWebhook(ctx)
	if err != nil || len(got.WebhookEvents) != 3 || got.WebhookURL != e.hookURL {
		t.Fatalf("get: %+v %v", got, err)
	}

	cid, err := e.client.SendValidationEvent(ctx)
	if err != nil || cid == "" {
		t.Fatalf("validation: %q %v", cid, err)
	}
	testkit.EventuallyTrue(t, 10*time.Second, "validation completed", func() bool {
		st, err := e.client.GetValidationEvent(ctx, cid)
		return err == nil && st.Status == "completed" && len(st.Results) == 1 && st.Results[0].ResponseCode == "OK"
	})
	d := e.recv.all()[0]
	n, _, _ := pcwebhook.ParseNotification(d.body)
	if d.err != nil || n.EventName != pc.EventTestCreated {
		t.Fatalf("test event: %+v %v", n, d.err)
	}

	// Retries on non-2xx, then success; dropped notifications never arrive.
	e.recv.mu.Lock()
	e.recv.status = http.StatusInternalServerError
	e.recv.mu.Unlock()
	if _, err := e.emu.SellerCreate(pc.Referral{Name: "retry me"}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 10*time.Second, "two failed attempts", func() bool { return e.emu.Counts()["webhooks.failed_attempts"] >= 2 })
	e.recv.mu.Lock()
	e.recv.status = 0
	e.recv.mu.Unlock()
	testkit.EventuallyTrue(t, 10*time.Second, "retried delivery", func() bool { return e.emu.Counts()["webhooks.delivered"] == 2 })

	e.emu.SetFaults(pcemu.Faults{DropWebhooks: 1})
	if _, err := e.emu.SellerCreate(pc.Referral{Name: "lost"}); err != nil {
		t.Fatal(err)
	}
	if e.emu.Counts()["webhooks.dropped"] != 1 {
		t.Fatalf("counts: %v", e.emu.Counts())
	}

	// x-ms-signature opt-in.
	if _, err := e.client.UpdateWebhook(ctx, pc.WebhookRegistration{WebhookURL: e.hookURL, WebhookEvents: referralEvents, SignatureTokenToMsSignatureHeader: true}); err != nil {
		t.Fatal(err)
	}
	before := len(e.recv.all())
	if _, err := e.emu.SellerCreate(pc.Referral{Name: "ms header"}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 10*time.Second, "x-ms-signature delivery", func() bool { return len(e.recv.all()) > before })
	last := e.recv.all()[len(e.recv.all())-1]
	if last.err != nil || last.header.Get(pc.HeaderMSSignature) == "" || last.header.Get("Authorization") != "" {
		t.Fatalf("x-ms-signature: %v %v", last.err, last.header)
	}

	if err := e.client.DeleteWebhook(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.GetWebhook(ctx); !pcapi.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestParseNotification(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, id string
		ok             bool
	}{
		{"doc sample", `{"EventName":"referral-updated","ResourceUri":"https://api.partnercenter.microsoft.com/engagements/v1/referrals/abc-1","ResourceName":"referral","AuditUri":null,"ResourceChangeUtcDate":"2018-02-17T00:05:39.5485487+00:00"}`, "abc-1", true},
		{"trailing slash", `{"EventName":"referral-created","ResourceUri":"https://x/engagements/v1/referrals/abc-2/","ResourceName":"referral","AuditUri":null,"ResourceChangeUtcDate":""}`, "abc-2", true},
		{"unknown field", `{"EventName":"referral-created","ResourceUri":"https://x/r/1","Extra":1,"PartnerId":"p"}`, "1", true},
		{"AuditUrl spelling", `{"EventName":"referral-created","ResourceUri":"https://x/r/2","AuditUrl":"https://a/1"}`, "2", true},
		{"no event", `{"ResourceUri":"https://x/r/1"}`, "", false},
		{"no uri", `{"EventName":"referral-created"}`, "", false},
		{"not json", `nope`, "", false},
		{"two objects", `{"EventName":"a","ResourceUri":"https://x/r/1"}{}`, "", false},
	} {
		n, id, err := pcwebhook.ParseNotification([]byte(tc.body))
		if (err == nil) != tc.ok || id != tc.id {
			t.Errorf("%s: id %q err %v", tc.name, id, err)
		}
		if tc.name == "AuditUrl spelling" && (n.AuditURI == nil || *n.AuditURI != "https://a/1") {
			t.Errorf("AuditUrl not taken as AuditUri: %+v", n)
		}
	}
}
