package platform

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MaxPublishInFlight bounds the stream acks one PublishAll keeps outstanding: enough to fill many round
// trips, few enough that a stalled server is noticed within one batch.
const MaxPublishInFlight = 256

// asyncAckTimeout is how long an async publish waits for its ack before it fails, so no future outlives
// a lost reply (the bus's JetStream context is built with it).
const asyncAckTimeout = 30 * time.Second

// Outgoing is one event and the subject it is stored on.
type Outgoing struct {
	Subject string
	Event   Event
}

// PublishAll stores every event and returns once the stream acknowledged all of them: the events leave
// at once, with up to MaxPublishInFlight acks outstanding, instead of one round trip each. They are sent in
// order on the bus's one connection, so events on one subject are stored in the order given. duplicates
// counts those the server dropped as re-publishes of the same id inside the duplicate window (success).
//
// On an error some events may be stored and some not; the caller publishes them all again (the ids are
// deterministic, so the server drops the copies): an outbox, or the redelivery of the message being
// handled, does exactly that.
func (b *Bus) PublishAll(ctx context.Context, out []Outgoing) (duplicates int, err error) {
	if len(out) == 1 {
		// One round trip either way; the synchronous publish also retries while no stream answers.
		dup, err := b.Publish(ctx, out[0].Subject, out[0].Event)
		if dup {
			duplicates = 1
		}
		return duplicates, err
	}
	w := pubWindow{b: b}
	for _, o := range out {
		if err = w.add(ctx, o.Subject, o.Event); err != nil {
			break
		}
	}
	dups, werr := w.wait(ctx)
	if err == nil {
		err = werr
	}
	return dups, err
}

// pubWindow is a bounded run of async publishes waiting for their acks, oldest first.
type pubWindow struct {
	b       *Bus
	pending []pendingPub
	dups    int
}

// pendingPub is one async publish waiting for its ack.
type pendingPub struct {
	future jetstream.PubAckFuture
	// what names it in an error: "publish <id> (<type>) to <subject>".
	what string
	// done records the result (metrics, span).
	done func(duplicate bool, err error)
}

// add sends e to subject without waiting for its ack; with MaxPublishInFlight outstanding it first waits
// for the oldest.
func (w *pubWindow) add(ctx context.Context, subject string, e Event) error {
	span := injectTrace(ctx, subject, &e)
	done := func(dup bool, err error) {
		if err == nil && !dup {
			w.b.metrics.Published.WithLabelValues(w.b.stage, e.Type()).Inc()
		}
		if span != nil {
			endSpan(span, err)
		}
	}
	what := fmt.Sprintf("publish %s (%s) to %s", e.ID(), e.Type(), subject)
	m, err := EncodeMsg(subject, e)
	if err != nil {
		err = fmt.Errorf("%s: %w", what, err)
		done(false, err)
		return err
	}
	return w.addMsg(ctx, m, what, done)
}

// addMsg sends m without waiting for its ack (after the oldest, when MaxPublishInFlight are outstanding).
func (w *pubWindow) addMsg(ctx context.Context, m *nats.Msg, what string, done func(bool, error)) error {
	if len(w.pending) >= MaxPublishInFlight {
		if err := w.settleOldest(ctx); err != nil {
			done(false, err)
			return err
		}
	}
	f, err := w.b.js.PublishMsgAsync(m)
	if err != nil {
		err = fmt.Errorf("%s: %w", what, err)
		done(false, err)
		return err
	}
	w.pending = append(w.pending, pendingPub{future: f, what: what, done: done})
	return nil
}

// settleOldest waits for the oldest outstanding ack and records it.
func (w *pubWindow) settleOldest(ctx context.Context) error {
	p := w.pending[0]
	w.pending = w.pending[1:]
	dup, err := awaitAck(ctx, p.future)
	if err != nil {
		err = fmt.Errorf("%s: %w", p.what, err)
	}
	p.done(dup, err)
	if dup {
		w.dups++
	}
	return err
}

// wait waits for every outstanding ack and returns the first error, having waited for all of them.
func (w *pubWindow) wait(ctx context.Context) (int, error) {
	var first error
	for len(w.pending) > 0 {
		if err := w.settleOldest(ctx); err != nil && first == nil {
			first = err
		}
	}
	return w.dups, first
}

// awaitAck waits for one async publish's ack: whether the server dropped it as a duplicate, or why it failed.
func awaitAck(ctx context.Context, f jetstream.PubAckFuture) (duplicate bool, err error) {
	select {
	case ack := <-f.Ok():
		return ack.Duplicate, nil
	case err := <-f.Err():
		return false, err
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
}

// KVEntry is one key and the value to put there.
type KVEntry struct {
	Key   string
	Value []byte
}

// PutAll puts every entry into the KV bucket (a plain put, no compare-and-set: for marks whose value is
// the same whoever writes it) and returns once all are stored, with their acks in flight together as
// PublishAll's are.
func (b *Bus) PutAll(ctx context.Context, bucket string, entries []KVEntry) error {
	w := pubWindow{b: b}
	var err error
	for _, en := range entries {
		// A KV put is a publish on the bucket's subject for the key (ADR-8).
		m := nats.NewMsg("$KV." + bucket + "." + en.Key)
		m.Data = en.Value
		what := fmt.Sprintf("put %s in %s", en.Key, bucket)
		if err = w.addMsg(ctx, m, what, func(bool, error) {}); err != nil {
			break
		}
	}
	if _, werr := w.wait(ctx); err == nil {
		err = werr
	}
	return err
}

// deliveryPubs is the async publishes one handled message made (PublishAsync), waited for before it is
// acked. A handler may publish from several goroutines.
type deliveryPubs struct {
	mu sync.Mutex
	w  pubWindow
}

type deliveryPubsKey struct{}

// PublishAsync stores e on natsSubject without waiting for the stream's ack when called from a handler
// of Consume or ConsumeBatch: the message being handled is acknowledged only once every such ack has
// arrived, and retried (with back-off) when one failed, so a crash in between redelivers it and the
// server drops the copies its handling publishes again (deterministic ids). The handler's slot is free for
// the next message meanwhile. Outside a handler it is Publish. Use it only for an event the handler's
// next events need not see stored: the next message of the same record may start before the ack is in.
func (b *Bus) PublishAsync(ctx context.Context, natsSubject string, e Event) error {
	dp, _ := ctx.Value(deliveryPubsKey{}).(*deliveryPubs)
	if dp == nil || dp.w.b != b {
		_, err := b.Publish(ctx, natsSubject, e)
		return err
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.w.add(ctx, natsSubject, e)
}

// wait waits for the acks of every publish made so far.
func (dp *deliveryPubs) wait(ctx context.Context) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	_, err := dp.w.wait(ctx)
	return err
}
