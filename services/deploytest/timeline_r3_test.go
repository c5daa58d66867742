package deploytest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// On an R3 audit stream a direct get may be answered by a follower a moment behind its leader: the
// auditors' cached timelines, each connected to a different node and one of them consuming the durable,
// still hold every decision published on the link after every burst, in order, also once the stream's
// leader has been killed and another took over.
func TestR3TimelinesFromMemoryMissNothing(t *testing.T) {
	nodes := startCluster(t)
	ctx := context.Background()
	connect := func(i int, stage string) *platform.Bus {
		t.Helper()
		cfg := platform.BusConfig{URL: nodes[i].ClientURL(), Replicas: 3, MaxAge: time.Hour, DuplicateWindow: time.Minute,
			MaxDeliver: 5, AckWait: 30 * time.Second, Provision: true}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		b, err := platform.Connect(cctx, cfg, stage, testkit.Log(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		if err := b.Provision(cctx); err != nil {
			t.Fatal(err)
		}
		return b
	}
	var auditors []*auditor.Auditor
	for i := range nodes {
		a, err := auditor.New(ctx, connect(i, contracts.StageAuditor), nil)
		if err != nil {
			t.Fatal(err)
		}
		auditors = append(auditors, a)
	}
	cctx, cancel := context.WithCancel(ctx)
	consumed := make(chan error, 1)
	go func() {
		consumed <- auditors[0].Bus.Consume(cctx, contracts.ConsumerAuditor, auditors[0].Handle, platform.ConsumeOptions{Batch: 8})
	}()
	t.Cleanup(func() { cancel(); <-consumed })
	const links = 6
	n := 0
	published := map[string][]string{}
	publish := func(pub *platform.Bus) {
		for i := range 5 * links {
			n++
			link := fmt.Sprintf("pc-r3-%d", i%links)
			d := contracts.Decision{LinkID: link, Stage: contracts.StageMapper, Kind: contracts.DecisionApplied,
				Detail: fmt.Sprintf("decision %d", n), Cause: fmt.Sprintf("pc/%s/%d", link, n), At: time.Now().UTC()}
			e, err := platform.NewEvent(fmt.Sprintf("decision/%s/%d", link, n), contracts.TypeDecision, contracts.StageMapper, link, d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pub.Publish(ctx, contracts.Subject(contracts.SubjectAudit, link), e); err != nil {
				t.Fatal(err)
			}
			published[link] = append(published[link], d.Detail)
		}
	}
	// The reference is what was published: a read of the stream through an ordered consumer can itself be
	// a moment behind on R3 (the consumer may sit on a follower).
	check := func(phase string, serving []*auditor.Auditor) {
		t.Helper()
		for i := range links {
			link := fmt.Sprintf("pc-r3-%d", i)
			want := published[link]
			for j, a := range serving {
				got, err := a.Timeline(ctx, link)
				if err != nil {
					t.Fatalf("%s: auditor %d: Timeline(%s): %v", phase, j, link, err)
				}
				var details []string
				for _, d := range got {
					details = append(details, d.Detail)
				}
				if !slices.Equal(details, want) {
					t.Fatalf("%s: auditor %d: Timeline(%s) is %v, published %v", phase, j, link, details, want)
				}
			}
		}
	}
	pub := connect(0, contracts.StageMapper)
	for round := range 4 {
		publish(pub)
		check(fmt.Sprintf("round %d", round), auditors)
	}

	// Kill the audit stream's leader; the auditors on the two other nodes go on serving whole timelines.
	info, err := pub.StreamInfo(ctx, contracts.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	var alive []*auditor.Auditor
	var survivor *platform.Bus
	for i, ns := range nodes {
		if ns.Name() == info.Cluster.Leader {
			ns.Shutdown()
			ns.WaitForShutdown()
			continue
		}
		alive = append(alive, auditors[i])
		if survivor == nil {
			survivor = connect(i, contracts.StageMapper)
		}
	}
	if len(alive) != 2 {
		t.Fatalf("no node leads %s (leader %q)", contracts.StreamAudit, info.Cluster.Leader)
	}
	testkit.Eventually(t, time.Minute, "a new leader of the audit stream", func() (bool, string) {
		info, err := survivor.StreamInfo(ctx, contracts.StreamAudit)
		if err != nil {
			return false, err.Error()
		}
		return info.Cluster != nil && info.Cluster.Leader != "", "no leader"
	})
	for round := range 2 {
		publish(survivor)
		check(fmt.Sprintf("after the leader died, round %d", round), alive)
	}
}
