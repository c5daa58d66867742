package pcemu

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// The multi-prime CRT signature is exactly RSASSA-PKCS1-v1_5 with SHA-256: byte for byte what crypto/rsa makes
// with the same key (PKCS#1 v1.5 is deterministic), and crypto/rsa's verifier accepts it, for fresh keys and
// every body shape.
func TestMultiPrimeSignatureIsPKCS1v15(t *testing.T) {
	bodies := [][]byte{nil, {0}, []byte("{}"), bytes.Repeat([]byte{0xff}, 4096), []byte(strings.Repeat("é", 1000))}
	for range 20 {
		b := make([]byte, 1+len(bodies)*37)
		_, _ = rand.Read(b)
		bodies = append(bodies, b)
	}
	for key := range 3 {
		k, m := testKey(t)
		if err := k.Validate(); err != nil {
			t.Fatalf("key %d: crypto/rsa finds the key invalid: %v", key, err)
		}
		for i, body := range bodies {
			sum := sha256.Sum256(body)
			sig, err := m.signPKCS1v15SHA256(sum[:])
			if err != nil {
				t.Fatal(err)
			}
			if len(sig) != 256 {
				t.Fatalf("key %d, body %d: signature of %d bytes, want 256", key, i, len(sig))
			}
			if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
				t.Fatalf("key %d, body %d: crypto/rsa refuses the signature: %v", key, i, err)
			}
			want, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, sum[:])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sig, want) {
				t.Fatalf("key %d, body %d: signature differs from crypto/rsa's", key, i)
			}
		}
	}
}

// The emulator's leaf key looks like any RSA-2048 key from outside (n of exactly 2048 bits, e = 65537), and the
// signatures it sends verify against the certificate's public key.
func TestWebhookSigningKeyIsRSA2048(t *testing.T) {
	e, err := New(Options{BaseURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	pub, ok := e.sign.leafCert().PublicKey.(*rsa.PublicKey)
	if !ok {
		t.Fatalf("leaf key is %T, want RSA", e.sign.leafCert().PublicKey)
	}
	if pub.N.BitLen() != 2048 || pub.E != 65537 {
		t.Fatalf("leaf key: %d-bit modulus, e = %d; want 2048 and 65537", pub.N.BitLen(), pub.E)
	}
	if len(e.sign.leafKey.primes) != leafPrimes {
		t.Fatalf("leaf key has %d primes, want %d", len(e.sign.leafKey.primes), leafPrimes)
	}
	body := []byte(`{"EventName":"referral-updated","ResourceUri":"http://127.0.0.1:1/engagements/v1/referrals/x"}`)
	h, err := e.Sign(body)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h.Get("Authorization"), "Signature "))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("the certificate's key refuses the emulator's signature: %v", err)
	}
	if h.Get(pc.HeaderSignatureAlgorithm) != "rsa-sha256" || h.Get(pc.HeaderCertificateURL) != e.CertURL() {
		t.Fatalf("headers %v", h)
	}
}

// BenchmarkWebhookSignature is one webhook signature: the emulator's 32-prime CRT in machine words beside
// what it cost before (eight 256-bit primes by math/big: the same key shape as crypto/rsa's
// GenerateMultiPrimeKey(8), signed with math/big's CRT) and crypto/rsa with a two-prime key.
func BenchmarkWebhookSignature(b *testing.B) {
	sum := sha256.Sum256([]byte(`{"EventName":"referral-updated"}`))
	_, m := testKey(b)
	b.Run("32-primes-crt-words", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.signPKCS1v15SHA256(sum[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	two, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("crypto-rsa-two-prime", func(b *testing.B) {
		for b.Loop() {
			if _, err := rsa.SignPKCS1v15(rand.Reader, two, crypto.SHA256, sum[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// testKey is a fresh signing key as the emulator makes it, and as crypto/rsa holds it.
func testKey(tb testing.TB) (*rsa.PrivateKey, *multiPrimeKey) {
	tb.Helper()
	m, err := generateMultiPrimeKey()
	if err != nil {
		tb.Fatal(err)
	}
	return m.privateKey(), m
}
