// Package watermark is the ingest checkpoint both pollers keep in the checkpoints bucket: the newest source
// change already published, moved forward only after the events are durable, always with compare-and-set.
package watermark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Watermark is one poller's checkpoint.
type Watermark struct {
	// At is the newest change already published; zero before the first poll (and without a backfill date).
	At  time.Time
	kv  jetstream.KeyValue
	key string
	rev uint64
}

type record struct {
	Watermark time.Time `json:"watermark"`
}

// Load reads the watermark under key. On a first start (no key yet) it starts at since, an RFC 3339 time
// from the variable named sinceVar (empty = the beginning).
func Load(ctx context.Context, kv jetstream.KeyValue, key, since, sinceVar string) (*Watermark, error) {
	w := &Watermark{kv: kv, key: key}
	e, err := kv.Get(ctx, key)
	switch {
	case err == nil:
		var r record
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", key, err)
		}
		w.At, w.rev = r.Watermark, e.Revision()
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, fmt.Errorf("read checkpoint %s: %w", key, err)
	case since != "":
		t, err := time.Parse(time.RFC3339, since)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not an RFC 3339 time: %w", sinceVar, since, err)
		}
		w.At = t
	}
	return w, nil
}

// From is where the next read starts: the watermark less the overlap (zero when there is no watermark).
func (w *Watermark) From(overlap time.Duration) time.Time {
	if w.At.IsZero() {
		return time.Time{}
	}
	return w.At.Add(-overlap)
}

// Move stores to as the new watermark when it is newer. A concurrent move by another poller makes it fail
// (compare-and-set), and the caller polls again from what is stored.
func (w *Watermark) Move(ctx context.Context, to time.Time) error {
	if !to.After(w.At) {
		return nil
	}
	b, _ := json.Marshal(record{Watermark: to})
	var rev uint64
	var err error
	if w.rev == 0 {
		rev, err = w.kv.Create(ctx, w.key, b)
	} else {
		rev, err = w.kv.Update(ctx, w.key, b, w.rev)
	}
	if err != nil {
		return fmt.Errorf("move watermark %s to %s: %w", w.key, to.Format(time.RFC3339Nano), err)
	}
	w.At, w.rev = to, rev
	return nil
}
