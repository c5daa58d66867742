package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/nats-io/nats.go/jetstream"
)

// Handler carries out one event. It returns nil only once its effect is durable (or published with
// PublishAsync, which the loop waits for before it acks); Permanent(err) when
// retrying cannot help; RetryAfter(err, d) to be retried after exactly d; any other error is transient
// and retried with exponential back-off until the consumer's MaxDeliver, then dead-lettered.
type Handler func(ctx context.Context, e Event) error

// PermanentError marks an error retrying cannot fix; the message is dead-lettered at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the consumer loop dead-letters the message without retrying. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or anything it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryAfterError asks for a redelivery after exactly Delay (e.g. an HTTP Retry-After).
type RetryAfterError struct {
	Err   error
	Delay time.Duration
}

func (e *RetryAfterError) Error() string { return fmt.Sprintf("%v (retry after %s)", e.Err, e.Delay) }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err so the message is redelivered after exactly d. RetryAfter(nil, d) is nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &RetryAfterError{Err: err, Delay: d}
}

// ConsumeOptions tune the consumer loop; zero values take the defaults.
type ConsumeOptions struct {
	// Batch is how many messages one fetch asks for (default 16).
	Batch int
	// MaxWait is how long one fetch stays open for messages (default 2s): nothing waits for a batch to
	// fill, each message is handed on as it arrives; it also bounds how quickly the loop notices a drain.
	MaxWait time.Duration
	// BackoffBase is the first transient retry delay, doubled per delivery (default 1s).
	BackoffBase time.Duration
	// BackoffMax caps the transient retry delay (default 1m).
	BackoffMax time.Duration
	// Concurrency is how many handlers run in parallel within a batch (default 1).
	Concurrency int
	// DrainGrace bounds how long in-flight handlers may run after ctx is cancelled (default 25s); then
	// their context is cancelled too.
	DrainGrace time.Duration
	// Linger (ConsumeBatch only) bounds how long a batch waits to fill up to Batch once messages keep
	// arriving (default 0: a batch is what is pending, nothing waits). A lone message never waits: see
	// fetchBatch for the policy.
	Linger time.Duration
	// LingerStep is one step of a lingering batch's wait (default 20ms): the batch keeps waiting while its
	// steps bring on average at least LingerGrowth messages each and none brings less than half of that.
	LingerStep time.Duration
	// LingerGrowth is how many messages in hand, and per step on average, show a stream of messages
	// rather than a trickle (default 3: with 20ms steps, 150 messages/s).
	LingerGrowth int
	// LingerLive lets a batch of live traffic linger too. Without it (the default) a batch waits to fill
	// only behind a backlog: when it holds a message marked ExtBehind (the pipeline upstream was behind)
	// or the batch before it did and lingered (the backlog's tail, whose marks fade as it drains); live
	// traffic, however fast, is handed on with what is pending.
	LingerLive bool
}

