package sfapi

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/services/emulators/sfemu"
)

// keyFile writes a new RSA key as PEM and returns it with its path.
func keyFile(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return key, path
}

// org starts an emulated org (its My Domain) and its shared login host.
func org(t *testing.T, opts sfemu.Options) (myDomain, login string) {
	_, myDomain, login = emulated(t, opts)
	return myDomain, login
}

// emulated starts an emulator serving an org's My Domain and its shared login host.
func emulated(t *testing.T, opts sfemu.Options) (*sfemu.Emulator, string, string) {
	t.Helper()
	e, err := sfemu.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	lh := httptest.NewServer(e.LoginHost(srv.URL))
	t.Cleanup(lh.Close)
	return e, srv.URL, lh.URL
}

func TestTokenFlows(t *testing.T) {
	t.Parallel()
	key, path := keyFile(t)
	_, otherPath := keyFile(t)
	myDomain, login := org(t, sfemu.Options{JWTPublicKey: &key.PublicKey})
	hc := &http.Client{Timeout: 10 * time.Second}
	jwtCfg := Config{Domain: login, ClientID: sfemu.DefaultClientID, Username: sfemu.DefaultUsername, JWTKeyFile: path}
	s, err := jwtCfg.token(t.Context(), hc)
	if err != nil || s.AccessToken == "" || s.InstanceURL != myDomain {
		t.Fatalf("jwt on the login host: %+v %v", s, err)
	}
	cc := Config{Domain: myDomain, ClientID: sfemu.DefaultClientID, ClientSecret: sfemu.DefaultClientSecret}
	if s, err := cc.token(t.Context(), hc); err != nil || s.InstanceURL != myDomain {
		t.Fatalf("client credentials on My Domain: %+v %v", s, err)
	}
	cases := []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"client credentials on the login host", Config{Domain: login, ClientID: sfemu.DefaultClientID, ClientSecret: sfemu.DefaultClientSecret},
			"request not supported on this domain): client credentials need the org's My Domain"},
		{"wrong secret", Config{Domain: myDomain, ClientID: sfemu.DefaultClientID, ClientSecret: "not-it"},
			"invalid_client (invalid client credentials): COSELL_SF_CLIENT_SECRET is not the app's consumer secret"},
		{"unknown app", Config{Domain: myDomain, ClientID: "other", ClientSecret: "x"}, "invalid_client_id"},
		{"key of another certificate", Config{Domain: login, ClientID: sfemu.DefaultClientID, Username: sfemu.DefaultUsername, JWTKeyFile: otherPath},
			"invalid assertion): the JWT signature does not match the app's certificate"},
		{"sandbox audience", Config{Domain: login, ClientID: sfemu.DefaultClientID, Username: sfemu.DefaultUsername, JWTKeyFile: path, JWTAudience: SandboxAudience},
			"audience is invalid"},
		{"not a key", Config{Domain: login, ClientID: sfemu.DefaultClientID, Username: sfemu.DefaultUsername, JWTKeyFile: "token.go"},
			"is not an RSA private key in PEM"},
	}
	for _, c := range cases {
		_, err := c.cfg.token(t.Context(), hc)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), sfemu.DefaultClientSecret) {
			t.Errorf("%s: the secret is in the error: %v", c.name, err)
		}
	}
	var le *LoginError
	if _, err := (Config{Domain: login, ClientID: sfemu.DefaultClientID, ClientSecret: "x"}).token(t.Context(), hc); !errors.As(err, &le) || le.Code != "invalid_grant" {
		t.Fatalf("LoginError: %v", err)
	}
	_, notApproved := org(t, sfemu.Options{JWTPublicKey: &key.PublicKey, JWTNotPreAuthorized: true})
	_, err = Config{Domain: notApproved, ClientID: sfemu.DefaultClientID, Username: sfemu.DefaultUsername, JWTKeyFile: path}.token(t.Context(), hc)
	if err == nil || !strings.Contains(err.Error(), "pre-authorize the integration user") {
		t.Fatalf("not pre-authorized: %v", err)
	}
}

func TestCheckLogin(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Domain: "https://login.salesforce.com", ClientID: "k", ClientSecret: "s"}, "only on the org's My Domain"},
		{Config{Domain: "https://test.salesforce.com/", ClientID: "k", ClientSecret: "s", Auth: AuthClientCredentials}, "only on the org's My Domain"},
		{Config{Domain: "https://acme.my.salesforce.com", ClientID: "k", ClientSecret: "s"}, ""},
		{Config{Domain: "https://login.salesforce.com", ClientID: "k", Auth: AuthJWT}, "without COSELL_SF_JWT_KEY_FILE"},
		{Config{Domain: "https://login.salesforce.com", ClientID: "k", JWTKeyFile: "k.pem", Username: "u"}, ""},
		{Config{Domain: "https://acme.my.salesforce.com", Auth: "saml"}, "use jwt, client-credentials or password"},
	} {
		err := c.cfg.CheckLogin()
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	for in, want := range map[string]string{"https://login.salesforce.com": ProductionAudience, "https://test.salesforce.com": SandboxAudience,
		"https://acme--dev.sandbox.my.salesforce.com": SandboxAudience, "https://acme.my.salesforce.com": ProductionAudience, "http://127.0.0.1:1": ProductionAudience} {
		if got := jwtAudience(in); got != want {
			t.Errorf("audience of %s = %s, want %s", in, got, want)
		}
	}
}

// TestJWTLoginAndSessionRefresh: the client logs in with the JWT bearer flow on the login host, calls the
// org's My Domain, and when the session expires logs in again once and carries on.
func TestJWTLoginAndSessionRefresh(t *testing.T) {
	t.Parallel()
	key, path := keyFile(t)
	e, myDomain, login := emulated(t, sfemu.Options{JWTPublicKey: &key.PublicKey})
	c, err := New(t.Context(), Config{Domain: login, Auth: AuthJWT, ClientID: sfemu.DefaultClientID, Username: sfemu.DefaultUsername,
		JWTKeyFile: path, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Session().InstanceURL; got != myDomain {
		t.Fatalf("instance %s, want the My Domain %s", got, myDomain)
	}
	if _, err := c.Query(t.Context(), "SELECT Id FROM Account"); err != nil {
		t.Fatal(err)
	}
	e.ExpireSessions()
	before := e.Counts()["token"]
	for range 3 {
		if _, err := c.Query(t.Context(), "SELECT Id FROM Account"); err != nil {
			t.Fatalf("after the session expired: %v", err)
		}
	}
	if n := e.Counts()["token"] - before; n != 1 {
		t.Fatalf("%d logins after one expiry, want 1", n)
	}
	if _, err := New(t.Context(), Config{Domain: login, Auth: AuthClientCredentials, ClientID: sfemu.DefaultClientID,
		ClientSecret: sfemu.DefaultClientSecret}); err == nil || !strings.Contains(err.Error(), "request not supported on this domain") {
		t.Fatalf("client credentials on the login host: %v", err)
	}
}
