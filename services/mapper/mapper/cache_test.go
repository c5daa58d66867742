package mapper

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
)

// TestStaleCachedLinkCostsARetry: two mapper replicas, each with its links cache, decide on one referral's
// snapshots in turn. Each replica's cached link is stale after the other's decision, so its next store
// fails the compare-and-set and it decides again on the link read afresh: every snapshot is decided on
// once against the latest link (one link write each, none lost, none stale), and what a replica holds
// after its decision is exactly what the bucket holds, but for the outbox it published.
func TestStaleCachedLinkCostsARetry(t *testing.T) {
	bus := bustest.Start(t, bustest.Config(8, 2*time.Second), contracts.StageMapper, nil)
	ctx := context.Background()
	now := time.Now().UTC()
	a, b := mapperOn(t, bus, now), mapperOn(t, bus, now)
	if a.Cache == nil || b.Cache == nil {
		t.Fatal("the mapper runs with its links cache by default")
	}
	linkID := contracts.LinkIDFor(contracts.PartnerCenter, "R-cached")
	for n, svc := range []*Service{a, b, a, b, a} {
		if err := svc.HandleObserved(ctx, referralSeen(t, "R-cached", n+1)); err != nil {
			t.Fatal(err)
		}
		e, err := a.Links.Get(ctx, contracts.LinkKey(linkID))
		if err != nil {
			t.Fatal(err)
		}
		if e.Revision() != uint64(n+1) {
			t.Errorf("snapshot %d: link at revision %d, want %d (one write per decision)", n+1, e.Revision(), n+1)
		}
		var st stored
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			t.Fatal(err)
		}
		if st.PC.Seen.Tag != fmt.Sprintf("e%d", n+1) || len(st.Outbox) == 0 {
			t.Fatalf("snapshot %d: link seen at %q with %d outbox items", n+1, st.PC.Seen.Tag, len(st.Outbox))
		}
		// The decision: the outbox's last audit message, or the one its command carries (a create's).
		var d contracts.Decision
		last := st.Outbox[len(st.Outbox)-1]
		if last.Type != contracts.TypeDecision {
			var c struct {
				Decision *contracts.Decision `json:"decision"`
			}
			if err := json.Unmarshal(last.Data, &c); err != nil || c.Decision == nil {
				t.Fatalf("snapshot %d: command %s carries no decision (%v)", n+1, last.ID, err)
			}
			d = *c.Decision
		} else if err := json.Unmarshal(last.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.Kind == contracts.DecisionStale || d.Kind == contracts.DecisionNoChange {
			t.Errorf("snapshot %d decided %s (%s) against a stale link", n+1, d.Kind, d.Detail)
		}
		held := svc.Cache.get(linkID)
		if held == nil || held.rev != e.Revision() {
			t.Fatalf("snapshot %d: the deciding replica holds %+v, want revision %d", n+1, held, e.Revision())
		}
		// Its outbox published, the replica holds the link without it (only a handling that does not
		// know it was published reads it): the rest is what the bucket holds.
		if len(held.Outbox) != 0 {
			t.Errorf("snapshot %d: the cached link keeps its published outbox (%d items)", n+1, len(held.Outbox))
		}
		bare := st
		bare.Outbox, bare.Indexes = nil, nil
		got, _ := json.Marshal(held)
		want, _ := json.Marshal(bare)
		if string(got) != string(want) {
			t.Errorf("snapshot %d: the cached link differs from the stored one:\n%s\n%s", n+1, got, want)
		}
	}
	// A link deleted under the cache: the next decision's store fails, and the link is made again.
	if err := a.Links.Delete(ctx, contracts.LinkKey(linkID)); err != nil {
		t.Fatal(err)
	}
	if err := b.HandleObserved(ctx, referralSeen(t, "R-cached", 9)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Links.Get(ctx, contracts.LinkKey(linkID)); err != nil {
		t.Fatalf("after the delete: %v (want the link made again)", err)
	}
}

// TestLinkCacheBudget: the cache keeps the most recently used links within its budget, never replaces a
// held revision with an older one, and forgets a dropped link.
func TestLinkCacheBudget(t *testing.T) {
	c := newLinkCache(3 * (2*100 + 256))
	st := func(id string, rev uint64) *stored {
		s := &stored{rev: rev}
		s.ID = id
		return s
	}
	for _, id := range []string{"a", "b", "c"} {
		c.put(st(id, 1), 100)
	}
	c.get("a") // a is now the most recently used: b goes first
	c.put(st("d", 1), 100)
	if c.get("b") != nil || c.get("a") == nil || c.get("c") == nil || c.get("d") == nil {
		t.Fatalf("want b evicted, a, c, d held")
	}
	c.put(st("a", 5), 100)
	c.put(st("a", 4), 100) // the other consumer loop's older read comes in late
	if got := c.get("a"); got == nil || got.rev != 5 {
		t.Fatalf("a held at %+v, want revision 5", got)
	}
	c.drop("a")
	if c.get("a") != nil {
		t.Fatal("a dropped but still held")
	}
	c.put(st("huge", 1), 10_000)
	if c.get("huge") != nil || c.get("c") == nil {
		t.Fatal("a link larger than the budget must not be held, nor push the others out")
	}
	if c.used > c.budget {
		t.Fatalf("used %d of a %d budget", c.used, c.budget)
	}
}
