package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ceilings are raw JetStream rates on the server the stages use, measured in the same run, 2 KiB messages,
// file store, with a Nats-Msg-Id on every publish (as the stages publish).
type ceilings struct {
	async, sync, fetch, stages float64 // msgs/s
	msgs                       int
}

func (c ceilings) report(r *report) {
	r.add("| raw JetStream, same server, same run, 2 KiB, file store, %d msgs: async publish (256 in flight) | %.0f msgs/s |", c.msgs, c.async)
	r.add("| … sync publish (one at a time) | %.0f msgs/s |", c.sync)
	r.add("| … durable fetch + ack (batches of 256) | %.0f msgs/s |", c.fetch)
	r.add("| … the stages' way: sync publish with, at once, fetch + double-ack | %.0f msgs/s |", c.stages)
}

// measureCeilings runs the four raw measurements on a scratch stream, on a connection of its own.
func measureCeilings(ctx context.Context, url string, msgs int) (ceilings, error) {
	c := ceilings{msgs: msgs}
	nc, err := nats.Connect(url, nats.Name("cosell-bench-ceiling"))
	if err != nil {
		return c, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		return c, err
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw.>"},
		Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute})
	if err != nil {
		return c, err
	}
	defer js.DeleteStream(context.WithoutCancel(ctx), "BENCH_RAW")
	payload := []byte(strings.Repeat("x", 2048))
	subject := func(i int) string { return fmt.Sprintf("bench.raw.%d", i%100) }
	round := 0
	id := func(i int) jetstream.PublishOpt { return jetstream.WithMsgID(fmt.Sprintf("raw-%d-%d", round, i)) }
	fresh := func() (jetstream.Consumer, error) {
		round++
		if err := s.Purge(ctx); err != nil {
			return nil, err
		}
		_ = s.DeleteConsumer(ctx, "bench")
		return s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy,
			MaxAckPending: 10000})
	}
	rate := func(start time.Time) float64 { return float64(msgs) / time.Since(start).Seconds() }

	// Async publish, bounded in flight; then fetch what it stored. A publish waits while 256 are in flight
	// (up to a minute, not the client's 200 ms, which a loaded machine exceeds and which failed the run).
	cons, err := fresh()
	if err != nil {
		return c, err
	}
	start := time.Now()
	for i := 0; i < msgs; i++ {
		if _, err := js.PublishAsync(subject(i), payload, id(i), jetstream.WithStallWait(time.Minute)); err != nil {
			return c, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return c, ctx.Err()
	}
	c.async = rate(start)
	start = time.Now()
	if err := drain(ctx, cons, msgs, func(m jetstream.Msg) error { return m.Ack() }); err != nil {
		return c, err
	}
	c.fetch = rate(start)

	// Sync publish.
	if _, err = fresh(); err != nil {
		return c, err
	}
	start = time.Now()
	for i := 0; i < msgs; i++ {
		if _, err := js.Publish(ctx, subject(i), payload, id(i)); err != nil {
			return c, err
		}
	}
	c.sync = rate(start)

	// The stages' way: sync publish while a consumer fetches and double-acks.
	if cons, err = fresh(); err != nil {
		return c, err
	}
	start = time.Now()
	var wg sync.WaitGroup
	var perr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < msgs; i++ {
			if _, err := js.Publish(ctx, subject(i), payload, id(i)); err != nil {
				perr = err
				return
			}
		}
	}()
	err = drain(ctx, cons, msgs, func(m jetstream.Msg) error { return m.DoubleAck(ctx) })
	wg.Wait()
	if err != nil {
		return c, err
	}
	if perr != nil {
		return c, perr
	}
	c.stages = rate(start)
	return c, nil
}

// drain fetches exactly msgs messages, asking each time for no more than are left, so the last fetch does
// not wait out its expiry for messages that will never come.
func drain(ctx context.Context, cons jetstream.Consumer, msgs int, ack func(jetstream.Msg) error) error {
	for got := 0; got < msgs; {
		batch, err := cons.Fetch(min(256, msgs-got), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			if err := ack(m); err != nil {
				return err
			}
			got++
		}
		if err := batch.Error(); err != nil && err != nats.ErrTimeout && err != jetstream.ErrNoMessages {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}