func (o ConsumeOptions) withDefaults() ConsumeOptions {
	if o.Batch <= 0 {
		o.Batch = 16
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 2 * time.Second
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Minute
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.DrainGrace <= 0 {
		o.DrainGrace = 25 * time.Second
	}
	if o.LingerStep <= 0 {
		o.LingerStep = 20 * time.Millisecond
	}
	if o.LingerGrowth <= 0 {
		o.LingerGrowth = 3
	}
	return o
}

// Backoff is the delay before redelivery number deliveries+1 of a transient failure: base·2^(deliveries-1),
// capped at max.
func Backoff(deliveries uint64, base, max time.Duration) time.Duration {
	d := base
	for i := uint64(1); i < deliveries && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// ErrUnknownConsumer is returned for a durable contracts does not name.
var ErrUnknownConsumer = errors.New("no such durable consumer in contracts")

// consumeLoop is the state one Consume or ConsumeBatch call shares among its handlers.
type consumeLoop struct {
	b          *Bus
	spec       contracts.ConsumerSpec
	cons       jetstream.Consumer
	opts       ConsumeOptions
	ackWait    time.Duration
	maxDeliver int
	log        *slog.Logger
	// run is the middleware chain around the handler.
	run step
	// inFlight counts groups still in the chain, so a drain can wait for them.
	inFlight sync.WaitGroup
}

// Consume reads the durable consumer named durable (one of contracts.Consumers) until ctx is cancelled,
// calling h for each event and acking, retrying or dead-lettering by its result. Up to opts.Concurrency
// handlers run at once, on different subjects: a subject's messages (one record's events) are handled one
// after another in stream order (a message put back for a retry comes back after the ones behind it; across
// replicas there is no order, as the design says). On cancel it stops fetching, lets in-flight handlers finish (their context
// survives the cancel for up to DrainGrace), settles them and returns nil.
func (b *Bus) Consume(ctx context.Context, durable string, h Handler, opts ConsumeOptions) error {
	opts = opts.withDefaults()
	// sem holds a slot per running handler; window one per message from dispatch until it is settled,
	// so acks (and PublishAsync acks) overlap the next handlers without growing without bound.
	sem := make(chan struct{}, opts.Concurrency)
	window := make(chan struct{}, settleWindow(opts))
	order := &subjectTurns{tail: map[string]chan struct{}{}}
	return b.consume(ctx, durable, opts, perEvent(h), func(l *consumeLoop, hctx context.Context) error {
		batch, err := l.cons.Fetch(opts.Batch, jetstream.FetchMaxWait(opts.MaxWait))
		if err != nil {
			return err
		}
		// Messages are handed on as they arrive, not when the fetch completes.
		for msg := range batch.Messages() {
			d, ok := l.receive(msg)
			if !ok {
				continue
			}
			if !acquire(ctx, window) {
				// Draining: hand back what has not started, so another replica takes it now.
				l.handBack(d)
				continue
			}
			turn, handled := order.take(msg.Subject())
			l.inFlight.Add(1)
			go func() {
				defer func() { <-window; l.inFlight.Done() }()
				if turn != nil {
					<-turn // the subject's previous message is still in its handler
				}
				if !acquire(ctx, sem) {
					handled()
					l.handBack(d)
					return
				}
				release := sync.OnceFunc(func() { <-sem; handled() })
				defer release()
				l.run(withRelease(hctx, release), []*delivery{d})
			}()
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil &&
			!errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			l.log.Warn("fetch ended with error", "err", err)
		}
		return nil
	})
}

// subjectTurns hands each subject's messages to the handler one after another, in the order they were
// fetched: the subject names the record (its id is the last token), so a record's events are never
// handled out of order or at the same time on one replica, while other records' run in parallel.
type subjectTurns struct {
	mu   sync.Mutex
	tail map[string]chan struct{} // per subject, closed when its latest message left its handler
}

// take queues a message of subject: turn (nil when none) closes when the subject's previous message has
// left its handler; handled must be called once this one has.
func (t *subjectTurns) take(subject string) (turn <-chan struct{}, handled func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev, mine := t.tail[subject], make(chan struct{})
	t.tail[subject] = mine
	if prev != nil {
		turn = prev
	}
	return turn, func() {
		t.mu.Lock()
		if t.tail[subject] == mine {
			delete(t.tail, subject)
		}
		t.mu.Unlock()
		close(mine)
	}
}

// settleWindow is how many messages one loop keeps between dispatch and settlement: the running handlers
// and, behind them, those waiting for their acks.
func settleWindow(opts ConsumeOptions) int { return max(4*opts.Concurrency, 2*opts.Batch) }

// acquire takes a slot in each of sems in turn, unless ctx ends first (then it holds none and reports false).
func acquire(ctx context.Context, sems ...chan struct{}) bool {
	for i, sem := range sems {
		if ctx.Err() == nil {
			select {
			case sem <- struct{}{}:
				continue
			case <-ctx.Done():
			}
		}
		for _, held := range sems[:i] {
			<-held
		}
		return false
	}
	return true
}

// consume is the one loop under Consume and ConsumeBatch: it binds the durable, wraps handler in the
// middleware chain and calls fetch (which takes one fetch's messages through l.run, on the handlers'
// context hctx) until ctx is cancelled, backing off while fetching fails; then it waits for the groups
// still in flight.
func (b *Bus) consume(ctx context.Context, durable string, opts ConsumeOptions, handler step,
	fetch func(l *consumeLoop, hctx context.Context) error) error {
	l, hctx, stop, err := b.startLoop(ctx, durable, opts)
	if err != nil {
		return err
	}
	defer stop()
	l.run = l.pipeline(handler)
	l.log.Info("consuming", "batch", opts.Batch, "concurrency", opts.Concurrency)
	backoff := l.opts.BackoffBase
	for ctx.Err() == nil {
		if err := fetch(l, hctx); err != nil {
			l.log.Warn("fetch failed", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, l.opts.BackoffMax)
			continue
		}
		backoff = l.opts.BackoffBase
	}
	l.inFlight.Wait()
	l.log.Info("consumer drained")
	return nil
}

// receive starts a fetched message's keep-alive at once (it may wait for a free handler longer than
// AckWait) and reads its delivery metadata; a message without any is not a JetStream delivery and is
// dropped, with nothing to ack or dead-letter.
func (l *consumeLoop) receive(msg jetstream.Msg) (*delivery, bool) {
	stop := l.keepAlive(msg)
	meta, err := msg.Metadata()
	if err != nil {
		stop()
		l.log.Error("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		return nil, false
	}
	log := l.log.With("subject", msg.Subject(), "stream_seq", meta.Sequence.Stream, "deliveries", meta.NumDelivered)
	return &delivery{msg: msg, meta: meta, log: log, stopKeepAlive: stop}, true
}

// handBack returns a message the draining loop will not start, so another replica takes it now.
func (l *consumeLoop) handBack(d *delivery) {
	d.stopKeepAlive()
	_ = d.msg.Nak()
}

// keepAlive tells the server the message is still being worked on every AckWait/2 so a long handler is
// not redelivered to another replica meanwhile. stop may be called more than once.
func (l *consumeLoop) keepAlive(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(l.ackWait / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// startLoop prepares a consumer loop: the durable with its AckWait and MaxDeliver, and the context handlers
// run on, which the drain does not cancel but bounds by DrainGrace. stop must be called when the loop ends.
func (b *Bus) startLoop(ctx context.Context, durable string, opts ConsumeOptions) (*consumeLoop, context.Context, func(), error) {
	spec, ok := contracts.ConsumerFor(durable)
	if !ok {
		return nil, nil, nil, fmt.Errorf("consume %q: %w", durable, ErrUnknownConsumer)
	}
	cons, err := b.js.Consumer(ctx, spec.Stream, spec.Durable)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("consume %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	info := cons.CachedInfo()
	l := &consumeLoop{
		b: b, spec: spec, cons: cons, opts: opts,
		ackWait:    info.Config.AckWait,
		maxDeliver: info.Config.MaxDeliver,
		log:        b.log.With("consumer", spec.Durable, "stream", spec.Stream),
	}
	if l.ackWait <= 0 {
		l.ackWait = 30 * time.Second
	}
	hctx, hcancel := context.WithCancel(WithLogger(context.WithoutCancel(ctx), l.log))
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(opts.DrainGrace, hcancel)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	return l, hctx, func() { stopGrace(); hcancel() }, nil
}
