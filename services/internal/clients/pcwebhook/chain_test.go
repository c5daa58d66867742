package pcwebhook_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/clients/pcwebhook"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// genuine returns one delivery the emulator signed (root → intermediate → leaf; the URL serves the leaf only).
func genuine(t *testing.T, e *env) delivery {
	t.Helper()
	if _, err := e.client.RegisterWebhook(context.Background(), e.hookURL, referralEvents, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.emu.SellerCreate(pc.Referral{Name: "chain"}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 10*time.Second, "a delivery", func() bool { return len(e.recv.all()) >= 1 })
	return e.recv.all()[0]
}

// A leaf under an intermediate verifies: from the leaf's AIA URL on a pinned host (fetched once, then cached),
// or from a configured bundle (nothing fetched); with neither, the chain is refused.
func TestLeafUnderIntermediate(t *testing.T) {
	t.Parallel()
	e := setup(t)
	d := genuine(t, e)
	if d.err != nil {
		t.Fatalf("the receiver's verifier (AIA fetch) refused a genuine delivery: %v", d.err)
	}
	if e.emu.Counts()["cert.intermediate"] != 1 || e.verifier.Fetches() != 2 {
		t.Fatalf("fetches: verifier %d, emulator %v", e.verifier.Fetches(), e.emu.Counts())
	}
	for range 5 {
		if err := e.verifier.Verify(context.Background(), d.header, d.body); err != nil {
			t.Fatal(err)
		}
	}
	if e.verifier.Fetches() != 2 {
		t.Errorf("cached certificates downloaded again: %d fetches", e.verifier.Fetches())
	}

	u, _ := url.Parse(e.base)
	bundle := &pcwebhook.Verifier{TrustedHosts: []string{u.Host}, IntermediateHosts: []string{}, Roots: e.emu.RootPool(),
		Intermediates: e.emu.IntermediatePool(), AllowInsecureHTTP: true, AllowedPathPrefix: "/_emulator/cert/"}
	if err := bundle.Verify(context.Background(), d.header, d.body); err != nil || bundle.Fetches() != 1 {
		t.Errorf("with the bundle: %v, %d fetches (want the leaf only)", err, bundle.Fetches())
	}
	none := &pcwebhook.Verifier{TrustedHosts: []string{u.Host}, IntermediateHosts: []string{}, Roots: e.emu.RootPool(),
		AllowInsecureHTTP: true, AllowedPathPrefix: "/_emulator/cert/"}
	if err := none.Verify(context.Background(), d.header, d.body); !errors.Is(err, pcwebhook.ErrCertificate) {
		t.Errorf("no intermediate: %v, want a chain refusal", err)
	}
	// The default intermediate hosts are Microsoft's and DigiCert's, not the emulator's.
	dflt := &pcwebhook.Verifier{TrustedHosts: []string{u.Host}, Roots: e.emu.RootPool(), AllowInsecureHTTP: true, AllowedPathPrefix: "/_emulator/cert/"}
	if err := dflt.Verify(context.Background(), d.header, d.body); !errors.Is(err, pcwebhook.ErrCertificate) {
		t.Errorf("issuer URL on an unpinned host: %v", err)
	}
}

// chain is a root → intermediate → leaf of its own keys, all O=Microsoft Corporation.
type chain struct {
	root, inter, leaf *x509.Certificate
	leafKey           *rsa.PrivateKey
}

func newChain(t *testing.T, aia string) chain {
	t.Helper()
	key := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rk, ik, lk := key(), key(), key()
	mk := func(cn string, ca bool, parent *x509.Certificate, pub, signer *rsa.PrivateKey, aia []string) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
			Subject:   pkix.Name{CommonName: cn, Organization: []string{"Microsoft Corporation"}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: ca, BasicConstraintsValid: ca,
			IssuingCertificateURL: aia}
		if ca {
			tmpl.KeyUsage = x509.KeyUsageCertSign
		} else {
			tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &pub.PublicKey, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	root := mk("Rogue Root", true, nil, rk, rk, nil)
	inter := mk("Rogue Issuing CA", true, root, ik, rk, nil)
	leaf := mk("pcnotifications-dispatch.microsoft.com", false, inter, lk, ik, []string{aia})
	return chain{root: root, inter: inter, leaf: leaf, leafKey: lk}
}

func sign(t *testing.T, key *rsa.PrivateKey, body []byte, certURL string) http.Header {
	t.Helper()
	sum := sha256.Sum256(body)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Authorization", "Signature "+base64.StdEncoding.EncodeToString(sig))
	h.Set(pc.HeaderCertificateURL, certURL)
	h.Set(pc.HeaderSignatureAlgorithm, "rsa-sha256")
	return h
}

// A delivery signed by a leaf under another root — served from a pinned host, with an intermediate the leaf
// names — is refused; the same body signed by the emulator's leaf is accepted by the same verifier.
func TestLeafUnderAnotherRootRefused(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var rogue chain
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cert/pcnotifications-dispatch.microsoft.com.cer":
			_, _ = w.Write(rogue.leaf.Raw)
		case "/pki/inter.cer":
			_, _ = w.Write(rogue.inter.Raw)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().String()
	rogue = newChain(t, srv.URL+"/pki/inter.cer")
	emuHost, _ := url.Parse(e.base)
	v := &pcwebhook.Verifier{TrustedHosts: []string{host, emuHost.Host}, IntermediateHosts: []string{host, emuHost.Host},
		Roots: e.emu.RootPool(), AllowInsecureHTTP: true, AllowedPathPrefix: "/_emulator/cert/"}
	body := []byte(`{"EventName":"referral-created","ResourceUri":"https://api.partnercenter.microsoft.com/engagements/v1/referrals/x","ResourceName":"referral","AuditUri":null,"ResourceChangeUtcDate":"2026-01-01T00:00:00Z"}`)
	err := v.Verify(context.Background(), sign(t, rogue.leafKey, body, srv.URL+"/cert/pcnotifications-dispatch.microsoft.com.cer"), body)
	if !errors.Is(err, pcwebhook.ErrCertificate) || pcwebhook.StatusCode(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "chain") {
		t.Fatalf("another root: %v", err)
	}
	d := genuine(t, e)
	if err := v.Verify(context.Background(), d.header, d.body); err != nil {
		t.Fatalf("the emulator's chain with the same verifier: %v", err)
	}
}

// Deliveries without a signature never download anything; forged ones cannot make the verifier download on
// demand: a failing URL is fetched once (the failure is cached) and all downloads together are rate-limited,
// answered 503 so Partner Center retries a genuine delivery later.
func TestCertificateFetchesCachedAndRateLimited(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().String()
	v := &pcwebhook.Verifier{TrustedHosts: []string{host}, AllowInsecureHTTP: true, FetchEvery: time.Hour, FetchBurst: 3}
	body := []byte(`{}`)
	forged := func(path string) http.Header {
		h := http.Header{}
		h.Set("Authorization", "Signature "+base64.StdEncoding.EncodeToString([]byte("forged")))
		h.Set(pc.HeaderCertificateURL, srv.URL+path)
		h.Set(pc.HeaderSignatureAlgorithm, "rsa-sha256")
		return h
	}
	unsigned := forged("/cert/a.cer")
	unsigned.Del("Authorization")
	for range 20 {
		if err := v.Verify(context.Background(), unsigned, body); !errors.Is(err, pcwebhook.ErrMissingSignature) {
			t.Fatal(err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("unsigned requests downloaded %d times", hits.Load())
	}
	for range 20 {
		if err := v.Verify(context.Background(), forged("/cert/a.cer"), body); !errors.Is(err, pcwebhook.ErrCertificate) {
			t.Fatal(err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("a failing URL was downloaded %d times, want once (failure cached)", hits.Load())
	}
	var limited int
	for i := range 20 {
		err := v.Verify(context.Background(), forged(fmt.Sprintf("/cert/n%d.cer", i)), body)
		if errors.Is(err, pcwebhook.ErrFetchLimited) {
			limited++
			if pcwebhook.StatusCode(err) != http.StatusServiceUnavailable {
				t.Errorf("limited status %d", pcwebhook.StatusCode(err))
			}
		}
	}
	if hits.Load() != 3 || limited != 18 {
		t.Errorf("downloads %d (want the burst of 3), limited %d", hits.Load(), limited)
	}
}
