package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
)

// pcEnv points the command at a Partner Center emulator over HTTP.
func pcEnv(t *testing.T) *pcemu.Emulator {
	t.Helper()
	emu, err := pcemu.New(pcemu.Options{WebhookBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(func() { emu.Close(); srv.Close() })
	emu.SetBaseURL(srv.URL)
	t.Setenv("COSELL_PC_URL", srv.URL)
	t.Setenv("COSELL_PC_WEBHOOKS_URL", srv.URL)
	t.Setenv("COSELL_PC_TOKEN_URL", emu.TokenURL())
	t.Setenv("COSELL_PC_CLIENT_ID", emu.ClientID())
	t.Setenv("COSELL_PC_CLIENT_SECRET", emu.ClientSecret())
	return emu
}

func runPC(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cmdPC(context.Background(), args, &out, &errOut)
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

// TestPCWebhookTest sends the validation event to the registered receiver.
func TestPCWebhookTest(t *testing.T) {
	emu := pcEnv(t)
	got := make(chan string, 1)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		select {
		case got <- b.String():
		default:
		}
	}))
	t.Cleanup(receiver.Close)
	if code, _, errOut := runPC("webhook", "test"); code != 1 || !strings.Contains(errOut, "test-created") {
		t.Fatalf("test without a registration for test-created: %d %q", code, errOut)
	}
	if code, _, errOut := runPC("webhook", "register", "--url", receiver.URL, "--events", "test-created,referral-updated"); code != 0 {
		t.Fatal(errOut)
	}
	code, out, errOut := runPC("webhook", "test")
	if code != 0 || !strings.Contains(out, "correlation id") {
		t.Fatalf("test: %d %q %q", code, out, errOut)
	}
	select {
	case body := <-got:
		if !strings.Contains(body, `"EventName":"test-created"`) {
			t.Errorf("delivered %s", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no validation event delivered; counts %v", emu.Counts())
	}
	if code, _, _ := runPC("webhook", "frobnicate"); code != 2 {
		t.Errorf("unknown verb: %d, want 2", code)
	}
}
