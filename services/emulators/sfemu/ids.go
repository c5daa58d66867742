package sfemu

import (
	"strings"
)

const (
	base62         = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	idSuffixDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
)

// idSuffix computes the 3-character case-safe suffix of a 15-character id: one character per 5-character
// block, whose bit i is set when character i of the block is an upper-case letter.
func idSuffix(id15 string) string {
	var b strings.Builder
	for block := 0; block < 3; block++ {
		n := 0
		for i := 0; i < 5; i++ {
			c := id15[block*5+i]
			if c >= 'A' && c <= 'Z' {
				n |= 1 << i
			}
		}
		b.WriteByte(idSuffixDigits[n])
	}
	return b.String()
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// NormalizeID turns a 15-character (case-sensitive) or 18-character (case-insensitive) Salesforce id into
// its canonical 18-character form; ok is false when s is not a well-formed id.
func NormalizeID(s string) (id string, ok bool) {
	switch len(s) {
	case 15:
		for i := 0; i < 15; i++ {
			if !isAlnum(s[i]) {
				return "", false
			}
		}
		return s + idSuffix(s), true
	case 18:
		for i := 0; i < 18; i++ {
			if !isAlnum(s[i]) {
				return "", false
			}
		}
		// The suffix tells which of the first 15 characters are upper case; restore them, so an id whose
		// case was lost (an 18-character id is case-insensitive) is still found.
		b := []byte(s[:15])
		for block := 0; block < 3; block++ {
			n := strings.IndexByte(idSuffixDigits, upper(s[15+block]))
			if n < 0 {
				return "", false
			}
			for i := 0; i < 5; i++ {
				c := b[block*5+i]
				isLetter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
				if n&(1<<i) != 0 {
					if !isLetter {
						return "", false
					}
					b[block*5+i] = upper(c)
				} else if isLetter {
					b[block*5+i] = lower(c)
				}
			}
		}
		return string(b) + idSuffix(string(b)), true
	}
	return "", false
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c - 'A' + 'a'
	}
	return c
}

// newID builds an 18-character id from a 3-character key prefix and a sequence number; ids of one emulator
// sort in creation order, as Salesforce's roughly do.
func newID(prefix string, seq uint64) string {
	var digits [10]byte
	for i := 9; i >= 0; i-- {
		digits[i] = base62[seq%62]
		seq /= 62
	}
	id15 := prefix + "5g" + string(digits[:])
	return id15 + idSuffix(id15)
}
