package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

// pcEnv points the command at a Partner Center emulator over HTTP and an embedded NATS holding the sign-in
// (a refresh token of the emulator's Referrals Admin user, as cosell pc login would have stored it).
func pcEnv(t *testing.T) *pcemu.Emulator {
	t.Helper()
	emu, _ := pcLoginEnv(t, pcemu.Options{WebhookBackoff: 20 * time.Millisecond})
	bus := testBus(t)
	store, err := stage.TokenStore(context.Background(), bus)
	if err != nil {
		t.Fatal(err)
	}
	if err := pcapi.Put(context.Background(), store, emutest.PartnerCenterLogin(emu)); err != nil {
		t.Fatal(err)
	}
	return emu
}

// pcLoginEnv starts the emulator and an embedded, provisioned NATS and sets the COSELL_PC_* and COSELL_NATS_URL
// variables for them, with nobody signed in.
func pcLoginEnv(t *testing.T, opts pcemu.Options) (*pcemu.Emulator, string) {
	t.Helper()
	emu, base := emutest.PartnerCenterServer(t, opts)
	t.Setenv("COSELL_NATS_URL", bustest.Server(t).ClientURL())
	t.Setenv("COSELL_PC_URL", base)
	t.Setenv("COSELL_PC_WEBHOOKS_URL", base)
	t.Setenv("COSELL_PC_AUTHORITY", emu.Authority())
	t.Setenv("COSELL_PC_CLIENT_ID", emu.ClientID())
	if err := testBus(t).Provision(context.Background()); err != nil {
		t.Fatal(err)
	}
	return emu, base
}

