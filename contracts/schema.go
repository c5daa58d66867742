package contracts

import (
	"reflect"
	"strings"
	"time"
)

// EventSchemas maps every CloudEvent type to the Go type of its data. contracts/schema holds one JSON Schema
// per type generated from these types; a test fails when a type changes without its schema being
// regenerated (`go test ./contracts -update`), so a payload change that breaks a consumer shows in review.
func EventSchemas() map[string]any {
	return map[string]any{
		TypeReferralObserved:     ReferralObserved{},
		TypeReferralNotified:     ReferralNotified{},
		TypeOpportunityObserved:  OpportunityObserved{},
		TypeReferralRequested:    ReferralCommand{},
		TypeOpportunityRequested: OpportunityCommand{},
		TypeReferralWritten:      Outcome{},
		TypeReferralFailed:       Outcome{},
		TypeOpportunityWritten:   Outcome{},
		TypeOpportunityFailed:    Outcome{},
		TypeDecision:             Decision{},
		TypeDeadLetter:           DeadLetter{},
	}
}

// JSONSchema describes a Go type's JSON encoding (draft 2020-12 subset: types, properties, required,
// items, additionalProperties).
func JSONSchema(typeName string, v any) map[string]any {
	s := schemaOf(reflect.TypeOf(v), map[reflect.Type]bool{})
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["title"] = typeName
	return s
}

var timeType = reflect.TypeOf(time.Time{})

func schemaOf(t reflect.Type, seen map[reflect.Type]bool) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), seen)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), seen)}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		if seen[t] {
			return map[string]any{"type": "object"}
		}
		seen[t] = true
		defer delete(seen, t)
		props := map[string]any{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = schemaOf(f.Type, seen)
			if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
				required = append(required, name)
			}
		}
		s := map[string]any{"type": "object", "properties": props}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	return map[string]any{}
}
