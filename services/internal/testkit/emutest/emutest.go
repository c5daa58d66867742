// Package emutest serves the emulators over real HTTP on 127.0.0.1 for tests and hands back the real
// clients logged in to them, so a test talks to an emulator exactly as a stage does.
package emutest

import (
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/pcwebhook"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
)

// SalesforceServer starts a Salesforce emulator with opts on a free loopback port (closed by t.Cleanup) and
// returns it with its URL, the org's My Domain.
func SalesforceServer(t testing.TB, opts sfemu.Options) (*sfemu.Emulator, string) {
	t.Helper()
	emu, err := sfemu.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return emu, srv.URL
}

// SalesforceConfig configures a client for the org at domain with the emulator's default connected app
// (the client-credentials flow on the org's My Domain).
func SalesforceConfig(domain string) sfapi.Config {
	return sfapi.Config{Domain: domain, ClientID: sfemu.DefaultClientID, ClientSecret: sfemu.DefaultClientSecret,
		RequestTimeout: 10 * time.Second}
}

// Salesforce is SalesforceServer with a client logged in through SalesforceConfig.
func Salesforce(t testing.TB, opts sfemu.Options) (*sfemu.Emulator, *sfapi.Client) {
	t.Helper()
	emu, domain := SalesforceServer(t, opts)
	client, err := sfapi.New(t.Context(), SalesforceConfig(domain))
	if err != nil {
		t.Fatal(err)
	}
	return emu, client
}

// PartnerCenterServer starts a Partner Center emulator with opts on a free loopback port and returns it
// with its base URL: the Referrals and Webhooks APIs, the tenant's Entra ID authority (base/<tenant>, its
// token and device-code endpoints) and the /_emulator/ controls, with links and the signing certificate's
// URL naming that address. Nobody is signed in; t.Cleanup closes the server and the emulator.
func PartnerCenterServer(t testing.TB, opts pcemu.Options) (*pcemu.Emulator, string) {
	t.Helper()
	emu, err := pcemu.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	emu.SetBaseURL(srv.URL)
	t.Cleanup(func() { srv.Close(); emu.Close() })
	return emu, srv.URL
}

// PartnerCenterLogin is what `cosell pc login` stores after the Referrals Admin user signs in: a refresh
// token the emulator issued to that user for its app registration.
func PartnerCenterLogin(emu *pcemu.Emulator) pcapi.StoredToken {
	now := time.Now()
	return pcapi.StoredToken{RefreshToken: emu.IssueRefreshToken(), Method: "device-code", User: pcemu.DefaultUser,
		Authority: emu.Authority(), ClientID: emu.ClientID(), LoggedInAt: now, RotatedAt: now}
}

// PartnerCenterConfig configures a client for the emulator at base the way the stages run
// (COSELL_PC_AUTH=refresh-token): App+User tokens exchanged, per audience, from a fresh PartnerCenterLogin
// held in a memory token store (a stage's is the cosell_pc_credentials bucket).
func PartnerCenterConfig(emu *pcemu.Emulator, base string) pcapi.Config {
	return pcapi.Config{ReferralsBaseURL: base, WebhooksBaseURL: base, Authority: emu.Authority(), ClientID: emu.ClientID(),
		Auth: pcapi.AuthRefreshToken, Tokens: pcapi.NewMemoryTokenStore(PartnerCenterLogin(emu))}
}

// PartnerCenter is PartnerCenterServer with a client built from PartnerCenterConfig; the client has not
// called yet, so its first call makes the token exchange.
func PartnerCenter(t testing.TB, opts pcemu.Options) (*pcemu.Emulator, *pcapi.Client) {
	t.Helper()
	emu, base := PartnerCenterServer(t, opts)
	client, err := pcapi.New(t.Context(), PartnerCenterConfig(emu, base))
	if err != nil {
		t.Fatal(err)
	}
	return emu, client
}

// PartnerCenterVerifier verifies notifications the emulator at base signs, with the trust a development
// deployment gives it (COSELL_PC_WEBHOOK_*): its host for the certificate and issuer URLs, its CA as the root,
// plain HTTP and its /_emulator/cert/ path allowed.
func PartnerCenterVerifier(emu *pcemu.Emulator, base string) *pcwebhook.Verifier {
	u, err := url.Parse(base)
	if err != nil {
		panic("emutest: the emulator's base URL: " + err.Error())
	}
	return &pcwebhook.Verifier{TrustedHosts: []string{u.Host}, IntermediateHosts: []string{u.Host}, Roots: emu.RootPool(),
		AllowInsecureHTTP: true, AllowedPathPrefix: "/_emulator/cert/"}
}
