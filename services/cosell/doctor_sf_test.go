package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metadata "github.com/cosell-dev/cosell/deploy/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
)

// sfDoctor starts an emulated org shaped by mod, points COSELL_SF_* at it as the stages would log in
// (overridden by env), and runs `cosell doctor --only sf`.
func sfDoctor(t *testing.T, mod func(*stack.Options), env map[string]string) (int, string) {
	t.Helper()
	opts := stack.Options{DataDir: t.TempDir(), Log: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&opts)
	}
	s, err := stack.StartInfra(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	cfg, err := s.SFConfig()
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"COSELL_SF_URL": cfg.Domain, "COSELL_SF_AUTH": cfg.Flow(), "COSELL_SF_CLIENT_ID": cfg.ClientID,
		"COSELL_SF_CLIENT_SECRET": cfg.ClientSecret, "COSELL_SF_USERNAME": cfg.Username, "COSELL_SF_JWT_KEY_FILE": cfg.JWTKeyFile,
		"COSELL_SF_PASSWORD": "", "COSELL_SF_JWT_AUDIENCE": "", "COSELL_MAPPING_FILE": "", "COSELL_DEFAULT_CURRENCY": ""}
	for k, v := range env {
		base[k] = strings.ReplaceAll(v, "{login}", s.SFLoginURL)
	}
	for k, v := range base {
		t.Setenv(k, v)
	}
	return runDoctor("--only", "sf")
}

// TestDoctorNamesEachSalesforceMisconfiguration: each way a Salesforce login or org can be wrong is one
// failed check with the problem and a fix that works.
func TestDoctorNamesEachSalesforceMisconfiguration(t *testing.T) {
	jwt := func(o *stack.Options) { o.SFLogin = sfapi.AuthJWT }
	otherKey := filepath.Join(t.TempDir(), "other.key")
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	if err := os.WriteFile(otherKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	notAKey := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(notAKey, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An org without the package's How can Microsoft help field (not deployed, or hidden from the user).
	partial := t.TempDir()
	if err := os.CopyFS(partial, metadata.Metadata); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(partial, "force-app/main/default/objects/Opportunity/fields/How_can_Microsoft_help__c.field-meta.xml")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mod  func(*stack.Options)
		env  map[string]string
		want []string
	}{
		{"client credentials on the login host", nil, map[string]string{"COSELL_SF_URL": "https://login.salesforce.com"},
			[]string{"FAIL  sf       login settings", "only on the org's My Domain", "fix:     set COSELL_SF_URL to the org's My Domain URL"}},
		{"client credentials on the emulated login host", nil, map[string]string{"COSELL_SF_URL": "{login}"},
			[]string{"FAIL  sf       login", "request not supported on this domain", "fix:     client credentials need the org's My Domain"}},
		{"wrong consumer secret", nil, map[string]string{"COSELL_SF_CLIENT_SECRET": "not-the-secret"},
			[]string{"FAIL  sf       login", "invalid client credentials", "fix:     COSELL_SF_CLIENT_SECRET is not the app's consumer secret"}},
		{"JWT without a key", jwt, map[string]string{"COSELL_SF_JWT_KEY_FILE": ""},
			[]string{"FAIL  sf       login settings", "without COSELL_SF_JWT_KEY_FILE"}},
		{"JWT key of another certificate", jwt, map[string]string{"COSELL_SF_JWT_KEY_FILE": otherKey},
			[]string{"FAIL  sf       login", "invalid assertion", "fix:     the JWT signature does not match the app's certificate"}},
		{"JWT file that is no key", jwt, map[string]string{"COSELL_SF_JWT_KEY_FILE": notAKey},
			[]string{"FAIL  sf       login", "is not an RSA private key in PEM"}},
		{"JWT user not pre-authorized", func(o *stack.Options) { jwt(o); o.SFOrg.JWTNotPreAuthorized = true }, nil,
			[]string{"FAIL  sf       login", "user hasn't approved this consumer", "fix:     pre-authorize the integration user"}},
		{"JWT sandbox audience on a production org", jwt, map[string]string{"COSELL_SF_JWT_AUDIENCE": sfapi.SandboxAudience},
			[]string{"FAIL  sf       login", "audience is invalid"}},
		{"a field cosell reads is missing", func(o *stack.Options) { o.SFMetadataDir = partial }, nil,
			[]string{"FAIL  sf       fields cosell and the mapping read", "the org has no Opportunity field How_can_Microsoft_help__c",
				"fix:     deploy cosell's package (sf project deploy start --source-dir deploy/salesforce/force-app"}},
		{"single-currency org in another currency than the mapping's", func(o *stack.Options) { o.SFOrg.SingleCurrency, o.SFOrg.Currency = true, "EUR" }, nil,
			[]string{"FAIL  sf       currencies", "the org is single-currency (EUR) but the mapping's default currency is USD", "COSELL_DEFAULT_CURRENCY=EUR"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := sfDoctor(t, c.mod, c.env)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("doctor output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "cosell-connected-app-secret") {
				t.Errorf("the secret is in the output:\n%s", out)
			}
		})
	}
	// And green: JWT on the login host, a single-currency org in the mapping's currency.
	code, out := sfDoctor(t, func(o *stack.Options) { jwt(o); o.SFOrg.SingleCurrency = true }, nil)
	if code != 0 || !strings.Contains(out, "ok    sf       login settings (jwt at") || !strings.Contains(out, "single-currency org, USD") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
