package auditor

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/auditsummary"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// streamTimeline is a link's timeline read the way it was before the cache: the link's whole audit
// subject and its whole outcome subjects through ordered consumers, each ce-id once, merged in time order
// (audit first on a tie, else stream order). The cache must always equal it.
func streamTimeline(ctx context.Context, t *testing.T, bus *platform.Bus, link string) []contracts.Decision {
	t.Helper()
	var out []contracts.Decision
	seen := map[string]bool{}
	read := func(stream, subject string, decode func([]byte) []contracts.Decision) {
		err := bus.Read(ctx, stream, func(m platform.Stored) error {
			if id := m.Header.Get("ce-id"); id != "" {
				if seen[id] {
					return nil
				}
				seen[id] = true
			}
			out = append(out, decode(m.Data)...)
			return nil
		}, platform.Subjects(subject))
		if err != nil {
			t.Fatal(err)
		}
	}
	read(contracts.StreamAudit, contracts.Subject(contracts.SubjectAudit, link), func(b []byte) []contracts.Decision {
		var d contracts.Decision
		if json.Unmarshal(b, &d) != nil {
			return nil
		}
		return []contracts.Decision{d}
	})
	audited := len(out)
	read(contracts.StreamOutcomes, contracts.OutcomeSubjects(link), func(b []byte) []contracts.Decision {
		var o contracts.Outcome
		if json.Unmarshal(b, &o) != nil {
			return nil
		}
		return auditsummary.OfOutcome(o)
	})
	src := func(i int) int { return map[bool]int{true: 0, false: 1}[i < audited] }
	idx := make([]int, len(out))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool {
		a, b := out[idx[i]], out[idx[j]]
		if !a.At.Equal(b.At) {
			return a.At.Before(b.At)
		}
		return src(idx[i]) < src(idx[j])
	})
	var sorted []contracts.Decision
	for _, i := range idx {
		sorted = append(sorted, out[i])
	}
	return sorted
}

func sameTimeline(a, b []contracts.Decision) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// consumeAudit runs a's handlers on the auditor's durables of the audit and outcomes streams (as Run
// does) until the test ends.
func consumeAudit(t *testing.T, bus *platform.Bus, a *Auditor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	opts := platform.ConsumeOptions{Batch: 16, Concurrency: 4}
	go func() { done <- bus.Consume(ctx, contracts.ConsumerAuditor, a.Handle, opts) }()
	go func() { done <- bus.Consume(ctx, contracts.ConsumerAuditorOutcomes, a.HandleOutcome, opts) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("auditor durable: %v", err)
			}
		}
	})
}

