package pcemu

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
)

// leafPrimes is how many primes the webhook signing key's modulus has.
//
// Why multi-prime: signing every webhook was most of the emulator's CPU per change (crypto/rsa took 1.1–1.5 ms
// per RSA-2048 signature here, 35–40 % of the whole fleet's CPU at 500 changes/s, so the emulator slowed the
// pipeline it measures). A modulus of eight 256-bit primes (RFC 8017 §3.2 multi-prime RSA) signed by the
// Chinese Remainder Theorem costs eight 256-bit exponentiations instead of two 1024-bit ones, about a quarter of
// the work. The public key (n of exactly 2048 bits, e = 65537), the certificate and every signature are the
// same RSA-2048 PKCS#1 v1.5 SHA-256 a two-prime key gives: no verifier can tell them apart (only n's factors
// differ), so receivers are checked exactly as strictly as against Partner Center. crypto/rsa signs with such a
// key but without CRT for more than two primes (3.8 ms), so multiPrimeKey does the private operation itself.
// The key is an emulator's, made fresh per process: math/big is not constant-time, which does not matter here.
const leafPrimes = 8

// multiPrimeKey signs with an RSA key of several primes by CRT and Garner's recombination (RFC 8017 §5.1.2,
// step 2b), everything but the per-signature exponentiations computed once.
type multiPrimeKey struct {
	pub    *rsa.PublicKey
	primes []*big.Int // r_1 … r_u
	exps   []*big.Int // d_i = d mod (r_i − 1)
	// coeffs[i] = (r_1 ⋯ r_i)⁻¹ mod r_(i+1) and prods[i] = r_1 ⋯ r_i (index 0 unused): the Garner coefficients
	// and the running products they step through.
	coeffs, prods []*big.Int
}

// generateMultiPrimeKey makes a 2048-bit RSA key of leafPrimes primes, e = 65537.
func generateMultiPrimeKey() (*multiPrimeKey, error) {
	// Deprecated for general use (crypto/rsa does not sign such keys fast); used on purpose, see leafPrimes.
	k, err := rsa.GenerateMultiPrimeKey(rand.Reader, leafPrimes, 2048)
	if err != nil {
		return nil, err
	}
	return newMultiPrimeKey(k)
}

// newMultiPrimeKey precomputes k's CRT exponents and Garner coefficients.
func newMultiPrimeKey(k *rsa.PrivateKey) (*multiPrimeKey, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	u := len(k.Primes)
	m := &multiPrimeKey{pub: &k.PublicKey, primes: k.Primes, exps: make([]*big.Int, u),
		coeffs: make([]*big.Int, u), prods: make([]*big.Int, u)}
	one := big.NewInt(1)
	prod := new(big.Int).Set(k.Primes[0])
	for i, p := range k.Primes {
		m.exps[i] = new(big.Int).Mod(k.D, new(big.Int).Sub(p, one))
		if i == 0 {
			continue
		}
		m.prods[i] = new(big.Int).Set(prod)
		m.coeffs[i] = new(big.Int).ModInverse(prod, p)
		if m.coeffs[i] == nil {
			return nil, errors.New("pcemu: the signing key's primes are not coprime")
		}
		prod.Mul(prod, p)
	}
	return m, nil
}

// sha256DigestInfo is the DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2, note 1).
var sha256DigestInfo = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}

// signPKCS1v15SHA256 is RSASSA-PKCS1-v1_5-SIGN (RFC 8017 §8.2.1) of a SHA-256 digest: the EMSA-PKCS1-v1_5
// encoding (0x00 0x01 FF… 0x00 DigestInfo), then s = EM^d mod n by CRT.
func (m *multiPrimeKey) signPKCS1v15SHA256(digest []byte) ([]byte, error) {
	size := m.pub.Size()
	if len(digest) != 32 {
		return nil, errors.New("pcemu: a SHA-256 digest has 32 bytes")
	}
	em := make([]byte, size)
	em[1] = 1
	tail := len(sha256DigestInfo) + len(digest)
	for i := 2; i < size-tail-1; i++ {
		em[i] = 0xff
	}
	copy(em[size-tail:], sha256DigestInfo)
	copy(em[size-len(digest):], digest)

	c := new(big.Int).SetBytes(em)
	s := new(big.Int).Exp(new(big.Int).Mod(c, m.primes[0]), m.exps[0], m.primes[0])
	var mi, h, t big.Int
	for i := 1; i < len(m.primes); i++ {
		p := m.primes[i]
		mi.Exp(mi.Mod(c, p), m.exps[i], p)
		// h = (m_i − s) · t_i mod r_i; s += R_i · h keeps s the residue mod r_1 ⋯ r_i.
		h.Sub(&mi, t.Mod(s, p))
		h.Mul(&h, m.coeffs[i])
		h.Mod(&h, p)
		s.Add(s, t.Mul(m.prods[i], &h))
	}
	return s.FillBytes(em), nil
}
