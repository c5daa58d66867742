package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// An Audit write-back counts as unchanged only when sf-writer wrote it with the text the link's previous
// written command carried (a change's own command or an earlier write-back); a failed write, another link's
// text or a link's first text does not.
func TestUnchangedAuditWritesComparesWithTheLastWrittenText(t *testing.T) {
	bus, probe, ctx := benchBus(t)
	since := time.Now()
	n := 0
	write := func(link, purpose, text, status string) {
		t.Helper()
		n++
		id := "cmd-" + string(rune('a'+n))
		cmd := contracts.OpportunityCommand{LinkID: link, Op: contracts.OpUpdate, Purpose: purpose, Fields: map[string]any{sf.FieldAudit: text}}
		for _, m := range []struct {
			root, id, typ string
			data          any
		}{
			{contracts.SubjectOpportunityRequested, id, contracts.TypeOpportunityRequested, cmd},
			{contracts.SubjectOpportunityWritten, "out-" + id, contracts.TypeOpportunityWritten,
				contracts.Outcome{CommandID: id, LinkID: link, System: contracts.Salesforce, Purpose: purpose, Status: status, At: time.Now()}},
		} {
			e, err := platform.NewEvent(m.id, m.typ, "bench-test", link, m.data)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bus.Publish(ctx, contracts.Subject(m.root, link), e); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("L1", contracts.PurposeAudit, "first", contracts.OutcomeWritten)  // the link's first text: changed
	write("L1", "sync", "second", contracts.OutcomeWritten)                 // a change carrying the text
	write("L1", contracts.PurposeAudit, "second", contracts.OutcomeWritten) // unchanged
	write("L2", contracts.PurposeAudit, "second", contracts.OutcomeWritten) // another link's first: changed
	write("L1", contracts.PurposeAudit, "third", contracts.OutcomeFailed)   // not written
	write("L1", contracts.PurposeAudit, "second", contracts.OutcomeWritten) // still unchanged (third failed)
	unchanged, audits, err := unchangedAuditWrites(ctx, probe.js, since)
	if err != nil {
		t.Fatal(err)
	}
	if unchanged != 2 || audits != 4 {
		t.Errorf("unchanged %d of %d written Audit write-backs, want 2 of 4", unchanged, audits)
	}
}

// The nats-server's heap is read from net/http/pprof as cosell nats --pprof serves it: the MemStats block
// of the debug=1 profile, and a profile `go tool pprof` reads.
func TestNATSHeapReadsTheRuntimeProfiles(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	h := &natsHeap{addr: strings.TrimPrefix(srv.URL, "http://"), dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := h.stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.inuse <= 0 || s.nextGC <= 0 || s.idle < s.released {
		t.Errorf("heap stats %+v: want in use and a GC target, idle at least what was released", s)
	}
	path, err := h.profile(ctx, "now")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("profile %s: %v", path, err)
	}
	out, err := top(ctx, path, "", 5)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "flat%") {
		t.Errorf("go tool pprof -top printed no table:\n%s", out)
	}
	if live, err := liveHeap(ctx, path); err != nil || live <= 0 {
		t.Errorf("live heap %.2f MiB, %v: want the profile's in-use total", live, err)
	}
}

// The targets table is computed from the phases' figures: a run with pc-writer's limit off has one SF → PC
// backlog (its creates counted once), a target is met or not by its own threshold, a latency target names
// the parts met, and a target whose phase did not run says so.
func TestTargetsTableFromTheRunsFigures(t *testing.T) {
	_, probe, ctx := benchBus(t)
	b := &bench{js: probe.js, r: &report{}}
	pc := func(calls map[string]int) snapshot { return snapshot{pc: calls, sf: map[string]int{}} }
	sfRun := &sfBacklogRun{n: 100, rate: 350, limitOff: true, m: measured{
		from: pc(map[string]int{}), to: pc(map[string]int{"referrals.create": 100, "token": 1})}}
	e2e := make([]time.Duration, 100)
	for i := range e2e {
		e2e[i] = time.Duration(3+i) * time.Millisecond // p50 52 ms (the 50th of 100), p99 101 ms, max 102 ms
	}
	h := hopTimes{d: make([][]time.Duration, len(hops))}
	h.d[len(hops)-1] = e2e
	b.fig = figures{
		sfBacklog: sfRun, sfBacklogOff: sfRun,
		pcBacklog: &backlogRun{n: 100, rate: 650, m: measured{from: snapshot{sf: map[string]int{}}, to: snapshot{sf: map[string]int{
			"query": 1, "composite": 1, sfemu.CompositeWritesCount: 1, "composite.collections.create": 1, "composite.collections.upsert": 1}}}},
		steady: []steadyRun{{rate: 100, made: 100, d: time.Second, h: h, mem: &memSeries{}, m: measured{
			bus:  busCost{stored: map[string]uint64{"COSELL_AUDIT": 100, "KV_" + contracts.BucketLinks: 200, "COSELL_OBSERVED": 600}, deliveries: map[string]uint64{"sf-writer": 400}},
			from: pc(map[string]int{}), to: pc(map[string]int{"referrals.get": 100})}}},
		replayed: true, start: time.Now(),
	}
	if err := b.renderTargets(ctx, options{rate: 100, rateHigh: 500}); err != nil {
		t.Fatal(err)
	}
	table := strings.Join(b.r.lines, "\n")
	for _, want := range []string{
		"| ≤ 8 stored publishes per change on the steady path | 9.0 (steady 100/s)", "not met |",
		"| ≤ 2 link writes per change on the steady path | 2.00 (steady 100/s) | met |",
		"| ≤ 5 durable deliveries per change | 4.0 (steady 100/s): sf-writer 4.00 | met |",
		"52ms / 101ms / 102ms (100 writes", "| not met (max met) |",
		"| 500 changes/s: p99 ≤ 200 ms | — | not measured: no steady run at 500/s",
		"| PC → SF backlog ≥ 600 referrals/s | 650.0 referrals/s (backlog of 100) | met |",
		"| SF → PC backlog with the Partner Center limit off ≥ 300/s | 350.0 opportunities/s (backlog of 100) | met |",
		"1.00 per create (100 creates (calls: referrals.create 100)); 1.00 per change", "referrals.get 100) | met |",
		"| Salesforce calls per 1,000 changes on a backlog ≤ 10 (writes) | 10.0 writes per 1,000 on the PC → SF backlog of 100 (calls: composite.writes 1); reads beside them 10.0, all calls 20.0 (calls: ",
		"| no Audit write for an unchanged summary | 0 of 0 Audit write-backs", "| nats-server memory flat over a 10-minute steady run | — | not shown",
		"| a full replay of every stream costs zero external writes | Salesforce 0, Partner Center 0 | met |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("targets table lacks %q:\n%s", want, table)
		}
	}
}

