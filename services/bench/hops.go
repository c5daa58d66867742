package main

// Per-hop latency, derived from what the system already records; nothing is added to the stages:
//
//   - the source change: the snapshot's source version time (Partner Center's updatedDateTime, Salesforce's
//     SystemModstamp), as the command's cause version carries it;
//   - webhook received: pc-ingest's notification (COSELL_OBSERVED, cosell.pc.referral.notified.<id>)
//     carries its receivedAt and the change date it announces; the one whose change date is the snapshot's
//     version is that snapshot's webhook;
//   - stored: the stream's own timestamp of each message (the notification, the snapshot in COSELL_OBSERVED,
//     the command in COSELL_REQUESTED, the outcome in COSELL_OUTCOMES), read back after the phase with the
//     stream reader;
//   - fetched: when the server delivered the message to a stage's durable (pc-ingest-notified,
//     mapper-observed, the writer's). No event records it, so the bench asks the server: JetStream's
//     consumer ack sample (the $JS.EVENT.METRIC.CONSUMER.ACK advisory, SampleFrequency 100%, set on those
//     durables as each phase begins) holds the ack's time and ack_time, the time since the message was
//     delivered; delivered = ack time − ack_time. The server sends a sample only while someone listens, so
//     only the bench's own phases pay for it;
//   - written: the writer's outcome time (set once the external write returned).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
)

// sampledDurables are the durables whose deliveries the hops need.
var sampledDurables = []string{contracts.ConsumerPCIngestNotified, contracts.ConsumerMapperObserved,
	contracts.ConsumerSFWriter, contracts.ConsumerPCWriter}

// sampleAcks sets SampleFrequency 100% on the sampled durables. A stage that starts provisions its
// consumers again (and clears it), so each phase calls it as it begins.
func sampleAcks(ctx context.Context, js jetstream.JetStream) error {
	for _, durable := range sampledDurables {
		spec, _ := contracts.ConsumerFor(durable)
		cons, err := js.Consumer(ctx, spec.Stream, durable)
		if err != nil {
			return fmt.Errorf("ack sampling of %s: %w", durable, err)
		}
		cfg := cons.CachedInfo().Config
		if cfg.SampleFrequency == "100%" {
			continue
		}
		cfg.SampleFrequency = "100%"
		if _, err := js.UpdateConsumer(ctx, spec.Stream, cfg); err != nil {
			return fmt.Errorf("ack sampling of %s: %w", durable, err)
		}
	}
	return nil
}

type deliveryKey struct {
	durable string
	seq     uint64
}

// deliveryLog holds, per durable and stream sequence, when the server last delivered the message that was
// acknowledged (a redelivery replaces the earlier time: the sample is of the delivery that was acked).
type deliveryLog struct {
	sub *nats.Subscription
	mu  sync.Mutex
	at  map[deliveryKey]time.Time
}

