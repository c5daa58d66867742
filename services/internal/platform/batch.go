package platform

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BatchHandler carries out a batch of events at once (e.g. one Salesforce Collections call for many
// commands) and returns one result per event, in order, with the meaning a Handler's result has: nil once
// that event's effect is durable, Permanent(err), RetryAfter(err, d), or a transient error.
type BatchHandler func(ctx context.Context, events []Event) []error

// ConsumeBatch reads the durable consumer named durable like Consume, but hands the handler every message
// available at once, up to opts.Batch: it waits up to opts.MaxWait for the first message and then takes
// what is already pending without waiting, and behind a backlog upstream (events marked ExtBehind), while
// messages keep arriving, it waits up to opts.Linger for the batch to fill (fetchBatch), so a trickle is
// handled one by one without delay, live traffic with what is pending, and a backlog in full batches. Each message goes through the same middleware as Consume's and is settled on its own
// result (ack, nak with delay, dead-letter). Batches are handled one after another (opts.Concurrency is
// ignored), but the next batch is fetched as soon as the handler returned: the acks of one batch overlap
// the handling of the next. On cancel it finishes the batch in hand (within DrainGrace), settles it and
// returns nil.
func (b *Bus) ConsumeBatch(ctx context.Context, durable string, h BatchHandler, opts ConsumeOptions) error {
	opts = opts.withDefaults()
	opts.Concurrency = 1 // one batch at a time
	// settling holds a token per batch from its fetch until it is settled: one in the handler, one behind it.
	settling := make(chan struct{}, 2)
	var behind backlogRun
	return b.consume(ctx, durable, opts, perBatch(h), func(l *consumeLoop, hctx context.Context) error {
		if !acquire(ctx, settling) {
			return nil
		}
		running := false
		defer func() {
			if !running {
				<-settling
			}
		}()
		msgs, err := fetchBatch(l.cons, opts, &behind)
		if err != nil {
			return err
		}
		ds := make([]*delivery, 0, len(msgs))
		for _, m := range msgs {
			if d, ok := l.receive(m); ok {
				ds = append(ds, d)
			}
		}
		if len(ds) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			// Draining before the batch started: hand it back so another replica takes it now.
			for _, d := range ds {
				l.handBack(d)
			}
			return nil
		}
		running = true
		handled := make(chan struct{})
		release := sync.OnceFunc(func() { close(handled) })
		l.inFlight.Add(1)
		go func() {
			defer func() { release(); <-settling; l.inFlight.Done() }()
			l.run(withRelease(hctx, release), ds)
		}()
		<-handled
		return nil
	})
}

// backlogRun is what fetchBatch remembers between batches: that the last batch lingered behind a backlog.
type backlogRun struct{ lingered bool }

