package contracts

import (
	"os"
	"strings"
	"testing"
)

// TestArchitectureDocNamesEverything keeps docs/architecture.md in step with the names cosell provisions:
// every stream, durable consumer, KV bucket, event type and stage must appear in it.
func TestArchitectureDocNamesEverything(t *testing.T) {
	b, err := os.ReadFile("../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var names []string
	for _, s := range Streams() {
		names = append(names, s.Name)
		names = append(names, s.Subjects...)
	}
	for _, c := range Consumers() {
		names = append(names, c.Durable)
	}
	names = append(names, Buckets()...)
	names = append(names, Stages()...)
	for _, n := range names {
		if !strings.Contains(doc, "`"+n+"`") && !strings.Contains(doc, n) {
			t.Errorf("docs/architecture.md does not mention %s", n)
		}
	}
}
