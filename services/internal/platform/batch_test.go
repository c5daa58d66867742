package platform

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/nats-io/nats.go/jetstream"
)

// runConsumeBatch starts ConsumeBatch in a goroutine and stops it at cleanup.
func runConsumeBatch(t *testing.T, b *Bus, spec contracts.ConsumerSpec, h BatchHandler, opts ConsumeOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan error, 1)
	go func() { finished <- b.ConsumeBatch(ctx, spec.Durable, h, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-finished:
			if err != nil {
				t.Errorf("ConsumeBatch returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ConsumeBatch did not return after cancel")
		}
	})
}

func TestConsumeBatchSettlesEachMessageOnItsOwnResult(t *testing.T) {
	t.Parallel()
	ns := startServer(t, "")
	b := newTestBus(t, ns, testBusConfig(), testStage, nil)
	spec := writerSpec(t)

	// A backlog before the consumer starts, so it arrives as one batch.
	ids := []string{"ok1", "bad", "flaky", "ok2", "later"}
	subjects := map[string]string{}
	for _, id := range ids {
		subjects[id], _ = publishCommand(t, b, id)
	}
	var mu sync.Mutex
	var sizes []int
	calls := map[string]int{}
	h := func(ctx context.Context, events []Event) []error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(events))
		out := make([]error, len(events))
		for i, e := range events {
			id := e.Subject()
			calls[id]++
			switch {
			case id == "bad":
				out[i] = Permanent(errors.New("REQUIRED_FIELD_MISSING: CloseDate"))
			case id == "flaky" && calls[id] == 1:
				out[i] = errors.New("UNABLE_TO_LOCK_ROW")
			case id == "later" && calls[id] == 1:
				out[i] = RetryAfter(errors.New("REQUEST_LIMIT_EXCEEDED"), 50*time.Millisecond)
			}
		}
		return out
	}
	opts := fastOpts()
	opts.Batch = 10
	runConsumeBatch(t, b, spec, h, opts)

	expectLag(t, b, spec, 0, 0)
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) == 0 || sizes[0] != len(ids) {
		t.Fatalf("batch sizes %v, want the backlog of %d in the first batch", sizes, len(ids))
	}
	for id, want := range map[string]int{"ok1": 1, "ok2": 1, "bad": 1, "flaky": 2, "later": 2} {
		if calls[id] != want {
			t.Errorf("%s handled %d times, want %d (all calls %v)", id, calls[id], want, calls)
		}
	}
	_, dl := deadLetterFor(t, b, subjects["bad"])
	if !strings.Contains(dl.Reason, "REQUIRED_FIELD_MISSING") || dl.Subject != subjects["bad"] {
		t.Fatalf("dead letter %+v, want bad's own reason", dl)
	}
}

func TestConsumeBatchWrongResultCountRetriesAll(t *testing.T) {
	t.Parallel()
	ns := startServer(t, "")
	b := newTestBus(t, ns, testBusConfig(), testStage, nil)
	spec := writerSpec(t)
	publishCommand(t, b, "a")
	publishCommand(t, b, "b")

	var mu sync.Mutex
	seen := map[string]int{}
	h := func(ctx context.Context, events []Event) []error {
		mu.Lock()
		defer mu.Unlock()
		first := false
		for _, e := range events {
			seen[e.Subject()]++
			first = first || seen[e.Subject()] == 1
		}
		if first {
			return nil // a broken handler: no results at all
		}
		return make([]error, len(events))
	}
	runConsumeBatch(t, b, spec, h, fastOpts())
	expectLag(t, b, spec, 0, 0)
	mu.Lock()
	defer mu.Unlock()
	if seen["a"] < 2 || seen["b"] < 2 {
		t.Fatalf("deliveries %v: a batch without results must be retried, not acked", seen)
	}
}

func TestConsumeBatchTrickleIsNotDelayed(t *testing.T) {
	t.Parallel()
	ns := startServer(t, "")
	b := newTestBus(t, ns, testBusConfig(), testStage, nil)
	spec := writerSpec(t)
	got := make(chan int, 16)
	h := func(ctx context.Context, events []Event) []error {
		got <- len(events)
		return make([]error, len(events))
	}
	opts := fastOpts()
	opts.Batch = 200
	opts.MaxWait = 3 * time.Second // a lone message must not wait for the batch to fill up
	runConsumeBatch(t, b, spec, h, opts)
	publishCommand(t, b, "one")
	select {
	case n := <-got:
		if n != 1 {
			t.Fatalf("batch of %d, want 1", n)
		}
	case <-time.After(2500 * time.Millisecond):
		t.Fatal("a single message waited for the batch to fill")
	}
	expectLag(t, b, spec, 0, 0)
}

// batchSizes is a BatchHandler that records the size of every batch it is handed and succeeds.
type batchSizes struct {
	mu    sync.Mutex
	sizes []int
}

