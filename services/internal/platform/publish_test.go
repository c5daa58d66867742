package platform

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/nats-io/nats.go/jetstream"
)

// outcomeFor is the event a test handler publishes for the command it handles: its id depends only on the
// command, as a stage's does, so a second handling publishes the same id.
func outcomeFor(t *testing.T, commandID string, n int) Outgoing {
	t.Helper()
	id := fmt.Sprintf("outcome/%s/%d", commandID, n)
	e, err := NewEvent(id, contracts.TypeReferralWritten, testStage, commandID,
		contracts.Outcome{CommandID: commandID, LinkID: "sf-" + commandID, System: contracts.PartnerCenter, Status: contracts.OutcomeWritten})
	if err != nil {
		t.Fatal(err)
	}
	return Outgoing{Subject: contracts.Subject(contracts.SubjectReferralWritten, "sf-"+commandID), Event: e}
}

// storedIDs lists the ids a subject filter of a stream holds, in stream order.
func storedIDs(t *testing.T, b *Bus, stream, filter string) []string {
	t.Helper()
	var ids []string
	if err := b.Read(context.Background(), stream, func(m Stored) error {
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		return nil
	}, Subjects(filter)); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestPublishAllStoresInOrderAndCountsDuplicates(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, m)
	ctx := context.Background()
	// More than one window's worth, all on one subject, so order and the in-flight bound both count.
	var out []Outgoing
	var want []string
	for i := range MaxPublishInFlight + 44 {
		o := outcomeFor(t, "c1", i)
		out = append(out, o)
		want = append(want, o.Event.ID())
	}
	dups, err := b.PublishAll(ctx, out)
	if err != nil || dups != 0 {
		t.Fatalf("PublishAll = %d duplicates, %v", dups, err)
	}
	got := storedIDs(t, b, contracts.StreamOutcomes, contracts.SubjectReferralWritten+".>")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored %d events, not the %d published in order:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	if n := counter(t, m.Published.WithLabelValues(testStage, contracts.TypeReferralWritten)); n != float64(len(out)) {
		t.Errorf("published counter = %v, want %d", n, len(out))
	}

	// The same events again (a retried handling): every one dropped by the server, none stored twice.
	dups, err = b.PublishAll(ctx, out[:10])
	if err != nil || dups != 10 {
		t.Fatalf("PublishAll again = %d duplicates, %v; want 10, nil", dups, err)
	}
	if n := len(storedIDs(t, b, contracts.StreamOutcomes, contracts.SubjectReferralWritten+".>")); n != len(want) {
		t.Errorf("stream holds %d events after the re-publish, want %d", n, len(want))
	}
}

func TestPublishAllReportsAnEventNoStreamTakes(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, nil)
	ok := outcomeFor(t, "c2", 0)
	lost := outcomeFor(t, "c2", 1)
	lost.Subject = "cosell.nowhere.c2" // no stream captures it: the server answers no responders
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := b.PublishAll(ctx, []Outgoing{ok, lost})
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("PublishAll = %v, want ErrNoStreamResponse naming the event", err)
	}
	if got := storedIDs(t, b, contracts.StreamOutcomes, contracts.SubjectReferralWritten+".>"); len(got) != 1 || got[0] != ok.Event.ID() {
		t.Errorf("stored %v, want the one event a stream takes", got)
	}
}