// watchDeliveries listens to the sampled durables' ack samples until stop.
func (p *busProbe) watchDeliveries() (*deliveryLog, error) {
	l := &deliveryLog{at: map[deliveryKey]time.Time{}}
	sub, err := p.nc.Subscribe("$JS.EVENT.METRIC.CONSUMER.ACK.>", func(m *nats.Msg) {
		var e struct {
			Time      time.Time `json:"timestamp"`
			Consumer  string    `json:"consumer"`
			StreamSeq uint64    `json:"stream_seq"`
			AckTime   int64     `json:"ack_time"`
		}
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		l.mu.Lock()
		l.at[deliveryKey{e.Consumer, e.StreamSeq}] = e.Time.Add(-time.Duration(e.AckTime))
		l.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	// A sample lost to a slow subscriber would only leave a hop out; still, keep every one.
	_ = sub.SetPendingLimits(-1, -1)
	l.sub = sub
	return l, p.nc.Flush()
}

// stop ends the watch; what was logged stays readable.
func (l *deliveryLog) stop() {
	if l != nil && l.sub != nil {
		_ = l.sub.Unsubscribe()
	}
}

func (l *deliveryLog) delivered(durable string, seq uint64) (time.Time, bool) {
	if l == nil {
		return time.Time{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.at[deliveryKey{durable, seq}]
	return t, ok
}

// direction is one way through the pipeline: the snapshots observed on one side, the commands decided on
// them, the writer that carries them out and its outcomes.
type direction struct {
	observedRoot, commandRoot, writtenRoot string
	writer                                 string // the writer's durable
}

var (
	pcToSF = direction{contracts.SubjectReferralObserved, contracts.SubjectOpportunityRequested, contracts.SubjectOpportunityWritten, contracts.ConsumerSFWriter}
	sfToPC = direction{contracts.SubjectOpportunityObserved, contracts.SubjectReferralRequested, contracts.SubjectReferralWritten, contracts.ConsumerPCWriter}
)

// The points of a change's way, in order; a chain holds the time of each it passed (zero when not known).
const (
	ptChange        = iota // the source version time
	ptReceived             // pc-ingest received the webhook (Partner Center side only)
	ptNotifStored          // the notification stored
	ptNotifFetched         // delivered to pc-ingest's fetcher
	ptSnapStored           // the snapshot stored in COSELL_OBSERVED
	ptSnapFetched          // delivered to the mapper
	ptCmdStored            // the command stored in COSELL_REQUESTED: decided
	ptCmdFetched           // delivered to the writer
	ptWritten              // the writer's outcome time: the external write returned
	ptOutcomeStored        // the outcome stored in COSELL_OUTCOMES
	points
)

// hop is the span between two points.
type hop struct {
	from, to int
	name     string
}

// hops are the report's rows, in the order a change passes them (the last two sum the others up).
var hops = []hop{
	{ptChange, ptReceived, "source change → webhook received by pc-ingest (Partner Center's delivery)"},
	{ptReceived, ptNotifStored, "webhook received → notification stored"},
	{ptNotifStored, ptNotifFetched, "notification stored → fetched by pc-ingest's fetcher"},
	{ptNotifFetched, ptSnapStored, "fetched by pc-ingest → snapshot stored (its referral read)"},
	{ptChange, ptSnapStored, "source change → snapshot stored in COSELL_OBSERVED (the ingest in all)"},
	{ptSnapStored, ptSnapFetched, "snapshot stored → fetched by the mapper"},
	{ptSnapFetched, ptCmdStored, "fetched by the mapper → command stored in COSELL_REQUESTED (decided)"},
	{ptCmdStored, ptCmdFetched, "command stored → fetched by the writer"},
	{ptCmdFetched, ptWritten, "fetched by the writer → written (its outcome's time, after the external call)"},
	{ptWritten, ptOutcomeStored, "written → outcome stored in COSELL_OUTCOMES"},
	{ptChange, ptWritten, "end to end: source change → written"},
}

// hopTimes is one phase's samples of every hop.
type hopTimes struct {
	chains int // commands followed to a written outcome
	d      [][]time.Duration
	// written is, per entity, each followed snapshot's version and when its command was written, for the
	// latency of changes that never had a snapshot of their own (coverage).
	written map[string][]versionWritten
}

type versionWritten struct{ version, written time.Time }

type storedAt struct {
	seq    uint64
	stored time.Time
}

// followChanges joins, for the phase that began at since, every command the mapper decided on a snapshot
// with that snapshot (and its webhook), the writer's delivery and its written outcome.
func followChanges(ctx context.Context, js jetstream.JetStream, since time.Time, dir direction, log *deliveryLog) (hopTimes, error) {
	h := hopTimes{d: make([][]time.Duration, len(hops)), written: map[string][]versionWritten{}}
	type snap struct {
		storedAt
		entity  string
		version time.Time
	}
	snaps := map[string]snap{}
	type notice struct {
		storedAt
		received time.Time
	}
	notices := map[string]notice{} // by referral id and change date
	noticeKey := func(id string, at time.Time) string { return id + "@" + at.UTC().Format(time.RFC3339Nano) }
	err := readSince(ctx, js, contracts.StreamObserved, []string{dir.observedRoot + ".>", contracts.SubjectReferralNotified + ".>"}, since, func(m storedMsg) {
		if strings.HasPrefix(m.Subject, contracts.SubjectReferralNotified+".") {
			var n contracts.ReferralNotified
			if json.Unmarshal(m.Data, &n) == nil {
				// The first notification of a change is the one that led to its read.
				if _, dup := notices[noticeKey(n.ReferralID, n.ChangedAt)]; !dup {
					notices[noticeKey(n.ReferralID, n.ChangedAt)] = notice{storedAt{m.Seq, m.Time}, n.ReceivedAt}
				}
			}
			return
		}
		var o struct {
			Referral    struct{ ID string } `json:"referral"`
			Opportunity struct{ ID string } `json:"opportunity"`
			Version     contracts.Version   `json:"version"`
		}
		if json.Unmarshal(m.Data, &o) == nil {
			snaps[m.ID] = snap{storedAt{m.Seq, m.Time}, o.Referral.ID + o.Opportunity.ID, o.Version.At}
		}
	})
	if err != nil {
		return h, err
	}
	type command struct {
		storedAt
		cause string
	}
	commands := map[string]command{}
	decided := map[string]bool{} // snapshots whose first command is already taken
	if err := readSince(ctx, js, contracts.StreamRequested, []string{dir.commandRoot + ".>"}, since, func(m storedMsg) {
		var c struct {
			Cause string `json:"cause"`
		}
		if json.Unmarshal(m.Data, &c) == nil {
			// A snapshot's first command is its change's way; a second one (a status write-back) is not.
			if _, ok := snaps[c.Cause]; ok && !decided[c.Cause] {
				decided[c.Cause] = true
				commands[m.ID] = command{storedAt{m.Seq, m.Time}, c.Cause}
			}
		}
	}); err != nil {
		return h, err
	}
	err = readSince(ctx, js, contracts.StreamOutcomes, []string{dir.writtenRoot + ".>"}, since, func(m storedMsg) {
		var o contracts.Outcome
		if json.Unmarshal(m.Data, &o) != nil {
			return
		}
		c, ok := commands[o.CommandID]
		if !ok {
			return
		}
		delete(commands, o.CommandID) // the first written outcome of a command counts
		s := snaps[c.cause]
		var t [points]time.Time
		t[ptChange], t[ptSnapStored], t[ptCmdStored], t[ptWritten], t[ptOutcomeStored] = s.version, s.stored, c.stored, o.At, m.Time
		if n, ok := notices[noticeKey(s.entity, s.version)]; ok && n.stored.Before(s.stored) {
			t[ptReceived], t[ptNotifStored] = n.received, n.stored
			// The change's own notification led to the read only when it was fetched before the snapshot
			// was stored; otherwise a read for an earlier notification already returned this version (its
			// notification is then skipped as not newer), and the fetcher's hops are not on this change's way.
			if at, ok := log.delivered(contracts.ConsumerPCIngestNotified, n.seq); ok && !at.After(s.stored) {
				t[ptNotifFetched] = at
			}
		}
		t[ptSnapFetched], _ = log.delivered(contracts.ConsumerMapperObserved, s.seq)
		t[ptCmdFetched], _ = log.delivered(dir.writer, c.seq)
		h.chains++
		h.written[s.entity] = append(h.written[s.entity], versionWritten{s.version, o.At})
		for i, hp := range hops {
			if !t[hp.from].IsZero() && !t[hp.to].IsZero() {
				h.d[i] = append(h.d[i], t[hp.to].Sub(t[hp.from]))
			}
		}
	})
	return h, err
}

// endToEnd renders the end-to-end hop as the report's latency cell: "p50 / p99 / max (n writes)".
func (h hopTimes) endToEnd() string {
	d := h.d[len(hops)-1]
	if len(d) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("%s (%d writes)", quantiles(d), len(d))
}

// change is one change the bench made: the entity and the version time its system gave the change.
type change struct {
	entity string
	at     time.Time
}

// coverage is the latency of every change made, followed or not: from the change to the first write of a
// version at least as new (a change superseded before its snapshot was read reaches the other side with
// the newer value). unwritten counts changes no such write followed.
func (h hopTimes) coverage(made []change) (lat []time.Duration, unwritten int) {
	byEntity := map[string][]versionWritten{}
	for e, ws := range h.written {
		ws = append([]versionWritten(nil), ws...)
		sort.Slice(ws, func(i, j int) bool { return ws[i].version.Before(ws[j].version) })
		// From the newest back: each entry's written becomes the earliest write of it or any newer version.
		for i := len(ws) - 2; i >= 0; i-- {
			if ws[i+1].written.Before(ws[i].written) {
				ws[i].written = ws[i+1].written
			}
		}
		byEntity[e] = ws
	}
	for _, c := range made {
		ws := byEntity[c.entity]
		i := sort.Search(len(ws), func(i int) bool { return !ws[i].version.Before(c.at) })
		if i == len(ws) {
			unwritten++
			continue
		}
		lat = append(lat, ws[i].written.Sub(c.at))
	}
	return lat, unwritten
}

// quantiles renders p50 / p99 / max of d (sorted in place).
func quantiles(d []time.Duration) string {
	if len(d) == 0 {
		return "—"
	}
	return fmt.Sprintf("%s / %s / %s", short(quantile(d, 0.5)), short(quantile(d, 0.99)), short(quantile(d, 1)))
}

// short renders a duration to a precision that suits its size: 0.42ms, 3.1ms, 250ms, 1.25s.
func short(d time.Duration) string {
	switch a := max(d, -d); {
	case a < time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case a < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case a < 10*time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// latencies is the end-to-end latency (the command's cause version → the writer's outcome) of the commands
// published under cmdRoot since t0, as the report prints it.
func latencies(ctx context.Context, js jetstream.JetStream, since time.Time, cmdRoot, writtenRoot string) (string, error) {
	dir := pcToSF
	if cmdRoot == sfToPC.commandRoot {
		dir = sfToPC
	}
	if dir.writtenRoot != writtenRoot {
		return "", errors.New("latencies: commands and outcomes of different directions")
	}
	h, err := followChanges(ctx, js, since, dir, nil)
	return h.endToEnd(), err
}

// hopTable is the per-hop table: one column per measured phase.
type hopTable struct {
	names []string
	times []hopTimes
}

func (t *hopTable) add(name string, h hopTimes) {
	t.names = append(t.names, name)
	t.times = append(t.times, h)
}

// render prints the table: p50 / p99 / max of every hop in every phase ("—" where a hop is not on the
// phase's way, or no sample was had).
func (t *hopTable) render(r *report) {
	if len(t.names) == 0 {
		return
	}
	r.add("")
	r.add("Per hop, p50 / p99 / max (definitions in docs/benchmarks.md, \"Per-hop latency\"):")
	r.add("")
	r.add("| hop | %s |", strings.Join(t.names, " | "))
	r.add("|---|%s", strings.Repeat("---|", len(t.names)))
	for i, hp := range hops {
		cells := make([]string, len(t.times))
		for j, h := range t.times {
			cells[j] = quantiles(h.d[i])
		}
		r.add("| %s | %s |", hp.name, strings.Join(cells, " | "))
	}
	cells := make([]string, len(t.times))
	for j, h := range t.times {
		cells[j] = fmt.Sprintf("%d (%d in its sparsest hop)", h.chains, complete(h))
	}
	r.add("| changes followed to their written outcome | %s |", strings.Join(cells, " | "))
}

// complete is how many samples the sparsest hop on the phase's way has.
func complete(h hopTimes) int {
	n := -1
	for i := range hops {
		if l := len(h.d[i]); l > 0 && (n < 0 || l < n) {
			n = l
		}
	}
	return max(n, 0)
}
