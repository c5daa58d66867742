package sfemu

import "testing"

func TestNormalizeID(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"15 digits", "006000000000000", "006000000000000AAA", true},
		{"15 upper block", "ABCDEabcde00000", "ABCDEabcde00000" + "5AA", true},
		{"15 mixed bits", "aBcDe0000000000", "aBcDe0000000000" + "KAA", true},
		{"18 canonical", "aBcDe0000000000KAA", "aBcDe0000000000KAA", true},
		{"18 lower-cased restores case", "abcde0000000000kaa", "aBcDe0000000000KAA", true},
		{"18 upper-cased restores case", "ABCDE0000000000KAA", "aBcDe0000000000KAA", true},
		{"18 suffix says upper on a digit", "006000000000000BAA", "", false},
		{"too short", "006abc", "", false},
		{"16 chars", "0060000000000000", "", false},
		{"non alphanumeric", "00600000000000-", "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NormalizeID(tt.in)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("NormalizeID(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNewIDIsValidAndOrdered(t *testing.T) {
	prev := ""
	for _, seq := range []uint64{1, 2, 61, 62, 63, 1 << 40} {
		id := newID("006", seq)
		if len(id) != 18 || id[:3] != "006" {
			t.Fatalf("newID(%d) = %q", seq, id)
		}
		norm, ok := NormalizeID(id)
		if !ok || norm != id {
			t.Fatalf("newID(%d) = %q does not normalize to itself (%q, %v)", seq, id, norm, ok)
		}
		if short, _ := NormalizeID(id[:15]); short != id {
			t.Fatalf("15-char form of %q normalizes to %q", id, short)
		}
		if id[:15] <= prev {
			t.Fatalf("ids not increasing: %q after %q", id, prev)
		}
		prev = id[:15]
	}
}
