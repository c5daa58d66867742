package pcemu

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"math/big"
	"math/bits"
)

// leafPrimes is how many primes the webhook signing key's modulus has: 32 primes of 64 bits each.
//
// Why multi-prime: signing every webhook was most of the emulator's CPU per change (crypto/rsa took 1.1–1.5 ms
// per RSA-2048 signature here, 35–40 % of the whole fleet's CPU at 500 changes/s, so the emulator slowed the
// pipeline it measures; eight 256-bit primes by math/big still took ~0.3 ms quiet, ~0.55 ms loaded, half the
// emulator's CPU per change). A modulus of 32 word-sized primes (RFC 8017 §3.2 multi-prime RSA) signed by the
// Chinese Remainder Theorem costs 32 exponentiations in single machine words (Montgomery multiplication, no
// math/big), a few tens of microseconds. The public key (n of exactly 2048 bits, e = 65537), the certificate
// and every signature are the same RSA-2048 PKCS#1 v1.5 SHA-256 a two-prime key gives: no verifier can tell
// them apart (only n's factors differ), so receivers are checked exactly as strictly as against Partner
// Center. Such a key is trivially factored: it is an emulator's, made fresh per process, guarding nothing.
const leafPrimes = 32

// leafE is the public exponent, as in Partner Center's certificate (and nearly every RSA certificate).
const leafE = 65537

// multiPrimeKey signs with an RSA key of leafPrimes 64-bit primes by CRT and Garner's mixed-radix
// recombination (RFC 8017 §5.1.2, step 2b), everything but the per-signature exponentiations computed once.
type multiPrimeKey struct {
	pub    *rsa.PublicKey
	primes []uint64 // r_1 … r_u
	exps   []uint64 // d_i = e⁻¹ mod (r_i − 1), which is d mod (r_i − 1) for d = e⁻¹ mod λ(n)
	// coeffs[i] = (r_1 ⋯ r_i)⁻¹ mod r_(i+1) (index 0 unused), the Garner coefficients.
	coeffs []uint64
	// pinv[i] = −r_i⁻¹ mod 2⁶⁴ and r2[i] = 2¹²⁸ mod r_i: Montgomery multiplication modulo r_i.
	pinv, r2 []uint64
}

// generateMultiPrimeKey makes a 2048-bit RSA key of leafPrimes 64-bit primes, e = 65537.
func generateMultiPrimeKey() (*multiPrimeKey, error) {
	for {
		primes, err := wordPrimes(leafPrimes)
		if err != nil {
			return nil, err
		}
		n := new(big.Int).SetInt64(1)
		for _, p := range primes {
			n.Mul(n, new(big.Int).SetUint64(p))
		}
		if n.BitLen() == 2048 {
			return newMultiPrimeKey(primes)
		}
	}
}

