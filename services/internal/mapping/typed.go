package mapping

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
)

// The mapping's paths name JSON properties (customerProfile.address.city), and its transforms take the
// values as encoding/json decodes them into an any: string, float64, bool, nil, []any, map[string]any.
// Reading a typed value at a path through a JSON round trip (marshal, unmarshal into a map) was most of
// the cost of reading a referral's mapped values; valueAt walks the typed value instead and gives, for
// each path, exactly what the round trip gives (TestValueAtEqualsJSONRoundTrip), without any text.

// valueAt is lookup(doc, path) for the document that json.Marshal(v) would be.
func valueAt(v any, path string) any {
	cur := reflect.ValueOf(v)
	for seg := range strings.SplitSeq(path, ".") {
		cur = deref(cur)
		if !cur.IsValid() {
			return nil
		}
		switch cur.Kind() {
		case reflect.Struct:
			f, ok := fieldsOf(cur.Type())[seg]
			if !ok {
				return nil
			}
			fv, err := cur.FieldByIndexErr(f.index)
			if err != nil || (f.omitEmpty && isEmptyValue(fv)) {
				return nil
			}
			cur = fv
		case reflect.Map:
			if cur.Type().Key().Kind() != reflect.String {
				return nil
			}
			cur = cur.MapIndex(reflect.ValueOf(seg).Convert(cur.Type().Key()))
			if !cur.IsValid() {
				return nil
			}
		default:
			return nil
		}
	}
	return generic(cur)
}

// generic is v as json.Unmarshal into an any would give it back after json.Marshal.
func generic(v reflect.Value) any {
	if v.IsValid() && (v.Type().Implements(marshaler) || v.Type().Implements(textMarshaler)) {
		return viaJSON(v) // its own encoding (a time, say)
	}
	v = deref(v)
	if !v.IsValid() {
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return float64(v.Uint())
	case reflect.Float32, reflect.Float64:
		return v.Float()
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return viaJSON(v) // bytes encode as base64 text
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = generic(v.Index(i))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		out := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			out[it.Key().String()] = generic(it.Value())
		}
		return out
	case reflect.Struct:
		out := map[string]any{}
		for name, f := range fieldsOf(v.Type()) {
			fv, err := v.FieldByIndexErr(f.index)
			if err != nil || (f.omitEmpty && isEmptyValue(fv)) {
				continue
			}
			out[name] = generic(fv)
		}
		return out
	}
	return nil
}

// viaJSON is the round trip itself, for the one value whose encoding is not its shape.
func viaJSON(v reflect.Value) any {
	var out any
	b, _ := json.Marshal(v.Interface())
	_ = json.Unmarshal(b, &out)
	return out
}

var (
	marshaler     = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// deref follows pointers and interfaces; a nil one is the invalid Value (JSON null).
func deref(v reflect.Value) reflect.Value {
	for v.IsValid() && (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) {
		if v.IsNil() {
			return reflect.Value{}
		}
		v = v.Elem()
	}
	return v
}

type jsonField struct {
	index     []int
	omitEmpty bool
}

var structFields sync.Map // reflect.Type → map[string]jsonField

// fieldsOf is a struct type's JSON properties as encoding/json names them (the tag's name, else the
// field's; "-" left out; an untagged embedded struct's fields promoted).
func fieldsOf(t reflect.Type) map[string]jsonField {
	if f, ok := structFields.Load(t); ok {
		return f.(map[string]jsonField)
	}
	out := map[string]jsonField{}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" {
			et := sf.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for n, f := range fieldsOf(et) {
					if _, taken := out[n]; !taken {
						out[n] = jsonField{index: append([]int{i}, f.index...), omitEmpty: f.omitEmpty}
					}
				}
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out[name] = jsonField{index: []int{i}, omitEmpty: strings.Contains(","+opts+",", ",omitempty,")}
	}
	structFields.Store(t, out)
	return out
}

// isEmptyValue is encoding/json's omitempty test.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Interface, reflect.Pointer:
		return v.IsNil()
	}
	return false
}
