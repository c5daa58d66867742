package platform

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const testStage = contracts.StagePCWriter

func writerSpec(t *testing.T) contracts.ConsumerSpec {
	t.Helper()
	c, ok := contracts.ConsumerFor(contracts.ConsumerPCWriter)
	if !ok {
		t.Fatal("no pc-writer consumer in contracts")
	}
	return c
}

// fastOpts keeps retries and fetch waits short so the suite stays quick.
func fastOpts() ConsumeOptions {
	return ConsumeOptions{MaxWait: 200 * time.Millisecond, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
}

func publishCommand(t *testing.T, b *Bus, id string) (subject string, e Event) {
	t.Helper()
	return publishCommandBehind(t, b, id, 0)
}

// publishCommandBehind is publishCommand for a command decided behind a backlog of behind records
// (0: unmarked).
func publishCommandBehind(t *testing.T, b *Bus, id string, behind uint64) (subject string, e Event) {
	t.Helper()
	e, err := NewEvent("cmd/"+id, contracts.TypeReferralRequested, contracts.StageMapper, id,
		contracts.ReferralCommand{LinkID: "sf-" + id, Op: contracts.OpCreate, OpportunityID: id})
	if err != nil {
		t.Fatal(err)
	}
	e.SetExtension(ExtCorrelationID, "corr-"+id)
	MarkBehind(&e, behind)
	subject = contracts.Subject(contracts.SubjectReferralRequested, id)
	if _, err := b.Publish(context.Background(), subject, e); err != nil {
		t.Fatal(err)
	}
	return subject, e
}

// runConsume starts Consume in a goroutine; stop cancels it and returns its result.
func runConsume(t *testing.T, b *Bus, spec contracts.ConsumerSpec, h Handler, opts ConsumeOptions) (cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	finished := make(chan struct{})
	go func() { ch <- b.Consume(ctx, spec.Durable, h, opts); close(finished) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Error("Consume did not return after cancel")
		}
	})
	return cancel, ch
}

func waitDone(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Consume returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return")
	}
}

func expectLag(t *testing.T, b *Bus, spec contracts.ConsumerSpec, pending, ackPending uint64) {
	t.Helper()
	testkit.EventuallyNil(t, 5*time.Second, "condition", func() error {
		p, a, err := b.Lag(context.Background(), spec.Durable)
		if err != nil {
			return err
		}
		if p != pending || a != ackPending {
			return errorf("lag pending=%d ackPending=%d, want %d/%d", p, a, pending, ackPending)
		}
		if pending == 0 && ackPending == 0 {
			// A zero lag can be a message the server has not counted yet; caught up cannot.
			if ok, err := b.CaughtUp(context.Background(), spec.Durable); err != nil || !ok {
				return errorf("lag 0/0 but not caught up (%v)", err)
			}
		}
		return nil
	})
}

func counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func deadLetterFor(t *testing.T, b *Bus, subject string) (Event, contracts.DeadLetter) {
	t.Helper()
	ctx := context.Background()
	var raw *jetstream.RawStreamMsg
	testkit.EventuallyNil(t, 5*time.Second, "condition", func() error {
		st, err := b.js.Stream(ctx, contracts.StreamDeadLetter)
		if err != nil {
			return err
		}
		raw, err = st.GetLastMsgForSubject(ctx, DeadLetterSubject(b.Stage(), subject))
		return err
	})
	e, err := DecodeMsg(raw.Subject, raw.Header, raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := DataAs[contracts.DeadLetter](e)
	if err != nil {
		t.Fatal(err)
	}
	return e, dl
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		deliveries uint64
		want       time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {7, time.Minute}, {100, time.Minute}} {
		if got := Backoff(tt.deliveries, time.Second, time.Minute); got != tt.want {
			t.Errorf("Backoff(%d) = %s, want %s", tt.deliveries, got, tt.want)
		}
	}
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	if Permanent(nil) != nil || RetryAfter(nil, time.Second) != nil {
		t.Fatal("wrapping nil must stay nil")
	}
	p := errorsJoin("handling ref-1", Permanent(base))
	if !IsPermanent(p) || !errors.Is(p, base) {
		t.Fatalf("Permanent not detectable through wrapping: %v", p)
	}
	var ra *RetryAfterError
	if !errors.As(errorsJoin("x", RetryAfter(base, 3*time.Second)), &ra) || ra.Delay != 3*time.Second || !errors.Is(ra, base) {
		t.Fatal("RetryAfter not detectable through wrapping")
	}
}

func errorsJoin(msg string, err error) error { return errorf("%s: %w", msg, err) }