// wordPrimes draws u distinct primes of 64 bits whose top six bits are set (so u = 32 of them multiply to
// 2047 or 2048 bits) and for which e = 65537 is invertible mod r − 1 (r mod e ≠ 1, e being prime).
func wordPrimes(u int) ([]uint64, error) {
	var b [8]byte
	out := make([]uint64, 0, u)
	seen := map[uint64]bool{}
	for len(out) < u {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		p := binary.BigEndian.Uint64(b[:]) | 0xfc00000000000000 | 1
		// ProbablyPrime is exact below 2⁶⁴ (Baillie–PSW has no counterexample there; math/big documents it).
		if seen[p] || p%leafE == 1 || !new(big.Int).SetUint64(p).ProbablyPrime(0) {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}

// newMultiPrimeKey precomputes the CRT exponents, Garner coefficients and Montgomery constants of the key
// whose modulus is the product of primes.
func newMultiPrimeKey(primes []uint64) (*multiPrimeKey, error) {
	u := len(primes)
	m := &multiPrimeKey{primes: primes, exps: make([]uint64, u), coeffs: make([]uint64, u),
		pinv: make([]uint64, u), r2: make([]uint64, u)}
	e := big.NewInt(leafE)
	n := big.NewInt(1)
	r2 := new(big.Int).Lsh(big.NewInt(1), 128)
	for i, p := range primes {
		bp := new(big.Int).SetUint64(p)
		d := new(big.Int).ModInverse(e, new(big.Int).SetUint64(p-1))
		if d == nil {
			return nil, errors.New("pcemu: e is not invertible modulo a prime of the signing key")
		}
		m.exps[i] = d.Uint64()
		if i > 0 {
			c := new(big.Int).ModInverse(new(big.Int).Mod(n, bp), bp)
			if c == nil {
				return nil, errors.New("pcemu: the signing key's primes are not distinct")
			}
			m.coeffs[i] = c.Uint64()
		}
		n.Mul(n, bp)
		inv := p // Newton's iteration doubles the correct low bits: 3 (p·p ≡ 1 mod 8) → 96 after five steps
		for range 5 {
			inv *= 2 - p*inv
		}
		m.pinv[i] = -inv
		m.r2[i] = new(big.Int).Mod(r2, bp).Uint64()
	}
	m.pub = &rsa.PublicKey{N: n, E: leafE}
	return m, nil
}

// privateKey is the key as crypto/rsa holds it (d = e⁻¹ mod λ(n)), for checking signatures against crypto/rsa's.
func (m *multiPrimeKey) privateKey() *rsa.PrivateKey {
	lambda := big.NewInt(1)
	k := &rsa.PrivateKey{PublicKey: *m.pub}
	for _, p := range m.primes {
		bp := new(big.Int).SetUint64(p)
		k.Primes = append(k.Primes, bp)
		pm1 := new(big.Int).Sub(bp, big.NewInt(1))
		g := new(big.Int).GCD(nil, nil, lambda, pm1)
		lambda.Mul(lambda, pm1.Div(pm1, g))
	}
	k.D = new(big.Int).ModInverse(big.NewInt(leafE), lambda)
	return k
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
	if size%8 != 0 || size/8 > 64 {
		return nil, errors.New("pcemu: the signing key's modulus is not a whole number of words")
	}
	em := make([]byte, size)
	em[1] = 1
	tail := len(sha256DigestInfo) + len(digest)
	for i := 2; i < size-tail-1; i++ {
		em[i] = 0xff
	}
	copy(em[size-tail:], sha256DigestInfo)
	copy(em[size-len(digest):], digest)

	// c = EM as big-endian 64-bit words; v_i are s's mixed-radix digits: s = v_1 + r_1(v_2 + r_2(v_3 + …)).
	var cw, v [64]uint64
	words := size / 8
	for i := range words {
		cw[i] = binary.BigEndian.Uint64(em[8*i:])
	}
	for i, p := range m.primes {
		var c uint64
		for _, w := range cw[:words] {
			_, c = bits.Div64(c, w, p) // c < p, so the quotient fits
		}
		mi := m.powMod(i, c)
		if i == 0 {
			v[0] = mi
			continue
		}
		// t = v_1 + r_1(v_2 + … + r_(i−1) v_i) mod r_(i+1), by Horner; then v_(i+1) = (m_(i+1) − t)·coeffs mod r_(i+1).
		t := v[i-1] % p
		for j := i - 2; j >= 0; j-- {
			t = addMod(mulMod(t, m.primes[j]%p, p), v[j]%p, p)
		}
		v[i] = mulMod(subMod(mi, t, p), m.coeffs[i], p)
	}
	// s by Horner from the top digit, in little-endian words; s < r_1 ⋯ r_u = n.
	var s [65]uint64
	s[0] = v[len(m.primes)-1]
	n := 1
	for j := len(m.primes) - 2; j >= 0; j-- {
		carry := v[j]
		for k := range n {
			hi, lo := bits.Mul64(s[k], m.primes[j])
			var c uint64
			s[k], c = bits.Add64(lo, carry, 0)
			carry = hi + c
		}
		if carry != 0 {
			s[n] = carry
			n++
		}
	}
	for k := range words {
		binary.BigEndian.PutUint64(em[size-8*(k+1):], s[k])
	}
	return em, nil
}

// powMod is b^(exps[i]) mod primes[i] by Montgomery multiplication (b < primes[i]).
func (m *multiPrimeKey) powMod(i int, b uint64) uint64 {
	p, pinv, r2 := m.primes[i], m.pinv[i], m.r2[i]
	x := montMul(1, r2, p, pinv) // 1 in Montgomery form (R mod p)
	bm := montMul(b, r2, p, pinv)
	exp := m.exps[i]
	for k := bits.Len64(exp) - 1; k >= 0; k-- {
		x = montMul(x, x, p, pinv)
		if exp>>k&1 == 1 {
			x = montMul(x, bm, p, pinv)
		}
	}
	return montMul(x, 1, p, pinv)
}

// montMul is a·b·2⁻⁶⁴ mod p for a, b < p, p odd, pinv = −p⁻¹ mod 2⁶⁴ (Montgomery's REDC).
func montMul(a, b, p, pinv uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	q := lo * pinv
	qh, ql := bits.Mul64(q, p)
	_, c := bits.Add64(lo, ql, 0) // the low word cancels by the choice of q
	t, c := bits.Add64(hi, qh, c)
	if c != 0 || t >= p {
		t -= p
	}
	return t
}

// mulMod is a·b mod p for a, b < p.
func mulMod(a, b, p uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	_, r := bits.Div64(hi, lo, p)
	return r
}

// addMod is a + b mod p for a, b < p.
func addMod(a, b, p uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 || s >= p {
		s -= p
	}
	return s
}

// subMod is a − b mod p for a, b < p.
func subMod(a, b, p uint64) uint64 {
	d, borrow := bits.Sub64(a, b, 0)
	if borrow != 0 {
		d += p
	}
	return d
}
