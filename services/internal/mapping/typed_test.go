package mapping

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/cosell-dev/cosell/contracts/partnercenter"
)

// lookup reads a dotted path in a JSON document: the oracle valueAt is held to.
func lookup(doc map[string]any, path string) any {
	var cur any = doc
	for seg := range strings.SplitSeq(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[seg]
	}
	return cur
}

// TestValueAtEqualsJSONRoundTrip holds the typed reading of a referral to the JSON round trip it
// replaced (json.Marshal, json.Unmarshal into a map, a walk down the path): for random referrals (every
// field set or left zero at random, pointers nil or not, slices nil, empty or filled), every path the
// referral's type has (and the default mapping's, and some it does not have) reads the same value, and the
// whole referral reads as the same document.
func TestValueAtEqualsJSONRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 16))
	paths := jsonPaths(reflect.TypeFor[partnercenter.Referral](), "", 4)
	m, err := Load(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Fields {
		if f.PC != "" {
			paths = append(paths, f.PC)
		}
	}
	paths = append(paths, "nope", "details.nope", "name.deeper", "team.0", "customerProfile.address.city.x")
	for i := range 500 {
		var r partnercenter.Referral
		fill(rng, reflect.ValueOf(&r).Elem(), 0)
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		if got := generic(reflect.ValueOf(r)); !reflect.DeepEqual(got, any(doc)) {
			t.Fatalf("referral %d: the document differs:\n got %#v\nwant %#v", i, got, doc)
		}
		for _, p := range paths {
			if got, want := valueAt(&r, p), lookup(doc, p); !reflect.DeepEqual(got, want) {
				t.Fatalf("referral %d, %s: got %#v, want %#v\n%s", i, p, got, want, b)
			}
		}
		if got, want := m.FromReferral(r), m.fromReferralByJSON(doc, r); !reflect.DeepEqual(got, want) {
			t.Fatalf("referral %d: mapped values differ:\n got %v\nwant %v", i, got, want)
		}
	}
}

// fromReferralByJSON is FromReferral as it was: each path looked up in the referral's JSON document.
func (m Mapping) fromReferralByJSON(doc map[string]any, r partnercenter.Referral) Values {
	return m.fromReferral(r, func(path string) any { return lookup(doc, path) })
}

// jsonPaths lists every dotted property path of a type, down to depth.
func jsonPaths(t reflect.Type, prefix string, depth int) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			return nil // a list is a leaf: paths do not index into it
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || depth == 0 {
		return nil
	}
	var out []string
	for name := range fieldsOf(t) {
		p := prefix + name
		out = append(out, p)
		f, _ := t.FieldByName(fieldName(t, name))
		out = append(out, jsonPaths(f.Type, p+".", depth-1)...)
	}
	return out
}

func fieldName(t reflect.Type, jsonName string) string {
	return t.Field(fieldsOf(t)[jsonName].index[0]).Name
}

// fill sets v to random values: zero or not, nil or not.
func fill(rng *rand.Rand, v reflect.Value, depth int) {
	if rng.IntN(4) == 0 || depth > 5 {
		return // left zero
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString([]string{"", "x", "Active", "2027-01-01T00:00:00Z", "ünï"}[rng.IntN(5)])
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(rng.IntN(100)))
	case reflect.Float64:
		v.SetFloat([]float64{0, 1, 1234.5, 1e21, 0.1}[rng.IntN(5)])
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(rng, p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		n := rng.IntN(3)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fill(rng, s.Index(i), depth+1)
		}
		v.Set(s)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(rng, v.Field(i), depth+1)
			}
		}
	case reflect.Interface:
		v.Set(reflect.ValueOf(fmt.Sprint(rng.IntN(9))))
	}
}

// BenchmarkFromReferral reads a full referral's mapped values (the typed walk; the round trip it replaced
// is BenchmarkFromReferralByJSON).
func BenchmarkFromReferral(b *testing.B) {
	m, r := benchReferral(b)
	for b.Loop() {
		_ = m.FromReferral(r)
	}
}

func BenchmarkFromReferralByJSON(b *testing.B) {
	m, r := benchReferral(b)
	for b.Loop() {
		var doc map[string]any
		bs, _ := json.Marshal(r)
		_ = json.Unmarshal(bs, &doc)
		_ = m.fromReferralByJSON(doc, r)
	}
}

func benchReferral(b *testing.B) (Mapping, partnercenter.Referral) {
	m, err := Load(Config{})
	if err != nil {
		b.Fatal(err)
	}
	var r partnercenter.Referral
	rng := rand.New(rand.NewPCG(2, 16))
	for r.CustomerProfile == nil || r.Details == nil || len(r.Team) == 0 {
		r = partnercenter.Referral{}
		fill(rng, reflect.ValueOf(&r).Elem(), -10)
	}
	return m, r
}
