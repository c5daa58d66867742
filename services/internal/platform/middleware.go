package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosell-dev/cosell/contracts"
)

// The consumer loop takes every fetched message through one chain of middleware, in the style of
// Watermill's router middleware: each cross-cutting concern is one small piece wrapped around the next,
// applied once, the same for Consume (groups of one message) and ConsumeBatch (a whole fetch at a time).
// From the outside in:
//
//	settle      ack, nak with delay or term each message by its result
//	measure     cosell_events_handled_total and cosell_handler_duration_seconds by final outcome
//	deadLetter  park Permanent failures and last deliveries in the dead-letter stream
//	decode      the CloudEvent out of the message; undecodable data is Permanent
//	published   frees the handler's slot, then waits for the acks of the handler's PublishAsync calls
//	traced      one consumer span per event, a child of the event's traceparent
//	recovered   a handler panic becomes a transient failure
//	handler     the stage's Handler (once per event) or BatchHandler (once per group)
//
// The order is forced by what each piece must see: measure wraps deadLetter to label an outcome
// dead_letter only once it is parked; deadLetter wraps decode because undecodable messages are parked too;
// traced sits inside decode because a span needs the event; published sits right outside the handler's
// pieces, so the slot is free as soon as the handler returned and everything after it (its publishes'
// acks, a dead letter, the ack) overlaps the next message's handling.

// delivery is one message on its way through the chain.
type delivery struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
	log  *slog.Logger
	// stopKeepAlive ends the InProgress ticks started when the message was received.
	stopKeepAlive func()
	// ctx is the handler's context for this one event (logger, span, its PublishAsync window); set by decode.
	ctx context.Context
	// pubs are the handler's PublishAsync calls for this event, waited for before it is acked.
	pubs  *deliveryPubs
	event Event
	// err is the result the message is settled on.
	err error
}

// step carries a group of deliveries one piece further, recording each one's result in its err.
type step func(ctx context.Context, ds []*delivery)

// middleware wraps a step with one concern.
type middleware func(next step) step

