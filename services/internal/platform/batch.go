package platform

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BatchHandler carries out a batch of events at once (e.g. one Salesforce Collections call for many
// commands) and returns one result per event, in order, with the meaning a Handler's result has: nil once
// that event's effect is durable, Permanent(err), RetryAfter(err, d), or a transient error.
type BatchHandler func(ctx context.Context, events []Event) []error

// errBatchResults is reported for every event of a batch whose handler returned the wrong number of results.
var errBatchResults = errors.New("batch handler returned a result count that does not match its batch")

// ConsumeBatch reads the durable consumer named durable like Consume, but hands the handler every message available at once,
// up to opts.Batch: it waits up to opts.MaxWait for the first message and then takes what is already
// pending without waiting, so a trickle is handled one by one without delay and a backlog in full batches.
// Each message is settled on its own result (ack, nak with delay, dead-letter), exactly as Consume does.
// Batches run one after another (opts.Concurrency is ignored). On cancel it finishes the batch in hand
// (within DrainGrace), settles it and returns nil.
func (b *Bus) ConsumeBatch(ctx context.Context, durable string, h BatchHandler, opts ConsumeOptions) error {
	opts = opts.withDefaults()
	l, cons, hctx, stop, err := b.startLoop(ctx, durable, nil, opts)
	if err != nil {
		return err
	}
	defer stop()

	l.log.Info("consuming in batches", "batch", opts.Batch)
	fetchBackoff := opts.BackoffBase
	for ctx.Err() == nil {
		msgs, err := fetchAvailable(cons, opts)
		if err != nil {
			l.log.Warn("fetch failed", "err", err, "retry_in", fetchBackoff)
			select {
			case <-ctx.Done():
			case <-time.After(fetchBackoff):
			}
			fetchBackoff = min(fetchBackoff*2, opts.BackoffMax)
			continue
		}
		fetchBackoff = opts.BackoffBase
		if len(msgs) == 0 {
			continue
		}
		if ctx.Err() != nil {
			// Draining before the batch started: hand it back so another replica takes it now.
			for _, m := range msgs {
				_ = m.Nak()
			}
			break
		}
		l.handleBatch(hctx, h, msgs)
	}
	l.log.Info("consumer drained")
	return nil
}

// fetchAvailable waits up to MaxWait for one message, then takes up to Batch-1 more that are already
// pending, without waiting for them.
func fetchAvailable(cons jetstream.Consumer, opts ConsumeOptions) ([]jetstream.Msg, error) {
	first, err := cons.Fetch(1, jetstream.FetchMaxWait(opts.MaxWait))
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range first.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 || opts.Batch <= 1 {
		return msgs, nil
	}
	rest, err := cons.FetchNoWait(opts.Batch - 1)
	if err != nil {
		return msgs, nil // the first one is ours; the rest comes with the next fetch
	}
	for m := range rest.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// pendingMsg is one message of a batch on its way through the handler.
type pendingMsg struct {
	msg   jetstream.Msg
	meta  *jetstream.MsgMetadata
	stop  func()
	event Event
}

// handleBatch decodes the batch, runs the handler on what decoded and settles every message on its result.
func (l *consumeLoop) handleBatch(ctx context.Context, h BatchHandler, msgs []jetstream.Msg) {
	start := time.Now()
	var ok []pendingMsg
	for _, msg := range msgs {
		stop := l.keepAlive(msg)
		meta, err := msg.Metadata()
		if err != nil {
			stop()
			l.log.Error("message without JetStream metadata", "subject", msg.Subject(), "err", err)
			continue
		}
		log := l.log.With("subject", msg.Subject(), "stream_seq", meta.Sequence.Stream, "deliveries", meta.NumDelivered)
		e, err := DecodeMsg(msg.Subject(), msg.Headers(), msg.Data())
		if err != nil {
			stop()
			l.settle(ctx, msg, meta, log, Permanent(err), start)
			continue
		}
		ok = append(ok, pendingMsg{msg: msg, meta: meta, stop: stop, event: e})
	}
	if len(ok) == 0 {
		return
	}
	events := make([]Event, len(ok))
	for i, p := range ok {
		events[i] = p.event
	}
	results := l.callBatch(WithLogger(ctx, l.log.With("batch", len(events))), h, events)
	if len(results) != len(events) {
		err := fmt.Errorf("%w: %d results for %d events", errBatchResults, len(results), len(events))
		results = make([]error, len(events))
		for i := range results {
			results[i] = err
		}
	}
	var wg sync.WaitGroup
	for i, p := range ok {
		p.stop()
		log := l.log.With("subject", p.msg.Subject(), "stream_seq", p.meta.Sequence.Stream,
			"deliveries", p.meta.NumDelivered, "event_id", p.event.ID(), "event_type", p.event.Type())
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.settle(ctx, p.msg, p.meta, log, results[i], start)
		}()
	}
	wg.Wait()
}

// callBatch runs the handler, turning a panic into a transient error for every event of the batch.
func (l *consumeLoop) callBatch(ctx context.Context, h BatchHandler, events []Event) (results []error) {
	defer func() {
		if r := recover(); r != nil {
			Logger(ctx).Error("batch handler panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err := fmt.Errorf("handler panic: %v", r)
			results = make([]error, len(events))
			for i := range results {
				results[i] = err
			}
		}
	}()
	return h(ctx, events)
}