func TestConsumeAcksOnSuccess(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, m)
	spec := writerSpec(t)
	for _, id := range []string{"o1", "o2", "o3"} {
		publishCommand(t, b, id)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var loggerOK atomic.Bool
	cancel, done := runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		cmd, err := DataAs[contracts.ReferralCommand](e)
		if err != nil {
			return Permanent(err)
		}
		if Logger(ctx).Handler().Enabled(ctx, 0) {
			loggerOK.Store(true)
		}
		mu.Lock()
		seen[cmd.OpportunityID] = true
		mu.Unlock()
		return nil
	}, fastOpts())
	expectLag(t, b, spec, 0, 0)
	mu.Lock()
	if len(seen) != 3 {
		t.Errorf("handled %v, want 3 events", seen)
	}
	mu.Unlock()
	if !loggerOK.Load() {
		t.Error("handler context carries no logger")
	}
	cancel()
	waitDone(t, done)
	if got := counter(t, m.Handled.WithLabelValues(testStage, spec.Durable, OutcomeAck)); got != 3 {
		t.Errorf("ack counter = %v, want 3", got)
	}
}

func TestConsumeRetriesTransientErrors(t *testing.T) {
	t.Parallel()
	cfg := testBusConfig()
	cfg.MaxDeliver = 5
	m := NewMetrics(nil)
	b := newTestBus(t, startServer(t, ""), cfg, testStage, m)
	spec := writerSpec(t)
	publishCommand(t, b, "t1")
	var calls atomic.Int32
	succeeded := make(chan struct{})
	runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		if calls.Add(1) < 3 {
			return errors.New("partner center: 503")
		}
		close(succeeded)
		return nil
	}, fastOpts())
	select {
	case <-succeeded:
	case <-time.After(10 * time.Second):
		t.Fatalf("handler never succeeded (calls=%d)", calls.Load())
	}
	expectLag(t, b, spec, 0, 0)
	if got := counter(t, m.Handled.WithLabelValues(testStage, spec.Durable, OutcomeRetry)); got != 2 {
		t.Errorf("retry counter = %v, want 2", got)
	}
	if got := counter(t, m.DeadLetters.WithLabelValues(testStage, spec.Durable)); got != 0 {
		t.Errorf("dead letters = %v, want 0", got)
	}
}

func TestConsumePermanentGoesToDeadLetter(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, m)
	spec := writerSpec(t)
	subject, orig := publishCommand(t, b, "p1")
	var calls atomic.Int32
	runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		calls.Add(1)
		return Permanent(errors.New("referral p1: invalid dealValue"))
	}, fastOpts())

	e, dl := deadLetterFor(t, b, subject)
	if e.Type() != contracts.TypeDeadLetter || e.ID() != contracts.StreamRequested+"/"+dl.Consumer+"/1" || dl.Consumer == "" || e.Subject() != subject ||
		e.Source() != testStage {
		t.Errorf("dead-letter event = %s", e)
	}
	if e.Extensions()[ExtCorrelationID] != "corr-p1" {
		t.Errorf("correlation id not carried: %v", e.Extensions())
	}
	if !strings.Contains(dl.Reason, "invalid dealValue") || dl.Deliveries != 1 || dl.Stage != testStage ||
		dl.Stream != contracts.StreamRequested || dl.Consumer != spec.Durable || dl.StreamSeq != 1 || dl.Subject != subject {
		t.Errorf("dead letter = %+v", dl)
	}
	if string(dl.Data) != string(orig.Data()) || len(dl.Header["ce-id"]) != 1 || dl.Header["ce-id"][0] != orig.ID() {
		t.Errorf("dead letter lost the original message: header %v data %s", dl.Header, dl.Data)
	}
	expectLag(t, b, spec, 0, 0)
	if calls.Load() != 1 {
		t.Errorf("handler called %d times, want 1", calls.Load())
	}
	if got := counter(t, m.DeadLetters.WithLabelValues(testStage, spec.Durable)); got != 1 {
		t.Errorf("dead letters = %v", got)
	}
}

func TestConsumeDeadLettersAfterMaxDeliver(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, m) // MaxDeliver 3
	spec := writerSpec(t)
	subject, _ := publishCommand(t, b, "m1")
	var calls atomic.Int32
	runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		calls.Add(1)
		return errors.New("salesforce: UNABLE_TO_LOCK_ROW")
	}, fastOpts())

	_, dl := deadLetterFor(t, b, subject)
	if dl.Deliveries != 3 || !strings.Contains(dl.Reason, "UNABLE_TO_LOCK_ROW") {
		t.Errorf("dead letter = %+v, want 3 deliveries and the reason", dl)
	}
	expectLag(t, b, spec, 0, 0)
	if calls.Load() != 3 {
		t.Errorf("handler called %d times, want 3", calls.Load())
	}
	if got := counter(t, m.Handled.WithLabelValues(testStage, spec.Durable, OutcomeRetry)); got != 2 {
		t.Errorf("retry counter = %v, want 2", got)
	}
	if got := counter(t, m.Handled.WithLabelValues(testStage, spec.Durable, OutcomeDeadLetter)); got != 1 {
		t.Errorf("dead_letter counter = %v, want 1", got)
	}
}

