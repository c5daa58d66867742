package contracts

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite contracts/schema from the Go types")

// TestSchemasMatchTypes fails when an event payload's Go type and its committed JSON Schema disagree.
func TestSchemasMatchTypes(t *testing.T) {
	want := map[string]bool{}
	for typ, v := range EventSchemas() {
		file := filepath.Join("schema", typ+".json")
		want[filepath.Base(file)] = true
		b, err := json.MarshalIndent(JSONSchema(typ, v), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, '\n')
		if *update {
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		have, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%s: %v (run `go test ./contracts -update`)", file, err)
			continue
		}
		if !bytes.Equal(have, b) {
			t.Errorf("%s is out of date with the Go type of %s: a consumer may break. Review the change, then run `go test ./contracts -update`", file, typ)
		}
	}
	entries, err := os.ReadDir("schema")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !want[e.Name()] {
			t.Errorf("schema/%s names no event type any more", e.Name())
		}
	}
}

// TestSamplePayloadsFollowTheirSchema checks a decoded sample of each payload against the required
// properties its schema names, so the schemas describe what is really on the wire.
func TestSamplePayloadsFollowTheirSchema(t *testing.T) {
	for typ, v := range EventSchemas() {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		s := JSONSchema(typ, v)
		req, _ := s["required"].([]string)
		for _, name := range req {
			if _, ok := doc[name]; !ok {
				t.Errorf("%s: required property %q missing from the encoded zero value", typ, name)
			}
		}
	}
}
