package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
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
