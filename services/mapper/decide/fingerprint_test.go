package decide

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// jsonSamples are values of every kind the mapping holds, with the strings and numbers encoding/json
// writes in its own ways.
var jsonSamples = []any{
	nil, true, false, "", "plain", `quote " backslash \ slash /`, "<b>&amp;</b>", "tab\t nl\n cr\r bs\b ff\f",
	"\x00\x01\x1f\x7f", "é ü 漢字 🙂", "line\u2028sep\u2029", "bad \xff\xfe utf-8 \xc3", "\xed\xa0\x80 surrogate",
	0.0, math.Copysign(0, -1), 1.0, -1.5, 42.0, 1200.25, 123456789.123456789, 1e20, 1e21, 1.5e21, 1e-6, 9.99e-7,
	1e-7, 5e-324, math.MaxFloat64, -math.MaxFloat64, 0.1 + 0.2, 1e100, 12345678901234567890.0,
	[]any{}, []any{"a", 1.0, nil, []any{true}}, map[string]any{}, map[string]any{"z": 1.0, "a": "x", "<k>": []any{"v"}, "é": nil},
}

// TestAppendJSONIsEncodingJSON: appendJSON writes what encoding/json writes, byte for byte, for every kind
// of value (a fingerprint hashes these bytes, and links keep fingerprints from earlier versions), and
// leaves to encoding/json what it does not write (NaN, infinities, other types).
func TestAppendJSONIsEncodingJSON(t *testing.T) {
	check := func(v any) {
		t.Helper()
		want, err := json.Marshal(v)
		got, ok := appendJSON(nil, v)
		if err != nil {
			if ok {
				t.Errorf("%#v: encoding/json refuses it (%v), appendJSON wrote %s", v, err, got)
			}
			return
		}
		if !ok {
			t.Errorf("%#v: appendJSON declined what encoding/json writes as %s", v, want)
			return
		}
		if string(got) != string(want) {
			t.Errorf("%#v:\n got %s\nwant %s", v, got, want)
		}
	}
	for _, v := range jsonSamples {
		check(v)
	}
	check(map[string]any{"all": jsonSamples})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		check(randomValue(rng, 3))
	}
	for _, v := range []any{math.NaN(), math.Inf(1), []any{1.0, math.Inf(-1)}, map[string]any{"n": math.NaN()}, int(1), []string{"a"}} {
		if _, ok := appendJSON(nil, v); ok {
			t.Errorf("%#v: appendJSON must leave it to encoding/json", v)
		}
	}
}

// randomValue is a random value of the mapping's kinds, nested up to depth.
func randomValue(rng *rand.Rand, depth int) any {
	kinds := 4
	if depth > 0 {
		kinds = 6
	}
	switch rng.IntN(kinds) {
	case 0:
		return nil
	case 1:
		return rng.IntN(2) == 0
	case 2:
		return randomString(rng)
	case 3:
		return math.Float64frombits(rng.Uint64()) // every exponent, and now and then a NaN or infinity
	case 4:
		a := make([]any, rng.IntN(4))
		for i := range a {
			a[i] = randomValue(rng, depth-1)
		}
		return a
	default:
		m := map[string]any{}
		for range rng.IntN(4) {
			m[randomString(rng)] = randomValue(rng, depth-1)
		}
		return m
	}
}

// randomString is a short string of any bytes (valid UTF-8 or not), HTML and control characters among them.
func randomString(rng *rand.Rand) string {
	b := make([]byte, rng.IntN(12))
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return string(b)
}

// FuzzAppendJSON holds appendJSON to encoding/json for any string and number.
func FuzzAppendJSON(f *testing.F) {
	f.Add("<a href=\"x\">&</a>\u2028", 1e21)
	f.Add("\xff", 1e-7)
	f.Fuzz(func(t *testing.T, s string, x float64) {
		v := map[string]any{s: []any{s, x}}
		want, err := json.Marshal(v)
		got, ok := appendJSON(nil, v)
		if err != nil || !ok {
			if ok == (err == nil) {
				t.Fatalf("%q %v: encoding/json err %v, appendJSON ok %v", s, x, err, ok)
			}
			return
		}
		if string(got) != string(want) {
			t.Fatalf("%q %v:\n got %s\nwant %s", s, x, got, want)
		}
	})
}
