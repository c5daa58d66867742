package platform

import (
	"context"
	"math"
	"strconv"

	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
)

// ExtBehind is the CloudEvent extension (header ce-behind in binary mode) that says an event was made
// behind a backlog: its value is how many records were waiting behind the one it came from, at the stage
// that read it (a delivery's pending count, from BehindFloor up) or anywhere upstream of it, whichever was
// larger; a source reader may also mark a burst it can tell is one (pc-ingest: many new referrals at
// once). Live traffic carries nothing. It is a hint for batching (sf-writer waits to fill a batch only
// behind a backlog) and never changes a decision: an event's id, data and meaning are the same with or
// without it, so a replay or a re-publish decides as the first handling did.
const ExtBehind = "behind"

// BehindFloor is the least pending count that marks an event: far above what a stage keeping up has
// pending between two fetches (a handful), and reached only when records wait for the stage: an outage
// or a stage slower than what arrives.
const BehindFloor = 64

type behindKey struct{}

// withBehind gives a handler's context its delivery's backlog: the larger of the event's own mark and
// the records pending behind its delivery when they reach BehindFloor (nothing when neither is there).
func withBehind(ctx context.Context, e Event, pending uint64) context.Context {
	n := BehindOf(e)
	if pending >= BehindFloor {
		n = max(n, pending)
	}
	if n == 0 {
		return ctx
	}
	return context.WithValue(ctx, behindKey{}, n)
}

// Behind is the backlog the event a handler's ctx is for was part of (0 when none, or outside a handler of
// Consume): what a handler carries onto the events it publishes with MarkBehind.
func Behind(ctx context.Context) uint64 {
	n, _ := ctx.Value(behindKey{}).(uint64)
	return n
}

// MarkBehind sets e's ExtBehind to n when e carries no larger mark (n 0: nothing). n is a backlog already
// told from live traffic (Behind, or a source reader's own count past its floor).
func MarkBehind(e *Event, n uint64) {
	if n == 0 || n <= BehindOf(*e) {
		return
	}
	e.SetExtension(ExtBehind, int32(min(n, math.MaxInt32)))
}

// BehindOf is e's ExtBehind mark (0 when it has none or an unreadable one).
func BehindOf(e Event) uint64 {
	v, ok := e.Extensions()[ExtBehind]
	if !ok {
		return 0
	}
	n, err := types.ToInteger(v)
	if err != nil || n < 0 {
		return 0
	}
	return uint64(n)
}

// behindHeader is the ExtBehind mark of a message not decoded yet (0 when none): what a batch's fetch
// looks at before its events are decoded.
func behindHeader(h nats.Header) uint64 {
	v := h.Get(headerPrefix + ExtBehind)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}