// TestTimelineCacheEqualsStream (property): for random sequences of decisions and writers' outcomes over
// many links — some stored twice under one ce-id (a replay outside the duplicate window), some unreadable,
// outcomes dated out of order with the decisions — every timeline served from memory equals the link's
// audit and outcome subjects read whole from the streams and merged in time order, whichever auditor
// serves it: two replicas sharing the durable (each is fed only part of the decisions), one with a
// budget so small it keeps evicting, one whose cache caps links at a few decisions, an auditor that does
// not consume at all (the CLI's), and one started afresh midway (a restart).
func TestTimelineCacheEqualsStream(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	ctx := context.Background()
	ns := bustest.Server(t)
	cfg := bustest.Config(5, 30*time.Second)
	pub := bustest.Bus(t, ns, cfg, contracts.StageMapper, nil)
	auditor := func(o Options, consume bool) *Auditor {
		bus := bustest.Bus(t, ns, cfg, contracts.StageAuditor, nil)
		a, err := New(ctx, bus, nil)
		if err != nil {
			t.Fatal(err)
		}
		a.Options = o
		if consume {
			consumeAudit(t, bus, a)
		}
		return a
	}
	replicaA := auditor(Options{}, true)
	replicaB := auditor(Options{TimelineBytes: 24 << 10}, true) // evicts all the time
	replicaC := auditor(Options{TimelineEntries: 6}, true)      // keeps short timelines only
	cli := auditor(Options{}, false)
	servers := []*Auditor{replicaA, replicaB, replicaC, cli}

	const links, rounds = 40, 12
	ids := make([]string, links)
	for i := range ids {
		ids[i] = fmt.Sprintf("pc-%02d", i)
	}
	kinds := []string{contracts.DecisionCreated, contracts.DecisionApplied, contracts.DecisionWritten, contracts.DecisionEcho,
		contracts.DecisionFailed, contracts.DecisionHeld}
	var n int
	publish := func(link string) {
		n++
		d := contracts.Decision{LinkID: link, Stage: contracts.StageMapper, Kind: kinds[rng.IntN(len(kinds))],
			Detail: fmt.Sprintf("decision %d", n), Cause: fmt.Sprintf("pc/%s/%d", link, n), Fields: []string{"dealValue"},
			Changes: []contracts.FieldChange{{Field: "dealValue", Before: float64(n), After: float64(n + 1), From: contracts.PartnerCenter}},
			At:      time.Unix(1_800_000_000+int64(n), 0).UTC()}
		e, err := platform.NewEvent(fmt.Sprintf("decision/%s/%d", link, n), contracts.TypeDecision, contracts.StageMapper, link, d)
		if err != nil {
			t.Fatal(err)
		}
		subject := contracts.Subject(contracts.SubjectAudit, link)
		if rng.IntN(3) == 0 {
			// A writer's outcome instead: the command's decision it carried, what the write did, dated up
			// to 3 s before the decision just published (another stage's clock, a slow writer).
			out := contracts.Outcome{CommandID: fmt.Sprintf("cmd/sf/%s/%d", link, n), LinkID: link, System: contracts.Salesforce,
				Op: contracts.OpUpdate, Status: contracts.OutcomeWritten, At: d.At.Add(-time.Duration(rng.IntN(4)) * time.Second)}
			if rng.IntN(2) == 0 {
				out.System, out.Status, out.CommandID = contracts.PartnerCenter, contracts.OutcomeFailed, fmt.Sprintf("cmd/pc/%s/%d", link, n)
				out.Error = &contracts.Failure{Code: "invalid", Message: "refused", Permanent: true}
			}
			carried := d
			carried.Kind, carried.Target, carried.At = contracts.DecisionApplied, out.System, out.At.Add(-time.Second)
			out.Decision = &carried
			root, typ := contracts.SubjectOpportunityWritten, contracts.TypeOpportunityWritten
			if out.System == contracts.PartnerCenter {
				root, typ = contracts.SubjectReferralFailed, contracts.TypeReferralFailed
			}
			if e, err = platform.NewEvent(contracts.EventID("outcome", out.CommandID, out.Status), typ, contracts.StageSFWriter, link, out); err != nil {
				t.Fatal(err)
			}
			subject = contracts.Subject(root, link)
		}
		if _, err := pub.Publish(ctx, subject, e); err != nil {
			t.Fatal(err)
		}
		switch rng.IntN(12) {
		case 0: // the same decision stored again: same ce-id, a new Nats-Msg-Id
			m, err := platform.EncodeMsg(subject, e)
			if err != nil {
				t.Fatal(err)
			}
			m.Header.Set(jetstream.MsgIDHeader, "again/"+e.ID())
			if _, err := pub.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
		case 1: // an unreadable record
			m := nats.NewMsg(subject)
			m.Header.Set("ce-id", fmt.Sprintf("junk/%d", n))
			m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("junk/%d", n))
			m.Data = []byte("{not json")
			if _, err := pub.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(round int, a *Auditor, name, link string) {
		t.Helper()
		got, err := a.Timeline(ctx, link)
		if err != nil {
			t.Fatalf("round %d, %s: Timeline(%s): %v", round, name, link, err)
		}
		if want := streamTimeline(ctx, t, pub, link); !sameTimeline(got, want) {
			t.Fatalf("round %d, %s: Timeline(%s) has %d decisions, the stream %d (seed %d)", round, name, link, len(got), len(want), seed)
		}
	}
	names := []string{"replica A", "replica B (tiny budget)", "replica C (short timelines)", "a non-consuming auditor", "a restarted auditor"}
	for round := range rounds {
		if round == rounds/2 {
			servers = append(servers, auditor(Options{}, true)) // a restart: a new process, an empty cache
		}
		hot := ids[:1+rng.IntN(links)] // some links get most of the traffic
		for range 20 + rng.IntN(60) {
			publish(hot[rng.IntN(len(hot))])
		}
		// Read while the durable is still feeding the replicas: whatever part they were handed, the
		// timeline is the stream's.
		for range 30 {
			i := rng.IntN(len(servers))
			check(round, servers[i], names[i], ids[rng.IntN(links)])
		}
	}
	for _, link := range ids {
		for i, a := range servers {
			check(rounds, a, names[i], link)
		}
	}
	if u := replicaB.timelines().usage(); u.bytes > 24<<10 {
		t.Errorf("the tiny budget holds %d bytes, over its 24 KiB", u.bytes)
	}
	if u := replicaA.timelines().usage(); u.links == 0 || u.decisions == 0 {
		t.Errorf("replica A caches nothing: %+v", u)
	}
	// Served from memory means no consumer: only the durables are on the audit and outcomes streams.
	for stream, want := range map[string]int{contracts.StreamAudit: 1, contracts.StreamOutcomes: 2} {
		info, err := pub.StreamInfo(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers != want {
			t.Errorf("%s has %d consumers after the reads, want the durables only (%d)", stream, info.State.Consumers, want)
		}
	}
}

// TestTimelineCacheServesFromMemory: once a replica's durable has handed it a link's decisions, its
// timeline costs one request that finds nothing new and decodes nothing again; and a burst of links over
// the budget evicts the least recently used, keeping the estimate within the budget and close to the heap
// the timelines really hold. Not parallel: the heap is measured, and other tests running at once would
// move it.
func TestTimelineCacheServesFromMemory(t *testing.T) {
	ctx := context.Background()
	ns := bustest.Server(t)
	cfg := bustest.Config(5, 30*time.Second)
	bus := bustest.Bus(t, ns, cfg, contracts.StageAuditor, nil)
	a, err := New(ctx, bus, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Options = Options{TimelineBytes: 2 << 20}
	consumeAudit(t, bus, a)
	const links, per = 400, 12
	publishDecisions(t, bus, links, per)
	testkit.Eventually(t, time.Minute, "the durable hands the auditor every decision", func() (bool, string) {
		ok, err := bus.CaughtUp(ctx, contracts.ConsumerAuditor)
		return ok && err == nil, fmt.Sprintf("caught up %v, %v", ok, err)
	})
	tl := a.timelines()
	decoded := func() float64 { return testutil.ToFloat64(tl.stats.decoded) }
	fromMemory := func() float64 { return testutil.ToFloat64(tl.stats.reads.WithLabelValues("memory")) }

	// The latest links fit in the budget: their first timeline decodes nothing (the durable did), the
	// second reads nothing.
	last := fmt.Sprintf("sf-%03d", links-1)
	if got, err := a.Timeline(ctx, last); err != nil || len(got) != per {
		t.Fatalf("Timeline(%s): %d decisions, %v", last, len(got), err)
	}
	if d := decoded(); d != 0 {
		t.Errorf("the first timeline of a fed link decoded %v messages again, want 0", d)
	}
	m0 := fromMemory()
	if got, err := a.Timeline(ctx, last); err != nil || len(got) != per {
		t.Fatalf("Timeline(%s) again: %d decisions, %v", last, len(got), err)
	}
	if m := fromMemory(); m != m0+1 {
		t.Errorf("the second timeline was not served from memory (memory reads %v → %v)", m0, m)
	}

	// Every link read once: the budget keeps the most recent ones only, within the budget.
	for i := range links {
		if _, err := a.Timeline(ctx, fmt.Sprintf("sf-%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	u := tl.usage()
	if u.bytes > 2<<20 {
		t.Errorf("the cache estimates %d bytes, over its 2 MiB budget", u.bytes)
	}
	if u.links >= links {
		t.Errorf("all %d links cached in a 2 MiB budget: nothing was evicted", u.links)
	}

	// An auditor that keeps every link (read from the stream, not fed) holds them all, and its estimate never
	// counts less than the decisions' encoded size. How close the estimate is to the heap it really holds is
	// measured in BenchmarkTimelineCacheHeap, not asserted here: this process also runs the NATS server, whose
	// allocations move the heap by more than the timelines hold while a test runs beside it.
	reader, err := New(ctx, bus, nil)
	if err != nil {
		t.Fatal(err)
	}
	reader.Options = Options{TimelineBytes: 64 << 20}
	encoded := 0
	for i := range links {
		tl, err := reader.Timeline(ctx, fmt.Sprintf("sf-%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range tl {
			b, _ := json.Marshal(d)
			encoded += len(b)
		}
	}
	ru := reader.timelines().usage()
	t.Logf("%d links, %d decisions: %d bytes estimated (%d per decision), %d bytes encoded", ru.links, ru.decisions, ru.bytes, ru.bytes/max(ru.decisions, 1), encoded)
	if ru.links != links || ru.decisions != links*per {
		t.Errorf("a 64 MiB cache holds %d links, %d decisions; want all %d, %d", ru.links, ru.decisions, links, links*per)
	}
	if ru.bytes < encoded {
		t.Errorf("the cache estimates %d bytes for decisions whose JSON alone is %d bytes", ru.bytes, encoded)
	}
	if _, err := a.Timeline(ctx, "sf-000"); err != nil { // evicted long ago: read again, complete
		t.Fatal(err)
	}
	if got, err := a.Timeline(ctx, "sf-000"); err != nil || len(got) != per {
		t.Fatalf("Timeline(sf-000) after eviction: %d decisions, %v", len(got), err)
	}
}

// BenchmarkTimelineCacheHeap measures how the cache's estimate compares with the heap its timelines hold:
// an auditor that reads 400 links of 12 decisions each into its cache, the heap measured around it (GC'd
// before and after). Reports est-B/decision and heap-B/decision.
//
//	go test -run XXX -bench TimelineCacheHeap -benchtime=3x ./auditor/auditor/
func BenchmarkTimelineCacheHeap(b *testing.B) {
	ctx := context.Background()
	ns := bustest.Server(b)
	bus := bustest.Bus(b, ns, bustest.Config(5, 30*time.Second), contracts.StageAuditor, nil)
	const links, per = 400, 12
	publishDecisions(b, bus, links, per)
	var est, heap float64
	for b.Loop() {
		reader, err := New(ctx, bus, nil)
		if err != nil {
			b.Fatal(err)
		}
		reader.Options = Options{TimelineBytes: 64 << 20}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range links {
			if _, err := reader.Timeline(ctx, fmt.Sprintf("sf-%03d", i)); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		u := reader.timelines().usage()
		est += float64(u.bytes) / float64(max(u.decisions, 1))
		heap += (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(max(u.decisions, 1))
		runtime.KeepAlive(reader)
	}
	b.ReportMetric(est/float64(b.N), "est-B/decision")
	b.ReportMetric(heap/float64(b.N), "heap-B/decision")
}

// publishDecisions publishes per applied decisions for each of links links (sf-000, sf-001, …) to the
// audit stream.
func publishDecisions(tb testing.TB, bus *platform.Bus, links, per int) {
	tb.Helper()
	ctx := context.Background()
	for i := range links {
		link := fmt.Sprintf("sf-%03d", i)
		for j := range per {
			d := contracts.Decision{LinkID: link, Stage: contracts.StageMapper, Kind: contracts.DecisionApplied, Target: contracts.PartnerCenter,
				Fields:  []string{"dealValue", "closeDate"},
				Changes: []contracts.FieldChange{{Field: "dealValue", Before: 1000.0, After: float64(1000 + j), From: contracts.Salesforce}},
				Detail:  "sending the changed fields", Cause: fmt.Sprintf("sf/%s/2026-12-01T10:00:%02d.000Z", link, j), At: time.Now().UTC()}
			e, err := platform.NewEvent(fmt.Sprintf("decision/%s/%d", link, j), contracts.TypeDecision, contracts.StageMapper, link, d)
			if err != nil {
				tb.Fatal(err)
			}
			if _, err := bus.Publish(ctx, contracts.Subject(contracts.SubjectAudit, link), e); err != nil {
				tb.Fatal(err)
			}
		}
	}
}