func TestConsumeUndecodableGoesToDeadLetter(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, nil)
	spec := writerSpec(t)
	subject := contracts.Subject(contracts.SubjectReferralRequested, "junk")
	if _, err := b.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	runConsume(t, b, spec, func(ctx context.Context, e Event) error { calls.Add(1); return nil }, fastOpts())
	_, dl := deadLetterFor(t, b, subject)
	if !strings.Contains(dl.Reason, "ce-specversion") || dl.Deliveries != 1 {
		t.Errorf("dead letter = %+v", dl)
	}
	expectLag(t, b, spec, 0, 0)
	if calls.Load() != 0 {
		t.Errorf("handler called for an undecodable message")
	}
}

func TestConsumeRetryAfterDelaysRedelivery(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, nil)
	spec := writerSpec(t)
	publishCommand(t, b, "r1")
	const delay = 400 * time.Millisecond
	var mu sync.Mutex
	var at []time.Time
	opts := fastOpts()
	opts.BackoffBase = time.Millisecond // a plain retry would come back almost at once
	runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		if len(at) == 1 {
			return RetryAfter(errors.New("429 Too Many Requests"), delay)
		}
		return nil
	}, opts)
	testkit.EventuallyNil(t, 5*time.Second, "condition", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(at) < 2 {
			return errorf("%d deliveries", len(at))
		}
		return nil
	})
	mu.Lock()
	gap := at[1].Sub(at[0])
	mu.Unlock()
	if gap < delay || gap > delay+2*time.Second {
		t.Fatalf("redelivered after %s, want about %s", gap, delay)
	}
	expectLag(t, b, spec, 0, 0)
}

func TestConsumeDrainFinishesInFlight(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := startServer(t, dir)
	b := newTestBus(t, ns, testBusConfig(), testStage, nil)
	spec := writerSpec(t)
	publishCommand(t, b, "d1")

	started := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	cancel, done := runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		calls.Add(1)
		close(started)
		<-release
		return ctx.Err() // the drain must not have cancelled the handler's context
	}, fastOpts())
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not called")
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Consume returned %v while a handler was in flight", err)
	default:
	}
	close(release)
	waitDone(t, done)
	expectLag(t, b, spec, 0, 0)

	// After a restart of the server the message is acked for good: nothing to redeliver.
	b.Close()
	ns.Shutdown()
	ns.WaitForShutdown()
	ns2 := startServer(t, dir)
	b2 := newTestBus(t, ns2, testBusConfig(), testStage, nil)
	cons, err := b2.js.Consumer(context.Background(), spec.Stream, spec.Durable)
	if err != nil {
		t.Fatal(err)
	}
	info := cons.CachedInfo()
	if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 || info.AckFloor.Stream != 1 {
		t.Fatalf("after restart: pending %d ackPending %d redelivered %d ackFloor %d",
			info.NumPending, info.NumAckPending, info.NumRedelivered, info.AckFloor.Stream)
	}
	if calls.Load() != 1 {
		t.Fatalf("handler called %d times", calls.Load())
	}
}

func TestConsumeDrainGraceIsBounded(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, nil)
	spec := writerSpec(t)
	publishCommand(t, b, "g1")
	started := make(chan struct{})
	opts := fastOpts()
	opts.DrainGrace = 100 * time.Millisecond
	opts.BackoffBase = time.Hour // the nak'd message must stay parked, not be redelivered during the test
	opts.BackoffMax = time.Hour
	cancel, done := runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		close(started)
		<-ctx.Done() // a handler stuck until its context ends
		return ctx.Err()
	}, opts)
	<-started
	cancel()
	waitDone(t, done)
	// Nak'd with a delay: not acked, still owned by the consumer, will come back later.
	p, a, err := b.Lag(context.Background(), spec.Durable)
	if err != nil || p != 0 || a != 1 {
		t.Fatalf("lag %d/%d %v, want the message waiting for redelivery", p, a, err)
	}
}