func (s *batchSizes) handle(_ context.Context, events []Event) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes = append(s.sizes, len(events))
	return make([]error, len(events))
}

func (s *batchSizes) get() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...)
}

// backlog starts a server and a bus with n commands stored (subjects a0, a1, …) for pc-writer's durable,
// each marked as decided behind a backlog of behind records (0: unmarked).
func backlog(t *testing.T, n int, behind uint64) (*Bus, contracts.ConsumerSpec) {
	t.Helper()
	ns := startServer(t, "")
	b := newTestBus(t, ns, testBusConfig(), testStage, nil)
	for i := range n {
		publishCommandBehind(t, b, fmt.Sprint("a", i), behind)
	}
	return b, writerSpec(t)
}

// lingering starts a ConsumeBatch of 25 with a burst of 10 already stored (a stream's worth), marked as
// behind a backlog of behind records, with the given Linger, LingerStep and LingerLive, and returns the
// bus, the durable and the batches handled.
func lingering(t *testing.T, behind uint64, linger, step time.Duration, live bool) (*Bus, contracts.ConsumerSpec, *batchSizes) {
	t.Helper()
	b, spec := backlog(t, 10, behind)
	got := &batchSizes{}
	opts := fastOpts()
	opts.Batch = 25
	opts.Linger, opts.LingerStep, opts.LingerLive = linger, step, live
	runConsumeBatch(t, b, spec, got.handle, opts)
	return b, spec, got
}

// TestConsumeBatchLingersToFillBehindABacklog: a batch behind a backlog upstream (its commands marked)
// that holds a stream's worth of messages (LingerGrowth) waits for more instead of being handed on
// short, and is handed on once full; with LingerLive (an operator's opt-in) live traffic waits so too.
func TestConsumeBatchLingersToFillBehindABacklog(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		behind uint64
		live   bool
	}{{"marked behind a backlog", 500, false}, {"live traffic with LingerLive", 0, true}} {
		b, spec, got := lingering(t, tc.behind, time.Minute, time.Minute, tc.live) // only a full batch ends the wait here
		// The ten are in the writer's hands, waiting for the batch to fill: delivered, not handled.
		expectLag(t, b, spec, 0, 10)
		if s := got.get(); len(s) != 0 {
			t.Fatalf("%s: batches %v handed on before the batch was full", tc.name, s)
		}
		for i := range 15 {
			publishCommand(t, b, fmt.Sprint("b", i)) // unmarked: a backlog's tail, its marks faded
		}
		expectLag(t, b, spec, 0, 0)
		if s := got.get(); len(s) != 1 || s[0] != 25 {
			t.Fatalf("%s: batches %v, want one full batch of 25", tc.name, s)
		}
	}
}

// TestConsumeBatchLingersFromOneMarkedMessage: behind a backlog a batch waits from its first command,
// even one with nothing pending behind it: a writer keeping up with a backlog's flow holds only a few at
// each fetch, and handing those on would cost a call each.
func TestConsumeBatchLingersFromOneMarkedMessage(t *testing.T) {
	t.Parallel()
	b, spec := backlog(t, 1, 500)
	got := &batchSizes{}
	opts := fastOpts()
	opts.Batch = 5
	opts.Linger, opts.LingerStep = time.Minute, time.Minute // only a full batch ends the wait here
	runConsumeBatch(t, b, spec, got.handle, opts)
	expectLag(t, b, spec, 0, 1) // delivered, waiting for the batch to fill
	if s := got.get(); len(s) != 0 {
		t.Fatalf("batches %v: a marked command was handed on alone", s)
	}
	for i := range 4 {
		publishCommand(t, b, fmt.Sprint("b", i))
	}
	expectLag(t, b, spec, 0, 0)
	if s := got.get(); len(s) != 1 || s[0] != 5 {
		t.Fatalf("batches %v, want one full batch of 5", s)
	}
}

// TestConsumeBatchLiveTrafficDoesNotLinger: the same stream of messages with no backlog behind them
// (unmarked) is handed on with what is pending, however long Linger is: live traffic's latency is not
// traded for fewer calls.
func TestConsumeBatchLiveTrafficDoesNotLinger(t *testing.T) {
	t.Parallel()
	b, spec, got := lingering(t, 0, time.Hour, time.Hour, false)
	expectLag(t, b, spec, 0, 0)
	if s := got.get(); len(s) != 1 || s[0] != 10 {
		t.Fatalf("batches %v, want the ten handed on at once as one batch", s)
	}
}