// chain wraps h in mws, the first outermost.
func chain(h step, mws ...middleware) step {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// pipeline is the loop's whole chain around handler.
func (l *consumeLoop) pipeline(handler step) step {
	return chain(handler, l.settle, l.measure, l.deadLetter, l.decode, l.published, l.traced, l.recovered)
}

// afterward runs next, then fn for every delivery, side by side when there are several (a batch's acks
// and dead letters are independent round trips), with a context the drain does not cut short: a message
// whose effect is done must still be settled.
func afterward(next step, fn func(ctx context.Context, d *delivery)) step {
	return func(ctx context.Context, ds []*delivery) {
		next(ctx, ds)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if len(ds) == 1 {
			fn(ctx, ds[0])
			return
		}
		var wg sync.WaitGroup
		for _, d := range ds {
			wg.Add(1)
			go func() { defer wg.Done(); fn(ctx, d) }()
		}
		wg.Wait()
	}
}

// deadLettered is the result of a message parked in the dead-letter stream: settle terminates it.
type deadLettered struct{ reason error }

func (e *deadLettered) Error() string { return "dead-lettered: " + e.reason.Error() }
func (e *deadLettered) Unwrap() error { return e.reason }

// settle acknowledges, naks with delay or terminates every message by its result, after the effect.
func (l *consumeLoop) settle(next step) step {
	return afterward(next, func(ctx context.Context, d *delivery) {
		d.stopKeepAlive()
		var ra *RetryAfterError
		var dl *deadLettered
		switch {
		case d.err == nil:
			// A plain ack, no reply asked: a confirmed one cost the server a reply message per delivery
			// (its second-largest cost after storing) and held this slot for a round trip. A lost ack is
			// a redelivery after AckWait, which finds the effect done (handlers are idempotent), and the
			// connection's Drain at exit flushes the acks still buffered.
			if err := d.msg.Ack(); err != nil {
				d.log.Warn("ack not sent, expect a redelivery", "err", err)
			} else {
				d.log.Debug("handled")
			}
		case errors.As(d.err, &dl):
			if err := d.msg.TermWithReason(truncate(dl.reason.Error(), 256)); err != nil {
				d.log.Warn("term failed", "err", err)
			}
		case errors.As(d.err, &ra):
			d.log.Warn("retry requested", "err", d.err, "retry_in", ra.Delay)
			if err := d.msg.NakWithDelay(ra.Delay); err != nil {
				d.log.Warn("nak failed", "err", err)
			}
		default:
			delay := Backoff(d.meta.NumDelivered, l.opts.BackoffBase, l.opts.BackoffMax)
			d.log.Warn("handler failed, will retry", "err", d.err, "retry_in", delay)
			if err := d.msg.NakWithDelay(delay); err != nil {
				d.log.Warn("nak failed", "err", err)
			}
		}
	})
}

// measure records each message's final outcome and the time the chain took for it.
func (l *consumeLoop) measure(next step) step {
	return func(ctx context.Context, ds []*delivery) {
		start := time.Now()
		next(ctx, ds)
		elapsed := time.Since(start).Seconds()
		for _, d := range ds {
			outcome := OutcomeRetry
			var dl *deadLettered
			switch {
			case d.err == nil:
				outcome = OutcomeAck
			case errors.As(d.err, &dl):
				outcome = OutcomeDeadLetter
			}
			l.b.metrics.Handled.WithLabelValues(l.b.stage, l.spec.Durable, outcome).Inc()
			l.b.metrics.Duration.WithLabelValues(l.b.stage, l.spec.Durable, outcome).Observe(elapsed)
		}
	}
}

// deadLetter parks what retrying cannot fix (Permanent) or may not retry any more (the consumer's last
// delivery). A message whose dead letter cannot be published is retried with back-off instead, so it is
// never terminated without being parked.
func (l *consumeLoop) deadLetter(next step) step {
	return afterward(next, func(ctx context.Context, d *delivery) {
		lastTry := l.maxDeliver > 0 && d.meta.NumDelivered >= uint64(l.maxDeliver)
		if d.err == nil || !IsPermanent(d.err) && !lastTry {
			return
		}
		if err := l.park(ctx, d); err != nil {
			d.log.Error("dead-letter publish failed, will retry", "err", err, "reason", d.err.Error(),
				"retry_in", Backoff(d.meta.NumDelivered, l.opts.BackoffBase, l.opts.BackoffMax))
			d.err = fmt.Errorf("dead-letter publish failed: %w", err)
			return
		}
		l.b.metrics.DeadLetters.WithLabelValues(l.b.stage, l.spec.Durable).Inc()
		d.log.Error("dead-lettered", "reason", d.err.Error(), "permanent", IsPermanent(d.err))
		d.err = &deadLettered{reason: d.err}
	})
}

// park publishes the message to the dead-letter stream as a contracts.DeadLetter event with the reason,
// the original headers and data, so it can be inspected and re-driven.
func (l *consumeLoop) park(ctx context.Context, d *delivery) error {
	msg, meta := d.msg, d.meta
	dl := contracts.DeadLetter{
		Stage:      l.b.stage,
		Stream:     meta.Stream,
		Consumer:   meta.Consumer,
		StreamSeq:  meta.Sequence.Stream,
		Subject:    msg.Subject(),
		Header:     map[string][]string(msg.Headers()),
		Data:       msg.Data(),
		Reason:     d.err.Error(),
		Deliveries: meta.NumDelivered,
		At:         time.Now().UTC(),
	}
	// The id names the consumer too: two durables on one stream (mapper-outcomes and auditor-outcomes) may
	// both park the same message, and an id of the stream sequence alone would have the server drop the
	// second as a duplicate of the first (Nats-Msg-Id), losing that consumer's dead letter.
	id := fmt.Sprintf("%s/%s/%d", meta.Stream, meta.Consumer, meta.Sequence.Stream)
	e, err := NewEvent(id, contracts.TypeDeadLetter, l.b.stage, msg.Subject(), dl)
	if err != nil {
		return err
	}
	if cid, ok := msg.Headers()[headerPrefix+ExtCorrelationID]; ok && len(cid) > 0 {
		e.SetExtension(ExtCorrelationID, cid[0])
	}
	_, err = l.b.Publish(ctx, DeadLetterSubject(l.b.stage, msg.Subject()), e)
	return err
}

type streamSeqKey struct{}

// StreamSeq is the stream sequence of the message a handler's ctx is for (0 outside a handler): the
// handle `cosell dlq show` takes for a dead letter.
func StreamSeq(ctx context.Context) uint64 {
	n, _ := ctx.Value(streamSeqKey{}).(uint64)
	return n
}

type batchSeqsKey struct{}

// StreamSeqs are the stream sequences of a ConsumeBatch handler's events, one per event in its order (nil
// outside one): where a handler reads what the stream holds after an event (the commands behind it).
func StreamSeqs(ctx context.Context) []uint64 {
	seqs, _ := ctx.Value(batchSeqsKey{}).([]uint64)
	return seqs
}

// decode reads the CloudEvent out of each message and passes on those that decoded; the others fail
// Permanent, so they are parked with the decoder's reason and never reach the handler.
func (l *consumeLoop) decode(next step) step {
	return func(ctx context.Context, ds []*delivery) {
		ok := make([]*delivery, 0, len(ds))
		for _, d := range ds {
			e, err := DecodeMsg(d.msg.Subject(), d.msg.Headers(), d.msg.Data())
			if err != nil {
				d.err = Permanent(err)
				continue
			}
			d.event = e
			d.log = d.log.With("event_id", e.ID(), "event_type", e.Type())
			d.pubs = &deliveryPubs{w: pubWindow{b: l.b}}
			d.ctx = context.WithValue(WithLogger(ctx, d.log), streamSeqKey{}, d.meta.Sequence.Stream)
			d.ctx = context.WithValue(d.ctx, deliveryPubsKey{}, d.pubs)
			d.ctx = withBehind(d.ctx, e, d.meta.NumPending)
			ok = append(ok, d)
		}
		if len(ok) > 0 {
			next(ctx, ok)
		}
	}
}

type releaseKey struct{}

// withRelease gives a group's chain the function that frees its handler slot (Consume's concurrency,
// ConsumeBatch's next fetch); published calls it once the handler returned.
func withRelease(ctx context.Context, release func()) context.Context {
	return context.WithValue(ctx, releaseKey{}, release)
}

// published frees the group's handler slot as soon as the handler returned (its effects are done, or in
// flight as PublishAsync calls), then waits for the acks of those publishes: a failed or unanswered one
// fails its event (transient, so it is retried and published again; the server drops the copies).
func (l *consumeLoop) published(next step) step {
	return func(ctx context.Context, ds []*delivery) {
		next(ctx, ds)
		if release, ok := ctx.Value(releaseKey{}).(func()); ok {
			release()
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), asyncAckTimeout)
		defer cancel()
		for _, d := range ds {
			if err := d.pubs.wait(wctx); err != nil && d.err == nil {
				d.err = fmt.Errorf("handled, but a publish was not confirmed: %w", err)
			}
		}
	}
}