func TestConsumeKeepsLongHandlersAlive(t *testing.T) {
	t.Parallel()
	cfg := testBusConfig()
	cfg.AckWait = time.Second
	b := newTestBus(t, startServer(t, ""), cfg, testStage, nil)
	spec := writerSpec(t)
	publishCommand(t, b, "k1")
	publishCommand(t, b, "k2") // fetched with k1, waits for the single slot longer than AckWait
	var mu sync.Mutex
	calls := map[string]int{}
	opts := fastOpts()
	opts.Concurrency = 1
	h := func(ctx context.Context, e Event) error {
		mu.Lock()
		calls[e.Subject()]++
		first := e.Subject() == "k1" && calls["k1"] == 1
		mu.Unlock()
		if first {
			<-time.After(1600 * time.Millisecond) // the work itself, longer than AckWait
		}
		return nil
	}
	// Two replicas on one durable: the idle one would receive any redelivery.
	runConsume(t, b, spec, h, opts)
	runConsume(t, b, spec, h, opts)
	// Both handled first: right after a publish the consumer's lag can still read 0/0 on a loaded machine.
	testkit.EventuallyNil(t, 10*time.Second, "condition", func() error {
		mu.Lock()
		defer mu.Unlock()
		if calls["k1"] == 0 || calls["k2"] == 0 {
			return errorf("calls %v", calls)
		}
		return nil
	})
	expectLag(t, b, spec, 0, 0)
	cons, err := b.js.Consumer(context.Background(), spec.Stream, spec.Durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["k1"] != 1 || calls["k2"] != 1 || info.NumRedelivered != 0 || info.AckFloor.Stream != 2 {
		t.Fatalf("calls %v, redelivered %d, ack floor %d: a message was redelivered while in progress",
			calls, info.NumRedelivered, info.AckFloor.Stream)
	}
}

func TestConsumeConcurrency(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, nil)
	spec := writerSpec(t)
	for _, id := range []string{"c1", "c2", "c3", "c4"} {
		publishCommand(t, b, id)
	}
	var inFlight, peak atomic.Int32
	all := make(chan struct{})
	var once sync.Once
	opts := fastOpts()
	opts.Concurrency = 4
	runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n == 4 {
			once.Do(func() { close(all) })
		}
		select {
		case <-all:
		case <-time.After(5 * time.Second):
		}
		return nil
	}, opts)
	expectLag(t, b, spec, 0, 0)
	if peak.Load() != 4 {
		t.Fatalf("peak concurrency %d, want 4", peak.Load())
	}
}

func TestConsumeMissingConsumer(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, nil)
	err := b.Consume(context.Background(), "nope", func(context.Context, Event) error { return nil }, ConsumeOptions{})
	if !errors.Is(err, ErrUnknownConsumer) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v", err)
	}
}

// TestConsumeKeepsEachSubjectsOrder: with handlers to spare, one record's events (one subject) are still
// handled one at a time in stream order, while another record's run beside them.
func TestConsumeKeepsEachSubjectsOrder(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, nil)
	spec := writerSpec(t)
	publish := func(record string, n int) {
		e, err := NewEvent(fmt.Sprintf("cmd/%s/%d", record, n), contracts.TypeReferralRequested, contracts.StageMapper, record,
			contracts.ReferralCommand{LinkID: "sf-" + record, Op: contracts.OpUpdate, OpportunityID: record})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(context.Background(), contracts.Subject(contracts.SubjectReferralRequested, record), e); err != nil {
			t.Fatal(err)
		}
	}
	for n := 1; n <= 3; n++ {
		publish("a", n)
	}
	publish("b", 1)

	var mu sync.Mutex
	var orderA []string
	inA := 0
	overlapped := false
	bStarted := make(chan struct{})
	opts := fastOpts()
	opts.Concurrency = 4
	runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		if e.Subject() == "b" {
			close(bStarted)
			return nil
		}
		mu.Lock()
		inA++
		overlapped = overlapped || inA > 1
		orderA = append(orderA, e.ID())
		mu.Unlock()
		if e.ID() == "cmd/a/1" {
			// Record a's first event holds its handler until record b's has started beside it: the other
			// two of a, fetched with it, must wait meanwhile.
			select {
			case <-bStarted:
			case <-time.After(10 * time.Second):
				t.Error("record b's event did not run beside record a's")
			}
		}
		mu.Lock()
		inA--
		mu.Unlock()
		return nil
	}, opts)
	expectLag(t, b, spec, 0, 0)
	mu.Lock()
	defer mu.Unlock()
	if overlapped {
		t.Error("two of record a's events were in the handler at once")
	}
	if got := fmt.Sprint(orderA); got != "[cmd/a/1 cmd/a/2 cmd/a/3]" {
		t.Errorf("record a's events handled in order %s, want stream order", got)
	}
}
