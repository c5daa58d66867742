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
// with the same key (PKCS#1 v1.5 is deterministic), and crypto/rsa's verifier accepts it, for every prime count
// and body shape.
func TestMultiPrimeSignatureIsPKCS1v15(t *testing.T) {
	bodies := [][]byte{nil, {0}, []byte("{}"), bytes.Repeat([]byte{0xff}, 4096), []byte(strings.Repeat("é", 1000))}
	for range 20 {
		b := make([]byte, 1+len(bodies)*37)
		_, _ = rand.Read(b)
		bodies = append(bodies, b)
	}
	for _, primes := range []int{2, 3, leafPrimes} {
		k, m := testKey(t, primes)
		for i, body := range bodies {
			sum := sha256.Sum256(body)
			sig, err := m.signPKCS1v15SHA256(sum[:])
			if err != nil {
				t.Fatal(err)
			}
			if len(sig) != 256 {
				t.Fatalf("%d primes, body %d: signature of %d bytes, want 256", primes, i, len(sig))
			}
			if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
				t.Fatalf("%d primes, body %d: crypto/rsa refuses the signature: %v", primes, i, err)
			}
			want, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, sum[:])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sig, want) {
				t.Fatalf("%d primes, body %d: signature differs from crypto/rsa's", primes, i)
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

// BenchmarkWebhookSignature is one webhook signature: the emulator's multi-prime CRT beside what it cost before
// (crypto/rsa with a two-prime key) and crypto/rsa with the multi-prime key (no CRT beyond two primes).
func BenchmarkWebhookSignature(b *testing.B) {
	sum := sha256.Sum256([]byte(`{"EventName":"referral-updated"}`))
	two, _ := testKey(b, 2)
	multi, m := testKey(b, leafPrimes)
	b.Run("multi-prime-crt", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.signPKCS1v15SHA256(sum[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	for name, k := range map[string]*rsa.PrivateKey{"crypto-rsa-two-prime (before)": two, "crypto-rsa-multi-prime": multi} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// testKey is a fresh RSA-2048 key of the given number of primes, as crypto/rsa holds it and as the emulator signs with it.
func testKey(tb testing.TB, primes int) (*rsa.PrivateKey, *multiPrimeKey) {
	tb.Helper()
	k, err := rsa.GenerateMultiPrimeKey(rand.Reader, primes, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := newMultiPrimeKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return k, m
}