// traced runs each event in a consumer span that continues the trace its traceparent names, and records
// the result on it.
func (l *consumeLoop) traced(next step) step {
	return func(ctx context.Context, ds []*delivery) {
		spans := make([]trace.Span, len(ds))
		for i, d := range ds {
			d.ctx, spans[i] = startHandleSpan(d.ctx, l.b.stage, l.spec.Durable, d.event)
		}
		next(ctx, ds)
		for i, d := range ds {
			endSpan(spans[i], d.err)
		}
	}
}

// recovered turns a handler panic into a transient failure of every event it was handling, so one bad
// event cannot kill the stage.
func (l *consumeLoop) recovered(next step) step {
	return func(ctx context.Context, ds []*delivery) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			log := l.log.With("batch", len(ds))
			if len(ds) == 1 {
				log = ds[0].log
			}
			log.Error("handler panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err := fmt.Errorf("handler panic: %v", r)
			for _, d := range ds {
				d.err = err
			}
		}()
		next(ctx, ds)
	}
}

// perEvent is the innermost step of Consume: the handler once per event, in the event's own context.
func perEvent(h Handler) step {
	return func(_ context.Context, ds []*delivery) {
		for _, d := range ds {
			d.err = h(d.ctx, d.event)
		}
	}
}

// errBatchResults is reported for every event of a batch whose handler returned the wrong number of results.
var errBatchResults = errors.New("batch handler returned a result count that does not match its batch")

// perBatch is the innermost step of ConsumeBatch: the handler once for the whole group. A result count
// that does not match the group fails every event (transient), so nothing is acked on a broken answer.
func perBatch(h BatchHandler) step {
	return func(ctx context.Context, ds []*delivery) {
		events := make([]Event, len(ds))
		seqs := make([]uint64, len(ds))
		for i, d := range ds {
			events[i], seqs[i] = d.event, d.meta.Sequence.Stream
		}
		ctx = withBatchMeta(context.WithValue(ctx, batchSeqsKey{}, seqs), ds)
		results := h(WithLogger(ctx, Logger(ctx).With("batch", len(events))), events)
		if len(results) != len(ds) {
			err := fmt.Errorf("%w: %d results for %d events", errBatchResults, len(results), len(ds))
			for _, d := range ds {
				d.err = err
			}
			return
		}
		for i, d := range ds {
			d.err = results[i]
		}
	}
}

// DeadLetterSubject is where stage parks a message that arrived on subject:
// cosell.dlq.<stage>.<last token of subject>.
func DeadLetterSubject(stage, subject string) string {
	last := subject
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		last = subject[i+1:]
	}
	return contracts.SubjectDeadLetter + "." + contracts.Token(stage) + "." + contracts.Token(last)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
