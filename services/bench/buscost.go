package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
)

// busProbe reads the server's own counters: the account's JetStream API request total, every stream's
// (and so every KV bucket's) last sequence, every durable's delivered sequence. It has a connection of its
// own, so the requests it makes itself are known (its connection's published messages) and subtracted.
type busProbe struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func newBusProbe(url string) (*busProbe, error) {
	nc, err := nats.Connect(url, nats.Name("cosell-bench-probe"))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &busProbe{nc: nc, js: js}, nil
}

func (p *busProbe) Close() { p.nc.Close() }

// busState is one reading of the server's counters.
type busState struct {
	api        uint64            // the account's JetStream API requests (the server's count)
	own        uint64            // requests the probe itself had sent when it read api
	stored     map[string]uint64 // stream (KV_<bucket> for a bucket) → last sequence
	deliveries map[string]uint64 // durable → deliveries (its consumer sequence, redeliveries included)
}

func (p *busProbe) read(ctx context.Context) (busState, error) {
	s := busState{stored: map[string]uint64{}, deliveries: map[string]uint64{}}
	s.own = p.nc.Stats().OutMsgs
	ai, err := p.js.AccountInfo(ctx)
	if err != nil {
		return s, err
	}
	s.api = ai.API.Total
	streams := p.js.ListStreams(ctx)
	for info := range streams.Info() {
		s.stored[info.Config.Name] = info.State.LastSeq
	}
	if err := streams.Err(); err != nil {
		return s, err
	}
	for _, c := range contracts.Consumers() {
		cons, err := p.js.Consumer(ctx, c.Stream, c.Durable)
		if err != nil {
			return s, fmt.Errorf("%s: %w", c.Durable, err)
		}
		ci := cons.CachedInfo() // js.Consumer fetched it
		s.deliveries[c.Durable] = ci.Delivered.Consumer
	}
	return s, nil
}

// busCost is what the pipeline spent on the bus between two readings.
type busCost struct {
	api        uint64
	stored     map[string]uint64
	deliveries map[string]uint64
}

func (a busState) to(b busState) busCost {
	c := busCost{stored: map[string]uint64{}, deliveries: map[string]uint64{}}
	// The probe's own requests between the two readings were all JetStream API requests.
	own := b.own - a.own
	if b.api-a.api > own {
		c.api = b.api - a.api - own
	}
	for k, v := range b.stored {
		if d := v - a.stored[k]; d > 0 && !strings.HasPrefix(k, "BENCH_") {
			c.stored[k] = d
		}
	}
	for k, v := range b.deliveries {
		if d := v - a.deliveries[k]; d > 0 {
			c.deliveries[k] = d
		}
	}
	return c
}

func sum(m map[string]uint64) uint64 {
	var t uint64
	for _, v := range m {
		t += v
	}
	return t
}

// perChange renders m divided by n, largest first: "KV_cosell_links 4.0, COSELL_AUDIT 3.1".
func perChange(m map[string]uint64, n int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(m[k])/float64(n)))
	}
	return strings.Join(parts, ", ")
}

// report adds the per-change bus rows of one phase.
func (c busCost) report(r *report, n int, what string) {
	if n == 0 {
		return
	}
	f := float64(n)
	r.add("| … per %s: stored publishes (every stream and KV bucket) | %.1f: %s |", what, float64(sum(c.stored))/f, perChange(c.stored, n))
	r.add("| … per %s: durable deliveries | %.1f: %s |", what, float64(sum(c.deliveries))/f, perChange(c.deliveries, n))
	r.add("| … per %s: JetStream API requests (the server's account count, the bench's own subtracted) | %.1f |", what, float64(c.api)/f)
}
