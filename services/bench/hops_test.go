package main

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// benchBus is a real server with cosell's streams provisioned, a bus publishing to it and the bench's probe
// on its own connection.
func benchBus(t *testing.T) (*platform.Bus, *busProbe, context.Context) {
	t.Helper()
	ns := bustest.Server(t)
	bus := bustest.Bus(t, ns, bustest.Config(5, 30*time.Second), "bench-test", nil)
	probe, err := newBusProbe(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(probe.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return bus, probe, ctx
}

// A change followed through a real server: webhook, snapshot, command and outcome as the stages store
// them, each taken through its stage's durable, gives one sample of every hop, from the messages' own
// times and the server's ack samples; a command decided on something other than a snapshot, or a
// snapshot's second command, is not followed.
func TestFollowChangesJoinsEveryHop(t *testing.T) {
	bus, probe, ctx := benchBus(t)
	if err := sampleAcks(ctx, probe.js); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	log, err := probe.watchDeliveries()
	if err != nil {
		t.Fatal(err)
	}
	publish := func(root, id, typ, entity string, data any) {
		t.Helper()
		e, err := platform.NewEvent(id, typ, "bench-test", entity, data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.Publish(ctx, contracts.Subject(root, entity), e); err != nil {
			t.Fatal(err)
		}
	}
	take := func(durable string) {
		t.Helper()
		spec, _ := contracts.ConsumerFor(durable)
		cons, err := probe.js.Consumer(ctx, spec.Stream, durable)
		if err != nil {
			t.Fatal(err)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("%s: %v", durable, err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	changed := time.Now().UTC().Add(-time.Second).Truncate(100 * time.Nanosecond)
	publish(contracts.SubjectReferralNotified, "n-1", contracts.TypeReferralNotified, "R1",
		contracts.ReferralNotified{EventName: "referral-updated", ReferralID: "R1", ChangedAt: changed, ReceivedAt: changed.Add(3 * time.Millisecond)})
	take(contracts.ConsumerPCIngestNotified)
	var snap contracts.ReferralObserved
	snap.Referral.ID, snap.Version = "R1", contracts.Version{Tag: "e1", At: changed}
	publish(contracts.SubjectReferralObserved, "obs-1", contracts.TypeReferralObserved, "R1", snap)
	take(contracts.ConsumerMapperObserved)
	publish(contracts.SubjectOpportunityRequested, "cmd-1", contracts.TypeOpportunityRequested, "L1",
		contracts.OpportunityCommand{LinkID: "L1", Op: contracts.OpUpdate, Cause: "obs-1", CauseVersion: snap.Version})
	publish(contracts.SubjectOpportunityRequested, "cmd-2", contracts.TypeOpportunityRequested, "L1",
		contracts.OpportunityCommand{LinkID: "L1", Op: contracts.OpUpdate, Purpose: "status", Cause: "out-0"})
	publish(contracts.SubjectOpportunityRequested, "cmd-3", contracts.TypeOpportunityRequested, "L1",
		contracts.OpportunityCommand{LinkID: "L1", Op: contracts.OpUpdate, Purpose: "status", Cause: "obs-1"})
	take(contracts.ConsumerSFWriter)
	written := time.Now().UTC()
	for _, id := range []string{"cmd-1", "cmd-2", "cmd-3"} {
		publish(contracts.SubjectOpportunityWritten, "out-"+id, contracts.TypeOpportunityWritten, "L1",
			contracts.Outcome{CommandID: id, LinkID: "L1", System: contracts.Salesforce, Status: contracts.OutcomeWritten, At: written})
	}
	testkit.EventuallyTrue(t, 10*time.Second, "three ack samples", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return len(log.at) == 3
	})
	log.stop()

	h, err := followChanges(ctx, probe.js, since, pcToSF, log)
	if err != nil {
		t.Fatal(err)
	}
	if h.chains != 1 {
		t.Fatalf("followed %d changes, want 1 (one status command has no snapshot as its cause, the other is the snapshot's second)", h.chains)
	}
	for i, hp := range hops {
		if len(h.d[i]) != 1 {
			t.Fatalf("hop %q: %d samples, want 1", hp.name, len(h.d[i]))
		}
		if h.d[i][0] < 0 {
			t.Errorf("hop %q: %s, a negative span", hp.name, h.d[i][0])
		}
	}
	if got := h.d[0][0]; got != 3*time.Millisecond {
		t.Errorf("change → webhook received: %s, want the notification's 3ms", got)
	}
	if got, want := h.d[len(hops)-1][0], written.Sub(changed); got != want {
		t.Errorf("end to end: %s, want %s", got, want)
	}
	// The ingest hops add up to the ingest in all, the decision hops to the end to end.
	sumOf := func(from, to int) (d time.Duration) {
		for i := from; i <= to; i++ {
			d += h.d[i][0]
		}
		return d
	}
	if sumOf(0, 3) != h.d[4][0] {
		t.Errorf("webhook hops %s, ingest in all %s", sumOf(0, 3), h.d[4][0])
	}
	if sumOf(4, 8) != h.d[len(hops)-1][0] {
		t.Errorf("hops %s, end to end %s", sumOf(4, 8), h.d[len(hops)-1][0])
	}

	// Without ack samples the "fetched" points are unknown: their hops are left out, the others stay.
	h, err = followChanges(ctx, probe.js, since, pcToSF, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.chains != 1 || len(h.d[2]) != 0 || len(h.d[5]) != 0 || len(h.d[len(hops)-1]) != 1 {
		t.Fatalf("without samples: %d changes, %d/%d fetched samples, %d end to end", h.chains, len(h.d[2]), len(h.d[5]), len(h.d[len(hops)-1]))
	}
}

func TestMemorySlope(t *testing.T) {
	s := &memSeries{rss: map[string][]int64{}}
	var flat, growing []int64
	for i := 0; i < 7; i++ {
		s.at = append(s.at, time.Duration(i)*10*time.Second)
		flat = append(flat, 40<<20)
		growing = append(growing, int64(30<<20+i*(1<<20))) // 1 MiB per 10 s
	}
	if got := s.slope(flat, 0); got != 0 {
		t.Errorf("flat: %v MiB/min", got)
	}
	if got := s.slope(growing, 0); math.Abs(got-6) > 1e-9 {
		t.Errorf("growing: %v MiB/min, want 6", got)
	}
	if got := s.slope(growing, 3); math.Abs(got-6) > 1e-9 {
		t.Errorf("growing, second half: %v MiB/min, want 6", got)
	}
}

func TestQuantiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if got := quantiles(d); got != "50ms / 99ms / 100ms" {
		t.Errorf("quantiles: %q", got)
	}
	for in, want := range map[time.Duration]string{420 * time.Microsecond: "0.42ms", 3100 * time.Microsecond: "3.1ms",
		250 * time.Millisecond: "250ms", 12500 * time.Millisecond: "12.5s"} {
		if got := short(in); got != want {
			t.Errorf("short(%s) = %q, want %q", in, got, want)
		}
	}
}

// A change superseded before its snapshot was read counts until the first write of a newer version; a
// change after the last written version was never written.
func TestCoverageOfSupersededChanges(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	h := hopTimes{written: map[string][]versionWritten{
		// R1: version 10 written at 50, version 30 written at 40 (a batch wrote the newer one first).
		"R1": {{at(30), at(40)}, {at(10), at(50)}},
		"R2": {{at(5), at(25)}},
	}}
	lat, unwritten := h.coverage([]change{
		{"R1", at(10)}, // its own version: written at 50, but the newer one already at 40 → 30ms
		{"R1", at(20)}, // superseded, never read: the write of version 30 at 40 → 20ms
		{"R1", at(30)}, // → 10ms
		{"R2", at(5)},  // → 20ms
		{"R2", at(6)},  // after the last written version
		{"R3", at(1)},  // nothing written for it
	})
	want := []time.Duration{30 * time.Millisecond, 20 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}
	if len(lat) != len(want) || unwritten != 2 {
		t.Fatalf("latencies %v, unwritten %d; want %v and 2", lat, unwritten, want)
	}
	for i := range want {
		if lat[i] != want[i] {
			t.Errorf("change %d: %s, want %s", i, lat[i], want[i])
		}
	}
}