// TestPublishAsyncCrashBetweenPublishAndAck kills the consuming process after its handler's async publish
// was stored and before the handled message was acked: the message comes back to another replica, whose
// handling publishes the same event again, and the stream keeps exactly one copy; nothing is left unacked.
func TestPublishAsyncCrashBetweenPublishAndAck(t *testing.T) {
	t.Parallel()
	ns := startServer(t, "")
	cfg := testBusConfig()
	cfg.AckWait = time.Second // the crashed replica's message comes back after it
	first := newTestBus(t, ns, cfg, testStage, nil)
	observer := newTestBus(t, ns, cfg, "observer", nil) // stays up when the stage's connection is cut
	spec := writerSpec(t)
	publishCommand(t, first, "k1")

	crashed := make(chan struct{})
	cancel1, done1 := runConsume(t, first, spec, func(ctx context.Context, e Event) error {
		o := outcomeFor(t, e.ID(), 0)
		if err := first.PublishAsync(ctx, o.Subject, o.Event); err != nil {
			return err
		}
		// Wait until the publish is stored, then die before the consumer loop can ack: kill -9.
		testkit.Eventually(t, 10*time.Second, "the async publish stored", func() (bool, string) {
			n := len(storedIDs(t, observer, contracts.StreamOutcomes, contracts.SubjectReferralWritten+".>"))
			return n == 1, fmt.Sprintf("%d stored", n)
		})
		first.Abort()
		close(crashed)
		return nil
	}, fastOpts())
	<-crashed
	cancel1()
	waitDone(t, done1)

	second := newTestBus(t, ns, cfg, testStage, nil)
	var handled atomic.Int32
	runConsume(t, second, spec, func(ctx context.Context, e Event) error {
		handled.Add(1)
		o := outcomeFor(t, e.ID(), 0)
		return second.PublishAsync(ctx, o.Subject, o.Event)
	}, fastOpts())
	expectLag(t, second, spec, 0, 0)
	if handled.Load() < 1 {
		t.Fatal("the crashed replica's message never came back")
	}
	if got := storedIDs(t, second, contracts.StreamOutcomes, contracts.SubjectReferralWritten+".>"); len(got) != 1 {
		t.Errorf("stream holds %v, want exactly one copy of the outcome", got)
	}
}

// TestPublishAsyncFailureRetriesTheMessage: a publish no stream confirms fails the handled message
// (transient), so it is delivered again and only acked once its publishes are stored.
func TestPublishAsyncFailureRetriesTheMessage(t *testing.T) {
	t.Parallel()
	cfg := testBusConfig()
	cfg.MaxDeliver = 5
	b := newTestBus(t, startServer(t, ""), cfg, testStage, nil)
	spec := writerSpec(t)
	publishCommand(t, b, "f1")
	var calls atomic.Int32
	runConsume(t, b, spec, func(ctx context.Context, e Event) error {
		o := outcomeFor(t, e.ID(), 0)
		if calls.Add(1) == 1 {
			o.Subject = "cosell.nowhere.f1"
		}
		return b.PublishAsync(ctx, o.Subject, o.Event)
	}, fastOpts())
	expectLag(t, b, spec, 0, 0)
	if n := calls.Load(); n != 2 {
		t.Errorf("handled %d times, want 2 (the failed publish retried once)", n)
	}
	if got := storedIDs(t, b, contracts.StreamOutcomes, contracts.SubjectReferralWritten+".>"); len(got) != 1 {
		t.Errorf("stream holds %v, want the outcome once", got)
	}
}

func TestPublishAsyncOutsideAHandlerWaits(t *testing.T) {
	t.Parallel()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), testStage, nil)
	o := outcomeFor(t, "p1", 0)
	if err := b.PublishAsync(context.Background(), o.Subject, o.Event); err != nil {
		t.Fatal(err)
	}
	// Stored on return: no handler waits for it.
	if got := storedIDs(t, b, contracts.StreamOutcomes, contracts.SubjectReferralWritten+".>"); len(got) != 1 {
		t.Errorf("stream holds %v right after PublishAsync outside a handler, want the event", got)
	}
}

// BenchmarkPublish compares one round trip per event (Publish) with the acks in flight together
// (PublishAll) for a group of 8 events, the size of a mapper outbox or a small writer batch, over TCP as a
// stage process talks to its server.
func BenchmarkPublish(b *testing.B) {
	ns := startServer(b, "")
	ctx := context.Background()
	cfg := testBusConfig()
	cfg.URL = ns.ClientURL()
	bus, err := Connect(ctx, cfg, testStage, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	if err := bus.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	group := func(n int) []Outgoing {
		out := make([]Outgoing, 8)
		for i := range out {
			e, err := NewEvent(fmt.Sprintf("bench/%d/%d", n, i), contracts.TypeReferralWritten, testStage, "l",
				contracts.Outcome{CommandID: "c", LinkID: "l", Status: contracts.OutcomeWritten})
			if err != nil {
				b.Fatal(err)
			}
			out[i] = Outgoing{Subject: contracts.Subject(contracts.SubjectReferralWritten, fmt.Sprint(i)), Event: e}
		}
		return out
	}
	b.Run("Publish-8", func(b *testing.B) {
		for n := 0; b.Loop(); n++ {
			for _, o := range group(n) {
				if _, err := bus.Publish(ctx, o.Subject, o.Event); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("PublishAll-8", func(b *testing.B) {
		for n := 0; b.Loop(); n++ {
			if _, err := bus.PublishAll(ctx, group(n+1<<30)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