// fetchBatch is the one fetch wait policy of ConsumeBatch, for latency under a trickle and throughput
// under a backlog. It waits up to MaxWait for one message. A message with nothing pending behind it (its
// delivery metadata's pending count) and not behind a backlog is handed on alone at once: a trickle adds
// no wait and no second request. Otherwise it takes what is pending, up to Batch, without waiting. When
// that is not a full batch and it is behind a backlog (a message marked ExtBehind, or the batch before
// lingered for one: the backlog's tail), it waits for more from its first message on, or with LingerLive
// once it holds LingerGrowth messages: in steps of LingerStep, up to Linger in all, while the steps bring
// on average LingerGrowth messages or more, each at least half of that, and until a step brings none or
// the batch is full. So a backlog fills batches up to the API's size (one call for up to 200 records)
// even when the writer keeps up with its flow, and a burst that stops is handed on one quiet step later,
// while live traffic, however fast, is handed on with what is pending: its latency is not traded for
// fewer calls unless an operator asks (LingerLive). A stage's own durable backlog fills its batches
// without a wait.
func fetchBatch(cons jetstream.Consumer, opts ConsumeOptions, run *backlogRun) ([]jetstream.Msg, error) {
	first, err := cons.Fetch(1, jetstream.FetchMaxWait(opts.MaxWait))
	if err != nil {
		return nil, err
	}
	msgs := collect(nil, first)
	if len(msgs) == 0 {
		return msgs, nil
	}
	tail := run.lingered
	run.lingered = false
	if opts.Batch <= 1 {
		return msgs, nil
	}
	marked := marksBacklog(msgs)
	if meta, err := msgs[0].Metadata(); err == nil && meta.NumPending == 0 && !marked && !tail {
		return msgs, nil // nothing behind it: a trickle
	}
	rest, err := cons.FetchNoWait(opts.Batch - 1)
	if err != nil {
		return msgs, nil // the first one is ours; the rest comes with the next fetch
	}
	n := len(msgs)
	msgs = collect(msgs, rest)
	marked = marked || marksBacklog(msgs[n:])
	if opts.Linger <= 0 {
		return msgs, nil
	}
	if len(msgs) >= opts.Batch {
		run.lingered = marked // a full batch of a backlog: the next one may hold its tail
		return msgs, nil
	}
	// Behind a backlog a batch waits from its first command: a writer that keeps up with the backlog's
	// flow holds only a few at each fetch, and handing those on would cost a call each. Live traffic
	// waits (LingerLive) only once LingerGrowth are in hand, a stream arriving.
	if !marked && !tail && (!opts.LingerLive || len(msgs) < opts.LingerGrowth) {
		return msgs, nil // live traffic: written with what is pending
	}
	run.lingered = marked
	start := time.Now()
	lingered, steps := 0, 0
	for len(msgs) < opts.Batch {
		left := opts.Linger - time.Since(start)
		if left < time.Millisecond {
			break
		}
		more, err := cons.Fetch(opts.Batch-len(msgs), jetstream.FetchMaxWait(min(opts.LingerStep, left)))
		if err != nil {
			break
		}
		n := len(msgs)
		msgs = collect(msgs, more)
		run.lingered = run.lingered || marksBacklog(msgs[n:])
		steps++
		step := len(msgs) - n
		lingered += step
		// A stream brings LingerGrowth a step on average (half of it in the first step) and never less
		// than half of that in one step: a burst that has stopped does not keep the batch waiting on
		// what it brought, and a quiet step ends the wait at once.
		if step == 0 || step < half(opts.LingerGrowth) ||
			lingered < (steps-1)*opts.LingerGrowth+half(opts.LingerGrowth) {
			run.lingered = false // the stream stopped: its tail is in hand
			break
		}
	}
	return msgs, nil
}

// marksBacklog reports whether any of msgs is marked ExtBehind.
func marksBacklog(msgs []jetstream.Msg) bool {
	for _, m := range msgs {
		if behindHeader(m.Headers()) > 0 {
			return true
		}
	}
	return false
}

// half is n/2, at least 1.
func half(n int) int { return max(n/2, 1) }

// collect appends the messages of one fetch to msgs.
func collect(msgs []jetstream.Msg, batch jetstream.MessageBatch) []jetstream.Msg {
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	return msgs
}

type batchMetaKey struct{}

// withBatchMeta gives a ConsumeBatch handler's context its events' delivery metadata, in their order.
func withBatchMeta(ctx context.Context, ds []*delivery) context.Context {
	metas := make([]*jetstream.MsgMetadata, len(ds))
	for i, d := range ds {
		metas[i] = d.meta
	}
	return context.WithValue(ctx, batchMetaKey{}, metas)
}

// NothingLater says, for each event of a ConsumeBatch handler's batch (nil outside one), that the stream
// held no message on the consumer's filter stored after it, other than the batch's own, when the batch's
// last message was delivered: so a handler that looks for later messages of a record (sf-writer's
// superseded updates) finds them all in its batch and need not read the stream. It holds for an event
// delivered for the first time in a batch whose deliveries follow each other with none to another
// replica in between (consecutive consumer sequences) and with nothing pending behind the last: a
// consumer delivers new messages in stream order, so a later message was either still pending or
// delivered within the batch. A message stored after that delivery is not covered (as a read a moment
// later would not see what is stored after it).
func NothingLater(ctx context.Context) []bool {
	metas, _ := ctx.Value(batchMetaKey{}).([]*jetstream.MsgMetadata)
	if metas == nil {
		return nil
	}
	return nothingLater(metas)
}

// nothingLater is NothingLater over the batch's delivery metadata.
func nothingLater(metas []*jetstream.MsgMetadata) []bool {
	out := make([]bool, len(metas))
	if len(metas) == 0 {
		return out
	}
	byDelivery := slices.Clone(metas)
	slices.SortFunc(byDelivery, func(a, b *jetstream.MsgMetadata) int {
		return cmp.Compare(a.Sequence.Consumer, b.Sequence.Consumer)
	})
	for i := 1; i < len(byDelivery); i++ {
		if byDelivery[i].Sequence.Consumer != byDelivery[i-1].Sequence.Consumer+1 {
			return out // another replica (or a dropped message) took a delivery in between
		}
	}
	if byDelivery[len(byDelivery)-1].NumPending != 0 {
		return out // more is stored behind the batch
	}
	for i, m := range metas {
		out[i] = m.NumDelivered == 1
	}
	return out
}
