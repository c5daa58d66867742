package platform

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cosell-dev/cosell/contracts"
)

// TestFollowKVSeesPutsInOrderBySync: a follower on one connection applies, in the order written, every put
// another connection made under its keys before Sync returns; other keys are not passed on, a delete or purge as such.
func TestFollowKVSeesPutsInOrderBySync(t *testing.T) {
	t.Parallel()
	ns := startServer(t, "")
	follower := newTestBus(t, ns, testBusConfig(), "pc-ingest", nil)
	writer := newTestBus(t, ns, testBusConfig(), "pc-writer", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var seen []string
	f, err := follower.FollowKV(ctx, contracts.BucketApplied, "pc-create.>", func(key string, value []byte) {
		mu.Lock()
		if value == nil {
			seen = append(seen, key+" deleted")
		} else {
			seen = append(seen, key+"="+string(value))
		}
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := writer.KV(ctx, contracts.BucketApplied)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 50 {
		key := fmt.Sprintf("pc-create.opp%d", i%7)
		if _, err := kv.Put(ctx, key, fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%s=v%d", key, i))
		if _, err := kv.Put(ctx, fmt.Sprintf("cmd.other%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := kv.Delete(ctx, "pc-create.opp1"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "pc-create.opp2"); err != nil {
		t.Fatal(err)
	}
	want = append(want, "pc-create.opp1 deleted", "pc-create.opp2 deleted")
	// A put through the follower's own connection after all of them: once the follower has seen it, the
	// connection has handed over everything before it.
	own, err := follower.KV(ctx, contracts.BucketApplied)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.Put(ctx, "pc-create.last", []byte("end")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "pc-create.last=end")
	if err := f.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, want) {
		t.Errorf("applied\n%v\nwant\n%v", seen, want)
	}
}