// testBus connects to COSELL_NATS_URL as the CLI does.
func testBus(t *testing.T) *platform.Bus {
	t.Helper()
	b, err := platform.Connect(context.Background(), platform.BusConfig{URL: os.Getenv("COSELL_NATS_URL"), Replicas: 1,
		MaxAge: time.Hour, DuplicateWindow: time.Minute, MaxDeliver: 3, AckWait: time.Second}, "cli", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// TestPCLoginDeviceCode: `cosell pc login` prints the URL and code, waits while the sign-in is pending, and
// once the user approved stores a refresh token every later command (and stage) uses.
func TestPCLoginDeviceCode(t *testing.T) {
	emu, base := pcLoginEnv(t, pcemu.Options{DeviceCodeInterval: time.Second})
	if code, _, errOut := runPC("webhook", "show"); code != 1 || !strings.Contains(errOut, "cosell pc login") {
		t.Fatalf("before login: %d %q", code, errOut)
	}
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		done <- Run(context.Background(), []string{"pc", "login"}, pw, &errOut)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var userCode string
	for sc.Scan() {
		line := sc.Text()
		if _, after, ok := strings.Cut(line, "enter the code "); ok {
			if !strings.Contains(line, base+"/_emulator/devicelogin") {
				t.Errorf("prompt lacks the verification URL: %q", line)
			}
			userCode = after
			break
		}
	}
	if userCode == "" {
		t.Fatalf("no code printed; stderr %q", errOut.String())
	}
	// The user signs in in a browser: the form the verification page posts.
	resp, err := http.PostForm(base+"/_emulator/devicelogin", url.Values{"user_code": {userCode}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	rest, _ := io.ReadAll(pr)
	if code := <-done; code != 0 || !strings.Contains(string(rest), "signed in as "+pcemu.DefaultUser) {
		t.Fatalf("login: %d %q %q", code, rest, errOut.String())
	}
	if emu.Counts()["token.device_code"] < 1 {
		t.Errorf("no device-code poll: %v", emu.Counts())
	}
	if code, out, errOut := runPC("webhook", "show"); code != 0 || !strings.Contains(out, "no webhook registered") {
		t.Fatalf("after login: %d %q %q", code, out, errOut)
	}
}

func runPC(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Run(context.Background(), append([]string{"pc"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestPCWebhookRegisterShowDelete(t *testing.T) {
	emu := pcEnv(t)
	if code, out, _ := runPC("webhook", "show"); code != 0 || !strings.Contains(out, "no webhook registered") {
		t.Fatalf("show before register: %d %q", code, out)
	}
	const ours = "https://cosell.example.com/webhooks/partner-center"
	code, out, errOut := runPC("webhook", "register", "--url", ours)
	if code != 0 || !strings.Contains(out, ours) {
		t.Fatalf("register: %d %q %q", code, out, errOut)
	}
	if code, out, _ := runPC("webhook", "show"); code != 0 || !strings.Contains(out, ours) ||
		!strings.Contains(out, pc.EventRelatedReferralUpdated) {
		t.Fatalf("show: %d %q", code, out)
	}
	// Registering the same URL again is harmless.
	if code, _, errOut := runPC("webhook", "register", "--url", ours, "--overwrite"); code != 0 {
		t.Fatalf("re-register: %d %q", code, errOut)
	}
	if code, out, _ := runPC("webhook", "delete"); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %d %q", code, out)
	}
	if code, out, _ := runPC("webhook", "show"); code != 0 || !strings.Contains(out, "no webhook registered") {
		t.Fatalf("show after delete: %d %q", code, out)
	}
	if code, _, errOut := runPC("webhook", "delete"); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("deleting nothing: %d %q", code, errOut)
	}
	if n := emu.Counts()["webhooks.delete"]; n != 2 {
		t.Errorf("delete calls = %d", n)
	}
}

// TestPCWebhookRegisterRefusesToOverwrite: another receiver's registration (e.g. Microsoft's Power Automate
// connector) is only replaced with --overwrite.
func TestPCWebhookRegisterRefusesToOverwrite(t *testing.T) {
	emu := pcEnv(t)
	const theirs, ours = "https://prod-00.westus.logic.azure.com/workflows/abc", "https://cosell.example.com/hook"
	if code, _, errOut := runPC("webhook", "register", "--url", theirs, "--events", "referral-created,referral-updated"); code != 0 {
		t.Fatalf("first register: %q", errOut)
	}
	code, _, errOut := runPC("webhook", "register", "--url", ours)
	if code != 1 || !strings.Contains(errOut, theirs) || !strings.Contains(errOut, "--overwrite") {
		t.Fatalf("register over another URL: %d %q", code, errOut)
	}
	if n := emu.Counts()["webhooks.update"] + emu.Counts()["webhooks.register"]; n != 1 {
		t.Errorf("the refusal must not write: %v", emu.Counts())
	}
	if code, out, errOut := runPC("webhook", "register", "--url", ours, "--overwrite"); code != 0 || !strings.Contains(out, ours) {
		t.Fatalf("register --overwrite: %d %q %q", code, out, errOut)
	}
	if _, out, _ := runPC("webhook", "show"); !strings.Contains(out, ours) || strings.Contains(out, theirs) {
		t.Errorf("after overwrite: %q", out)
	}
	if code, _, _ := runPC("webhook", "register"); code != 2 {
		t.Errorf("register without --url: %d, want 2", code)
	}
}

// TestPCWebhookTest: cosell pc webhook test explains what to register when the registration is missing or
// lacks test-created (and writes nothing), adds test-created with --register keeping the URL and the
// events, sends Partner Center's validation event, and reports its delivery record from the emulator:
// exit 0 when the receiver answered 2xx, 1 when it refused; the third event within a minute is refused
// as Partner Center refuses it (2 a minute).
func TestPCWebhookTest(t *testing.T) {
	emu := pcEnv(t)
	var status atomic.Int32
	status.Store(http.StatusOK)
	got := make(chan string, 4)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		got <- b.String()
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(receiver.Close)
	if code, _, errOut := runPC("webhook", "test"); code != 1 || !strings.Contains(errOut, "no webhook is registered") ||
		!strings.Contains(errOut, "--events referral-created,referral-updated,related-referral-created,related-referral-updated,test-created") {
		t.Fatalf("test without a registration: %d %q", code, errOut)
	}
	if code, _, errOut := runPC("webhook", "register", "--url", receiver.URL, "--events", "referral-updated,referral-created"); code != 0 {
		t.Fatal(errOut)
	}
	writes := func() int { return emu.Counts()["webhooks.update"] + emu.Counts()["webhooks.register"] }
	if code, _, errOut := runPC("webhook", "test"); code != 1 || !strings.Contains(errOut, "subscribes to test-created") ||
		!strings.Contains(errOut, "cosell pc webhook test --register") || writes() != 1 {
		t.Fatalf("test without test-created registered: %d %q, %d writes", code, errOut, writes())
	}
	code, out, errOut := runPC("webhook", "test", "--register")
	if code != 0 || !strings.Contains(errOut, "added test-created") || !strings.Contains(out, "completed") || !strings.Contains(out, "OK") {
		t.Fatalf("test --register: %d %q %q", code, out, errOut)
	}
	if body := <-got; !strings.Contains(body, `"EventName":"test-created"`) {
		t.Errorf("delivered %s", body)
	}
	_, out, _ = runPC("webhook", "show", "-o", "json")
	var reg pc.WebhookRegistration
	if err := json.Unmarshal([]byte(out), &reg); err != nil || reg.WebhookURL != receiver.URL ||
		strings.Join(reg.WebhookEvents, ",") != "referral-updated,referral-created,test-created" {
		t.Errorf("registration after --register: %v %s", err, out)
	}
	// A receiver that refuses: the delivery record says so, and the command fails.
	status.Store(http.StatusForbidden)
	code, out, errOut = runPC("webhook", "test", "-o", "json", "--wait", "2s")
	var st pc.WebhookValidationStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 1 || len(st.Results) == 0 || st.Results[0].ResponseCode != "Forbidden" ||
		!strings.Contains(errOut, "did not acknowledge") {
		t.Fatalf("test against a refusing receiver: %d %v %q %q", code, err, out, errOut)
	}
	<-got
	// Partner Center allows two validation events a minute.
	if code, _, errOut := runPC("webhook", "test"); code != 1 || !strings.Contains(errOut, "429") || !strings.Contains(errOut, "two validation events a minute") {
		t.Fatalf("the third validation event within a minute: %d %q", code, errOut)
	}
	if code, _, _ := runPC("webhook", "frobnicate"); code != 2 {
		t.Errorf("unknown verb: %d, want 2", code)
	}
}
