package platform

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// kvOperationHeader marks a KV delete or purge (nats.go's jetstream package does not export the name).
const kvOperationHeader = "KV-Operation"

// KVFollower applies the values written to some keys of a KV bucket as they are written, on this bus's
// connection: a core subscription on the bucket's subjects, no consumer and no history, so it costs the
// server nothing per write but the delivery. It is at most once (a value written while the connection is
// away is missed), so it suits hints that save work, never state that must be complete.
//
// Sync gives the order it is for: every put the connection received before Sync was called has been
// applied when Sync returns. A KV put reaches a follower's connection when the server takes the put,
// before the writer's Create or Update returns; so once a stage has learned, on the same connection, of
// anything the writer did after its write (here: a delivery the write caused), Sync makes the write seen.
// On one server that is strict; on a cluster it holds up to the delay of the routes between the servers.
type KVFollower struct {
	sub   *nats.Subscription
	msgs  chan *nats.Msg
	syncs chan chan struct{}
	apply func(key string, value []byte)
	done  chan struct{}
}

// FollowKV starts following the puts to keys (a key pattern: tokens, * and >) of bucket, calling apply
// with each key and value in the order they were written, from one goroutine; a delete or purge is passed
// on with a nil value. It stops when ctx ends.
func (b *Bus) FollowKV(ctx context.Context, bucket, keys string, apply func(key string, value []byte)) (*KVFollower, error) {
	prefix := "$KV." + bucket + "."
	f := &KVFollower{msgs: make(chan *nats.Msg, 8192), syncs: make(chan chan struct{}), apply: apply, done: make(chan struct{})}
	sub, err := b.conn.ChanSubscribe(prefix+keys, f.msgs)
	if err != nil {
		return nil, fmt.Errorf("follow %s in bucket %s: %w", keys, bucket, err)
	}
	// The channel is the subscription's only buffer: a follower that falls behind by more drops puts
	// (a slow consumer), which costs only the hints they carried.
	_ = sub.SetPendingLimits(cap(f.msgs), 64<<20)
	// Following from when FollowKV returns: the server has taken the subscription.
	if err := b.conn.FlushTimeout(10 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("follow %s in bucket %s: %w", keys, bucket, err)
	}
	f.sub = sub
	go f.run(ctx, prefix)
	return f, nil
}

func (f *KVFollower) run(ctx context.Context, prefix string) {
	defer close(f.done)
	defer func() { _ = f.sub.Unsubscribe() }()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-f.msgs:
			f.take(m, prefix)
		case reply := <-f.syncs:
			// Everything the connection had handed over before the Sync is in the channel: apply it first.
			for drained := false; !drained; {
				select {
				case m := <-f.msgs:
					f.take(m, prefix)
				default:
					drained = true
				}
			}
			close(reply)
		}
	}
}

func (f *KVFollower) take(m *nats.Msg, prefix string) {
	value := m.Data
	if m.Header.Get(kvOperationHeader) != "" {
		value = nil // a delete or purge marker
	} else if value == nil {
		value = []byte{}
	}
	f.apply(strings.TrimPrefix(m.Subject, prefix), value)
}

// Sync returns once every put this connection received before the call has been applied.
func (f *KVFollower) Sync(ctx context.Context) error {
	reply := make(chan struct{})
	select {
	case f.syncs <- reply:
	case <-f.done:
		return fmt.Errorf("kv follower stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
