package contracts

import "testing"

func TestConsumerFor(t *testing.T) {
	for _, c := range Consumers() {
		got, ok := ConsumerFor(c.Durable)
		if !ok || got.Durable != c.Durable || got.Stream != c.Stream || got.Stage != c.Stage {
			t.Errorf("ConsumerFor(%q) = %+v, %v; want %+v", c.Durable, got, ok, c)
		}
	}
	if got, ok := ConsumerFor("no-such-durable"); ok {
		t.Errorf("ConsumerFor of an unknown durable = %+v, true", got)
	}
}

func TestDurablesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Consumers() {
		if seen[c.Durable] {
			t.Errorf("durable %q named twice: ConsumerFor would find only the first", c.Durable)
		}
		seen[c.Durable] = true
	}
}
