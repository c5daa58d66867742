package platform

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestBehindIsTheLargerOfTheMarkAndThePendingCount: a handler learns the backlog its event is part of:
// its delivery's pending count once that reaches BehindFloor (the first deliveries of a stored backlog),
// else nothing (the backlog's last ones, a lone event), or the mark the event carries from upstream,
// whichever is larger; and the mark travels as a ce- header in binary mode.
func TestBehindIsTheLargerOfTheMarkAndThePendingCount(t *testing.T) {
	t.Parallel()
	const stored = BehindFloor + 6
	b, spec := backlog(t, stored, 0)
	var mu sync.Mutex
	seen := map[string]uint64{}
	h := func(ctx context.Context, e Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen[e.Subject()] = Behind(ctx)
		return nil
	}
	runConsume(t, b, spec, h, fastOpts()) // one handler at a time: deliveries in stream order
	expectLag(t, b, spec, 0, 0)
	_, marked := publishCommandBehind(t, b, "marked", 500)
	expectLag(t, b, spec, 0, 0)
	publishCommandBehind(t, b, "burst", 16) // a mark below BehindFloor, from a source reader's own count
	expectLag(t, b, spec, 0, 0)
	publishCommand(t, b, "lone")
	expectLag(t, b, spec, 0, 0)

	if m, err := EncodeMsg("s", marked); err != nil || m.Header.Get("ce-behind") != "500" {
		t.Fatalf("ce-behind header %q (%v), want 500", m.Header.Get("ce-behind"), err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range stored {
		want := uint64(0)
		if pending := uint64(stored - 1 - i); pending >= BehindFloor {
			want = pending
		}
		if got := seen[fmt.Sprint("a", i)]; got != want {
			t.Errorf("a%d: Behind %d, want %d", i, got, want)
		}
	}
	if seen["marked"] != 500 || seen["burst"] != 16 || seen["lone"] != 0 {
		t.Errorf("Behind of the marked events %d and %d (want 500, 16), of a lone one %d (want 0)", seen["marked"], seen["burst"], seen["lone"])
	}
}

func TestMarkBehind(t *testing.T) {
	t.Parallel()
	e, err := NewEvent("id", "t", "s", "", map[string]int{})
	if err != nil {
		t.Fatal(err)
	}
	MarkBehind(&e, 0)
	if _, ok := e.Extensions()[ExtBehind]; ok {
		t.Fatal("marked with no backlog")
	}
	MarkBehind(&e, 300)
	MarkBehind(&e, 100) // a smaller backlog does not lower the mark
	m, err := EncodeMsg("s", e)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeMsg("s", m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if BehindOf(back) != 300 || behindHeader(m.Header) != 300 {
		t.Fatalf("mark %d / header %d after a round trip, want 300", BehindOf(back), behindHeader(m.Header))
	}
}
