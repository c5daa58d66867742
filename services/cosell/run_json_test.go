package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// TestRunPrintsWorkingCredentialsAsJSON: `cosell run -o json` prints one JSON document of every address and
// login, and each works as printed: the status API with the viewer's bearer token (and not without it), the
// embedded NATS with the printed user and password, and the Salesforce emulator's token endpoint with the
// printed COSELL_SF_CLIENT_ID/SECRET.
func TestRunPrintsWorkingCredentialsAsJSON(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut, done := startRun(ctx, "-o", "json", "--demo=false")
	t.Cleanup(func() { stopRun(t, cancel, done, errOut) })
	var info runInfo
	testkit.EventuallyNil(t, 60*time.Second, "cosell run -o json prints its document", func() error {
		select {
		case code := <-done:
			done <- code
			t.Fatalf("cosell run exited with %d\n%s", code, errOut.String())
		default:
		}
		return json.Unmarshal([]byte(out.String()), &info)
	})
	env := map[string]string{}
	for _, v := range info.Env {
		env[v.Name] = v.Value
	}

	get := func(u, bearer string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(info.StatusAPI, info.Viewer.Secret); code != http.StatusOK {
		t.Errorf("status API with the printed viewer token: %d", code)
	}
	if code := get(info.StatusAPI, ""); code != http.StatusUnauthorized {
		t.Errorf("status API without a login: %d, want 401", code)
	}

	if info.NATS == "" || env["COSELL_NATS_URL"] != info.NATS {
		t.Fatalf("nats %q, COSELL_NATS_URL %q", info.NATS, env["COSELL_NATS_URL"])
	}
	nc, err := nats.Connect(info.NATS, nats.UserInfo(info.NATSUser, info.NATSPassword))
	if err != nil {
		t.Fatalf("the printed NATS login: %v", err)
	}
	nc.Close()

	if env["COSELL_SF_URL"] != info.SFEmulator {
		t.Fatalf("COSELL_SF_URL %q, Salesforce emulator %q", env["COSELL_SF_URL"], info.SFEmulator)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {env["COSELL_SF_CLIENT_ID"]},
		"client_secret": {env["COSELL_SF_CLIENT_SECRET"]}}
	resp, err := http.Post(info.SFEmulator+"/services/oauth2/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		t.Errorf("the printed Salesforce client credentials: %d", resp.StatusCode)
	}
}