// The Salesforce row counts writes as Salesforce counts calls: a Composite that writes is one write
// whatever it holds (its subrequests none), a read-only Composite, queries and the token call no write.
func TestSFWriteCallsCountsCompositesOnce(t *testing.T) {
	from := snapshot{sf: map[string]int{"query": 3, "collections.upsert": 1}}
	to := snapshot{sf: map[string]int{"query": 8, "collections.upsert": 2, "collections.create": 1,
		"composite": 4, sfemu.CompositeWritesCount: 3, "composite.collections.create": 3, "composite.collections.upsert": 3,
		"composite.query": 1, "token": 2, "sobjects.update": 1, "sobjects.get": 5}}
	if got := sfWriteCalls(from, to); got != 6 { // 3 writing composites, 1 upsert, 1 create, 1 sObject update
		t.Errorf("write calls %d, want 6", got)
	}
	if all := to.sfAPI() - from.sfAPI(); all != 17 { // + 5 queries, 1 read-only composite, 5 sObject reads
		t.Errorf("all calls %d, want 17", all)
	}
}

// The Salesforce row judges both backlogs: the PC → SF one (a stream to sf-writer) and sf-writer's own
// (every command waiting when it starts), and says which one meets the target.
func TestSFCallsRowJudgesBothBacklogs(t *testing.T) {
	_, probe, ctx := benchBus(t)
	sfCalls := func(calls map[string]int) snapshot { return snapshot{pc: map[string]int{}, sf: calls} }
	for _, c := range []struct {
		stream, own int // writing Composites per 100 referrals
		want        string
	}{
		{1, 1, "| met |"},
		{3, 1, "| not met (met on sf-writer's own backlog, not on the PC → SF stream) |"},
		{1, 3, "| not met (met on the PC → SF backlog, not on sf-writer's own) |"},
		{3, 3, "| not met |"},
	} {
		b := &bench{js: probe.js, r: &report{}}
		b.fig = figures{
			pcBacklog: &backlogRun{n: 100, m: measured{from: sfCalls(map[string]int{}),
				to: sfCalls(map[string]int{"composite": c.stream, sfemu.CompositeWritesCount: c.stream})}},
			writerBacklog: &writerBacklogRun{n: 100, from: sfCalls(map[string]int{"describe": 1}),
				to: sfCalls(map[string]int{"describe": 3, "query": 2, "composite": c.own, sfemu.CompositeWritesCount: c.own})},
			start: time.Now(),
		}
		if err := b.renderTargets(ctx, options{rate: 100}); err != nil {
			t.Fatal(err)
		}
		var line string
		for _, l := range b.r.lines {
			if strings.HasPrefix(l, "| Salesforce calls per 1,000 changes on a backlog") {
				line = l
			}
		}
		own := fmt.Sprintf("; %.1f writes per 1,000 on sf-writer's own backlog of 100 (all calls %.1f ", float64(10*c.own), float64(10*c.own+40))
		for _, want := range []string{own, c.want} {
			if !strings.Contains(line, want) || (want == "| not met |" && !strings.HasSuffix(line, want)) {
				t.Errorf("stream %d, own %d: the Salesforce row lacks %q:\n%s", c.stream, c.own, want, line)
			}
		}
	}
}
