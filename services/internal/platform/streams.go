package platform

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
)

// The bus's stream and consumer operations beyond publishing and consuming: what the auditor, the CLI and
// the tests need to look at and operate the streams, as methods rather than raw JetStream access, so the
// connection stays the bus's own. Errors wrap JetStream's (errors.Is(err, jetstream.ErrMsgNotFound), ...).

// StreamInfo reads a stream's configuration and state; opts are JetStream's (e.g.
// jetstream.WithSubjectFilter to count messages per subject).
func (b *Bus) StreamInfo(ctx context.Context, stream string, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	st, err := b.stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	return info, nil
}

// ConsumerInfo reads the configuration and state (backlog, redeliveries, waiting pulls) of the durable
// consumer named durable.
func (b *Bus) ConsumerInfo(ctx context.Context, durable string) (*jetstream.ConsumerInfo, error) {
	spec, ok := contracts.ConsumerFor(durable)
	if !ok {
		return nil, fmt.Errorf("consumer %q: %w", durable, ErrUnknownConsumer)
	}
	// Looking the consumer up reads its info: one round trip, not two.
	cons, err := b.js.Consumer(ctx, spec.Stream, spec.Durable)
	if err != nil {
		return nil, fmt.Errorf("consumer %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	return cons.CachedInfo(), nil
}

// Lag is the backlog of the durable consumer named durable: messages not yet delivered and messages
// delivered but not yet acked (what KEDA scales a stage on).
func (b *Bus) Lag(ctx context.Context, durable string) (pending, ackPending uint64, err error) {
	info, err := b.ConsumerInfo(ctx, durable)
	if err != nil {
		return 0, 0, fmt.Errorf("lag: %w", err)
	}
	return info.NumPending, uint64(info.NumAckPending), nil
}

// CaughtUp reports whether the durable consumer named durable has settled every message its filter
// matches that is stored now: nothing pending, nothing in flight, and its ack floor at or past the newest
// such message. Unlike a Lag of zero, it cannot be fooled by a message stored a moment ago that the
// server has not counted into the consumer's pending yet (it counts asynchronously).
func (b *Bus) CaughtUp(ctx context.Context, durable string) (bool, error) {
	info, err := b.ConsumerInfo(ctx, durable)
	if err != nil {
		return false, err
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return false, nil
	}
	spec, _ := contracts.ConsumerFor(durable)
	filters := spec.FilterSubjects
	if len(filters) == 0 {
		filters = []string{">"}
	}
	for _, f := range filters {
		m, err := b.LastMsg(ctx, spec.Stream, f)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		if m.Seq > info.AckFloor.Stream {
			return false, nil
		}
	}
	return true, nil
}

// ResetConsumer rewinds the durable consumer named durable to stream sequence seq, so its stage handles
// everything from there again (a replay); messages in flight are redelivered.
func (b *Bus) ResetConsumer(ctx context.Context, durable string, seq uint64) error {
	spec, ok := contracts.ConsumerFor(durable)
	if !ok {
		return fmt.Errorf("reset consumer %q: %w", durable, ErrUnknownConsumer)
	}
	if _, err := b.js.ResetConsumerToSequence(ctx, spec.Stream, spec.Durable, seq); err != nil {
		return fmt.Errorf("reset %s/%s to %d: %w", spec.Stream, spec.Durable, seq, err)
	}
	return nil
}

// LastMsg reads the newest message stored on subject (a direct get: no consumer).
func (b *Bus) LastMsg(ctx context.Context, stream, subject string) (Stored, error) {
	st, err := b.stream(ctx, stream)
	if err != nil {
		return Stored{}, err
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return Stored{}, fmt.Errorf("last message on %s: %w", subject, err)
	}
	return stored(m), nil
}

// GetMsg reads the message at stream sequence seq.
func (b *Bus) GetMsg(ctx context.Context, stream string, seq uint64) (Stored, error) {
	st, err := b.stream(ctx, stream)
	if err != nil {
		return Stored{}, err
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return Stored{}, fmt.Errorf("%s message %d: %w", stream, seq, err)
	}
	return stored(m), nil
}

// DeleteMsg removes the message at stream sequence seq (e.g. a dead letter once re-driven).
func (b *Bus) DeleteMsg(ctx context.Context, stream string, seq uint64) error {
	st, err := b.stream(ctx, stream)
	if err != nil {
		return err
	}
	if err := st.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("delete %s message %d: %w", stream, seq, err)
	}
	return nil
}

// Purge removes every message of stream.
func (b *Bus) Purge(ctx context.Context, stream string) error {
	st, err := b.stream(ctx, stream)
	if err != nil {
		return err
	}
	if err := st.Purge(ctx); err != nil {
		return fmt.Errorf("purge %s: %w", stream, err)
	}
	return nil
}

// PublishMsg stores a message exactly as given, headers and all, and waits for the stream's ack: for
// re-driving a stored message verbatim. Events go through Publish.
func (b *Bus) PublishMsg(ctx context.Context, m *nats.Msg) (duplicate bool, err error) {
	ack, err := b.js.PublishMsg(ctx, m)
	if err != nil {
		return false, fmt.Errorf("publish to %s: %w", m.Subject, err)
	}
	return ack.Duplicate, nil
}

// stream returns a cached handle to a stream, so frequent direct gets cost no stream lookup each.
func (b *Bus) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	st, err := b.streams.get(name, func() (jetstream.Stream, error) { return b.js.Stream(ctx, name) })
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return st, nil
}

// handles caches JetStream handles (buckets, streams) by name: looking one up costs a round trip.
type handles[T any] struct {
	mu sync.Mutex
	m  map[string]T
}

// get returns the cached handle called name, opening and caching it first if there is none.
func (h *handles[T]) get(name string, open func() (T, error)) (T, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.m[name]; ok {
		return v, nil
	}
	v, err := open()
	if err != nil {
		return v, err
	}
	if h.m == nil {
		h.m = map[string]T{}
	}
	h.m[name] = v
	return v, nil
}

// put caches v as name.
func (h *handles[T]) put(name string, v T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]T{}
	}
	h.m[name] = v
}

func stored(m *jetstream.RawStreamMsg) Stored {
	return Stored{Subject: m.Subject, Seq: m.Sequence, Time: m.Time, Header: m.Header, Data: m.Data}
}