// TestConsumeBatchBacklogTailLingersOnce: after a full batch of a backlog, the next batch (the backlog's
// tail, unmarked: the marks fade as it drains) still waits to fill; the batch after that, with no mark of
// its own, is live traffic again and is handed on at once.
func TestConsumeBatchBacklogTailLingersOnce(t *testing.T) {
	t.Parallel()
	b, spec := backlog(t, 10, 500)
	for i := range 5 {
		publishCommand(t, b, fmt.Sprint("t", i))
	}
	got := &batchSizes{}
	opts := fastOpts()
	opts.Batch = 10
	opts.Linger, opts.LingerStep = time.Minute, time.Minute
	runConsumeBatch(t, b, spec, got.handle, opts)
	expectLag(t, b, spec, 0, 5) // the marked ten handled as one full batch, the tail's five waiting to fill
	for i := range 5 {
		publishCommand(t, b, fmt.Sprint("u", i))
	}
	expectLag(t, b, spec, 0, 0)
	if s := got.get(); len(s) != 2 || s[0] != 10 || s[1] != 10 {
		t.Fatalf("batches %v, want the marked ten, then the tail filled to ten", s)
	}
	for i := range 5 {
		publishCommand(t, b, fmt.Sprint("v", i))
	}
	expectLag(t, b, spec, 0, 0)
	if s := got.get(); len(s) < 3 || s[2] == 10 {
		t.Fatalf("batches %v: live traffic after the tail waited to fill", s)
	}
}

// TestConsumeBatchLingerEndsWhenQuiet: a burst that stops is handed on after one quiet step, not after
// the whole Linger; a lone message is handed on at once however long Linger is.
func TestConsumeBatchLingerEndsWhenQuiet(t *testing.T) {
	t.Parallel()
	b, spec, got := lingering(t, 500, time.Hour, 50*time.Millisecond, false)
	expectLag(t, b, spec, 0, 0) // within its deadline, far below the Linger
	publishCommand(t, b, "lone")
	expectLag(t, b, spec, 0, 0)
	if s := got.get(); len(s) != 2 || s[0] != 10 || s[1] != 1 {
		t.Fatalf("batches %v, want the burst of 10, then the lone message alone", s)
	}
}

func TestNothingLater(t *testing.T) {
	t.Parallel()
	meta := func(consumer, delivered, pending uint64) *jetstream.MsgMetadata {
		return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Consumer: consumer, Stream: consumer + 100},
			NumDelivered: delivered, NumPending: pending}
	}
	for _, tc := range []struct {
		name  string
		metas []*jetstream.MsgMetadata
		want  []bool
	}{
		{"a lone first delivery", []*jetstream.MsgMetadata{meta(7, 1, 0)}, []bool{true}},
		{"a batch of consecutive first deliveries", []*jetstream.MsgMetadata{meta(3, 1, 2), meta(4, 1, 1), meta(5, 1, 0)}, []bool{true, true, true}},
		{"in any order", []*jetstream.MsgMetadata{meta(5, 1, 0), meta(3, 1, 2), meta(4, 1, 1)}, []bool{true, true, true}},
		{"a redelivery may have later messages delivered before it", []*jetstream.MsgMetadata{meta(8, 3, 0), meta(9, 1, 0)}, []bool{false, true}},
		{"more pending behind the batch", []*jetstream.MsgMetadata{meta(3, 1, 5), meta(4, 1, 4)}, []bool{false, false}},
		{"a delivery to another replica in between", []*jetstream.MsgMetadata{meta(3, 1, 1), meta(5, 1, 0)}, []bool{false, false}},
		{"none", nil, []bool{}},
	} {
		got := nothingLater(tc.metas)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestConsumeBatchTellsNothingLater: the handler learns, per event, whether the stream may hold a later
// message than its batch shows: not for a batch with more stored behind it, yes for the last batch of a
// backlog and for a lone message, and not for a redelivery.
func TestConsumeBatchTellsNothingLater(t *testing.T) {
	t.Parallel()
	b, spec := backlog(t, 3, 0)
	var mu sync.Mutex
	var seen []string
	retried := false
	h := func(ctx context.Context, events []Event) []error {
		mu.Lock()
		defer mu.Unlock()
		out := make([]error, len(events))
		later := NothingLater(ctx)
		for i, e := range events {
			seen = append(seen, fmt.Sprintf("%s:%v", e.Subject(), later[i]))
			if e.Subject() == "lone" && !retried {
				retried = true
				out[i] = errors.New("UNABLE_TO_LOCK_ROW")
			}
		}
		return out
	}
	opts := fastOpts()
	opts.Batch = 2
	runConsumeBatch(t, b, spec, h, opts)
	expectLag(t, b, spec, 0, 0)
	publishCommand(t, b, "lone")
	expectLag(t, b, spec, 0, 0)
	mu.Lock()
	defer mu.Unlock()
	want := "[a0:false a1:false a2:true lone:true lone:false]"
	if fmt.Sprint(seen) != want {
		t.Fatalf("seen %v, want %s", seen, want)
	}
}
