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

	"github.com/cosell-dev/cosell/contracts"
	"github.com/nats-io/nats.go/jetstream"
)

// Handler carries out one event. It returns nil only once its effect is durable; Permanent(err) when
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
	// MaxWait is how long a fetch waits for a full batch (default 2s); it also bounds how quickly the
	// loop notices a drain.
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

// consumeLoop is the state one Consume call shares among its handlers.
type consumeLoop struct {
	b          *Bus
	spec       contracts.ConsumerSpec
	h          Handler
	opts       ConsumeOptions
	ackWait    time.Duration
	maxDeliver int
	log        *slog.Logger
}

// ErrUnknownConsumer is returned for a durable contracts does not name.
var ErrUnknownConsumer = errors.New("no such durable consumer in contracts")

// Consume reads the durable consumer named durable (one of contracts.Consumers) until ctx is cancelled, calling h for each event and acking, retrying or
// dead-lettering by its result. On cancel it stops fetching, lets in-flight handlers finish (their
// context survives the cancel for up to DrainGrace), settles them and returns nil.
func (b *Bus) Consume(ctx context.Context, durable string, h Handler, opts ConsumeOptions) error {
	opts = opts.withDefaults()
	l, cons, hctx, stop, err := b.startLoop(ctx, durable, h, opts)
	if err != nil {
		return err
	}
	defer stop()

	l.log.Info("consuming", "batch", opts.Batch, "concurrency", opts.Concurrency)
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	fetchBackoff := opts.BackoffBase
	for ctx.Err() == nil {
		batch, err := cons.Fetch(opts.Batch, jetstream.FetchMaxWait(opts.MaxWait))
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
		for msg := range batch.Messages() {
			// Keep the message alive from receipt: with a batch larger than Concurrency it may wait for a
			// free slot longer than AckWait.
			stop := l.keepAlive(msg)
			acquired := false
			if ctx.Err() == nil {
				select {
				case sem <- struct{}{}:
					acquired = true
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				// Draining: hand back what has not started, so another replica takes it now.
				if acquired {
					<-sem
				}
				stop()
				_ = msg.Nak()
				continue
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				l.handle(hctx, msg, stop)
			}()
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil &&
			!errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			l.log.Warn("fetch ended with error", "err", err)
		}
	}
	wg.Wait()
	l.log.Info("consumer drained")
	return nil
}

// handle runs the handler for one message and settles it; stopKeepAlive ends the InProgress ticks.
func (l *consumeLoop) handle(ctx context.Context, msg jetstream.Msg, stopKeepAlive func()) {
	stop := stopKeepAlive
	defer stop()
	start := time.Now()
	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing to ack or dead-letter.
		l.log.Error("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		return
	}
	deliveries := meta.NumDelivered
	log := l.log.With("subject", msg.Subject(), "stream_seq", meta.Sequence.Stream, "deliveries", deliveries)

	e, err := DecodeMsg(msg.Subject(), msg.Headers(), msg.Data())
	if err != nil {
		stop()
		l.settle(ctx, msg, meta, log, Permanent(err), start)
		return
	}
	log = log.With("event_id", e.ID(), "event_type", e.Type())
	ctx, span := startHandleSpan(ctx, l.b.stage, l.spec.Durable, e)
	err = l.call(WithLogger(ctx, log), e)
	endSpan(span, err)
	stop()
	l.settle(ctx, msg, meta, log, err, start)
}

// call runs the handler, turning a panic into a transient error so one bad event cannot kill the stage.
func (l *consumeLoop) call(ctx context.Context, e Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
			Logger(ctx).Error("handler panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	return l.h(ctx, e)
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

// settle acks, naks with delay or dead-letters msg by the handler's result, and records the outcome.
func (l *consumeLoop) settle(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, log *slog.Logger, herr error, start time.Time) {
	elapsed := time.Since(start)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	deliveries := meta.NumDelivered
	lastTry := l.maxDeliver > 0 && deliveries >= uint64(l.maxDeliver)

	outcome := OutcomeRetry
	var ra *RetryAfterError
	switch {
	case herr == nil:
		outcome = OutcomeAck
		if err := msg.DoubleAck(actx); err != nil {
			// The effect is done; a redelivery will find it done (handlers are idempotent).
			log.Warn("ack not confirmed, expect a redelivery", "err", err)
		} else {
			log.Debug("handled", "duration", elapsed)
		}
	case IsPermanent(herr) || lastTry:
		if err := l.deadLetter(actx, msg, meta, herr); err != nil {
			delay := Backoff(deliveries, l.opts.BackoffBase, l.opts.BackoffMax)
			log.Error("dead-letter publish failed, will retry", "err", err, "reason", herr.Error(), "retry_in", delay)
			_ = msg.NakWithDelay(delay)
			break
		}
		outcome = OutcomeDeadLetter
		if err := msg.TermWithReason(truncate(herr.Error(), 256)); err != nil {
			log.Warn("term failed", "err", err)
		}
		l.b.metrics.DeadLetters.WithLabelValues(l.b.stage, l.spec.Durable).Inc()
		log.Error("dead-lettered", "reason", herr.Error(), "permanent", IsPermanent(herr))
	case errors.As(herr, &ra):
		log.Warn("retry requested", "err", herr, "retry_in", ra.Delay)
		if err := msg.NakWithDelay(ra.Delay); err != nil {
			log.Warn("nak failed", "err", err)
		}
	default:
		delay := Backoff(deliveries, l.opts.BackoffBase, l.opts.BackoffMax)
		log.Warn("handler failed, will retry", "err", herr, "retry_in", delay)
		if err := msg.NakWithDelay(delay); err != nil {
			log.Warn("nak failed", "err", err)
		}
	}
	l.b.metrics.Handled.WithLabelValues(l.b.stage, l.spec.Durable, outcome).Inc()
	l.b.metrics.Duration.WithLabelValues(l.b.stage, l.spec.Durable, outcome).Observe(elapsed.Seconds())
}

// deadLetter parks msg in the dead-letter stream as a contracts.DeadLetter event with the reason, the
// original headers and data, so it can be inspected and re-driven.
func (l *consumeLoop) deadLetter(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, reason error) error {
	dl := contracts.DeadLetter{
		Stage:      l.b.stage,
		Stream:     meta.Stream,
		Consumer:   meta.Consumer,
		StreamSeq:  meta.Sequence.Stream,
		Subject:    msg.Subject(),
		Header:     map[string][]string(msg.Headers()),
		Data:       msg.Data(),
		Reason:     reason.Error(),
		Deliveries: meta.NumDelivered,
		At:         time.Now().UTC(),
	}
	id := fmt.Sprintf("%s/%d", meta.Stream, meta.Sequence.Stream)
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

// Lag is the backlog of the durable consumer named durable: messages not yet delivered and messages
// delivered but not yet acked (what KEDA scales a stage on).
func (b *Bus) Lag(ctx context.Context, durable string) (pending, ackPending uint64, err error) {
	spec, ok := contracts.ConsumerFor(durable)
	if !ok {
		return 0, 0, fmt.Errorf("lag %q: %w", durable, ErrUnknownConsumer)
	}
	cons, err := b.JS.Consumer(ctx, spec.Stream, spec.Durable)
	if err != nil {
		return 0, 0, fmt.Errorf("lag %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("lag %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	return info.NumPending, uint64(info.NumAckPending), nil
}

// startLoop prepares a consumer loop: the durable with its AckWait and MaxDeliver, and the context handlers
// run on, which the drain does not cancel but bounds by DrainGrace. stop must be called when the loop ends.
func (b *Bus) startLoop(ctx context.Context, durable string, h Handler, opts ConsumeOptions) (*consumeLoop, jetstream.Consumer, context.Context, func(), error) {
	spec, ok := contracts.ConsumerFor(durable)
	if !ok {
		return nil, nil, nil, nil, fmt.Errorf("consume %q: %w", durable, ErrUnknownConsumer)
	}
	cons, err := b.JS.Consumer(ctx, spec.Stream, spec.Durable)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("consume %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	info := cons.CachedInfo()
	l := &consumeLoop{
		b: b, spec: spec, h: h, opts: opts,
		ackWait:    info.Config.AckWait,
		maxDeliver: info.Config.MaxDeliver,
		log:        b.log.With("consumer", spec.Durable, "stream", spec.Stream),
	}
	if l.ackWait <= 0 {
		l.ackWait = 30 * time.Second
	}
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(opts.DrainGrace, hcancel)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	return l, cons, hctx, func() { stopGrace(); hcancel() }, nil
}
