package platform

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// A durable with several filters is given one that names the same messages of its stream (">" for the
// whole stream), so the server walks the stream instead of intersecting a subject tree per delivery; it
// still counts and gets exactly its messages, and one provisioned with the several filters before is
// updated in place and counts right too.
func TestProvisionGivesTheServerOneFilter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := startServer(t, "")
	b := newTestBus(t, ns, testBusConfig(), contracts.StageAuditor, nil)
	for _, c := range []struct {
		durable string
		want    string
	}{
		{contracts.ConsumerAuditorOutcomes, ">"},
		{contracts.ConsumerMapperOutcomes, ">"},
		{contracts.ConsumerMapperObserved, "cosell.*.*.observed.>"},
	} {
		spec, _ := contracts.ConsumerFor(c.durable)
		if got := serverFilters(spec); !slices.Equal(got, []string{c.want}) {
			t.Errorf("%s: server filters %v, want %s", c.durable, got, c.want)
		}
	}
	upgraded := []string{contracts.ConsumerAuditorOutcomes, contracts.ConsumerMapperObserved}
	for _, durable := range upgraded {
		spec, _ := contracts.ConsumerFor(durable)
		old := b.ConsumerConfig(spec)
		old.FilterSubjects = spec.FilterSubjects // as provisioned before
		if _, err := b.js.CreateOrUpdateConsumer(ctx, spec.Stream, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	for _, st := range contracts.Streams() {
		for _, subj := range st.Subjects {
			if _, err := b.js.Publish(ctx, strings.Replace(subj, ">", "o1", 1), []byte("{}")); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, durable := range append(upgraded, contracts.ConsumerMapperOutcomes) {
		spec, _ := contracts.ConsumerFor(durable)
		cons, err := b.js.Consumer(ctx, spec.Stream, durable)
		if err != nil {
			t.Fatal(err)
		}
		if c := cons.CachedInfo().Config; len(c.FilterSubjects) > 1 {
			t.Errorf("%s: the server has filters %v, want one", durable, c.FilterSubjects)
		}
		var want []string
		for _, f := range spec.FilterSubjects {
			want = append(want, strings.Replace(f, ">", "o1", 1))
		}
		testkit.Eventually(t, 10*time.Second, durable+" counts one message pending per filter", func() (bool, string) {
			info, err := cons.Info(ctx)
			if err != nil {
				return false, err.Error()
			}
			return info.NumPending == uint64(len(want)), fmt.Sprintf("%d pending", info.NumPending)
		})
		var got []string
		testkit.Eventually(t, 10*time.Second, durable+" gets one message per filter", func() (bool, string) {
			batch, err := cons.FetchNoWait(10)
			if err != nil {
				return false, err.Error()
			}
			for m := range batch.Messages() {
				got = append(got, m.Subject())
				_ = m.Ack()
			}
			return len(got) >= len(want), strings.Join(got, ", ")
		})
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s got %v, want %v", durable, got, want)
		}
	}
}

// serverFilters widens a durable's filters only where no other subject of its stream collides with the
// wide one: subjectsCollide answers as nats-server's own SubjectsCollide, on the cases it relies on and on
// random patterns.
func TestSubjectsCollideAsTheServerDoes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"cosell.*.*.observed.>", "cosell.pc.referral.notified.>", false},
		{"cosell.*.*.observed.>", "cosell.pc.referral.observed.>", true},
		{">", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.*.c", "a.b.c", true},
		{"a.b", "a.c", false},
	} {
		if got := server.SubjectsCollide(c.a, c.b); got != c.want {
			t.Errorf("SubjectsCollide(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := subjectsCollide(c.a, c.b); got != c.want {
			t.Errorf("subjectsCollide(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
	rng := rand.New(rand.NewPCG(16, 16))
	pattern := func() string {
		tokens := make([]string, 1+rng.IntN(4))
		for i := range tokens {
			tokens[i] = []string{"a", "b", "*", "cosell"}[rng.IntN(4)]
		}
		if rng.IntN(4) == 0 {
			tokens[len(tokens)-1] = ">"
		}
		return strings.Join(tokens, ".")
	}
	for range 5000 {
		a, b := pattern(), pattern()
		if got, want := subjectsCollide(a, b), server.SubjectsCollide(a, b); got != want {
			t.Fatalf("subjectsCollide(%q, %q) = %v, nats-server says %v", a, b, got, want)
		}
	}
}

func TestProvisionIsIdempotentAndUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := startServer(t, "")
	cfg := testBusConfig()
	b := newTestBus(t, ns, cfg, contracts.StageMapper, nil) // provisions once
	if err := b.Provision(ctx); err != nil {
		t.Fatalf("second Provision: %v", err)
	}

	for _, s := range contracts.Streams() {
		st, err := b.js.Stream(ctx, s.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", s.Name, err)
		}
		c := st.CachedInfo().Config
		if c.Retention != jetstream.LimitsPolicy || c.Storage != jetstream.FileStorage || c.MaxAge != cfg.MaxAge ||
			c.Duplicates != cfg.DuplicateWindow || !c.AllowDirect || c.Replicas != 1 {
			t.Errorf("stream %s config = %+v", s.Name, c)
		}
	}
	for _, spec := range contracts.Consumers() {
		cons, err := b.js.Consumer(ctx, spec.Stream, spec.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", spec.Durable, err)
		}
		c := cons.CachedInfo().Config
		if c.AckPolicy != jetstream.AckExplicitPolicy || c.AckWait != cfg.AckWait || c.MaxDeliver != cfg.MaxDeliver ||
			c.MaxAckPending != 1000 || c.DeliverPolicy != jetstream.DeliverAllPolicy || len(c.FilterSubjects) != len(serverFilters(spec)) {
			t.Errorf("consumer %s config = %+v", spec.Durable, c)
		}
	}
	for _, name := range contracts.Buckets() {
		kv, err := b.KV(ctx, name)
		if err != nil {
			t.Fatalf("bucket %s: %v", name, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantTTL, wantHistory := time.Duration(0), int64(5)
		switch name {
		case contracts.BucketApplied:
			wantTTL = cfg.MaxAge
		case contracts.BucketLeases:
			wantTTL, wantHistory = contracts.LeaseTTL, 1
		case contracts.BucketPCCredentials:
			wantHistory = 1
		}
		if st.History() != wantHistory || st.TTL() != wantTTL {
			t.Errorf("bucket %s: history %d ttl %s", name, st.History(), st.TTL())
		}
	}

	// A new MaxAge is applied to existing streams by the next Provision.
	cfg.MaxAge = 2 * time.Hour
	cfg.MaxDeliver = 4
	b2 := newTestBus(t, ns, cfg, contracts.StageMapper, nil)
	st, err := b2.js.Stream(ctx, contracts.StreamObserved)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Fatalf("MaxAge after re-provision = %s, want 2h", got)
	}
	cons, err := b2.js.Consumer(ctx, contracts.StreamRequested, contracts.ConsumerPCWriter)
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Config.MaxDeliver; got != 4 {
		t.Fatalf("MaxDeliver after re-provision = %d, want 4", got)
	}
	if _, err := b2.KV(ctx, "no_such_bucket"); err == nil {
		t.Fatal("KV of a missing bucket succeeded")
	}
}

// TestConnectInProcessAndExternal: a bus that owns its in-process server shuts it down on Close; one
// connected by URL reports no server and names its connection after the stage; no URL and no login file
// is refused at once (a stage's own server is natsembed.Connect's).
func TestConnectInProcessAndExternal(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := testBusConfig()
	ns := startServer(t, "")
	owner, err := ConnectServer(ctx, ns, cfg, "runner", testLog(t, "runner"), nil)
	if err != nil {
		t.Fatal(err)
	}
	owner.OwnServer()
	if owner.Server == nil {
		t.Fatal("in-process bus reports no server")
	}
	if err := owner.Check(ctx); err != nil {
		t.Fatal(err)
	}

	ext := cfg
	ext.URL = ns.ClientURL()
	client, err := Connect(ctx, ext, contracts.StageAuditor, testLog(t, "auditor"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if client.Server != nil {
		t.Error("external connection reports an embedded server")
	}
	if got := client.conn.Opts.Name; got != "cosell-auditor" {
		t.Errorf("connection name = %q", got)
	}
	if err := client.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	client.Close()

	owner.Close()
	if ns.Running() {
		t.Fatal("Close left the owned embedded server running")
	}
	if _, err := Connect(ctx, cfg, "x", nil, nil); !errors.Is(err, ErrNoServer) {
		t.Errorf("Connect with no URL and no login file = %v, want ErrNoServer", err)
	}

	// An unreachable URL is retried until ctx ends.
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	bad := cfg
	bad.URL = "nats://127.0.0.1:1"
	if _, err := Connect(short, bad, "x", nil, nil); err == nil {
		t.Fatal("connect to a closed port succeeded")
	}
}

// TestBusStreamOperations covers the bus's methods for looking at and operating streams and durables,
// which stand in for raw JetStream access.
func TestBusStreamOperations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newTestBus(t, startServer(t, ""), testBusConfig(), contracts.StageAuditor, nil)
	seqs := publishAudit(t, b, "ops", 3)
	subj := contracts.Subject(contracts.SubjectAudit, "ops")

	last, err := b.LastMsg(ctx, contracts.StreamAudit, subj)
	if err != nil || last.Seq != seqs[2] || last.Subject != subj || last.Time.IsZero() {
		t.Fatalf("LastMsg = %+v, %v; want seq %d", last, err, seqs[2])
	}
	first, err := b.GetMsg(ctx, contracts.StreamAudit, seqs[0])
	if err != nil || first.Seq != seqs[0] {
		t.Fatalf("GetMsg = %+v, %v", first, err)
	}
	if e, err := first.Event(); err != nil || e.Type() != contracts.TypeDecision {
		t.Fatalf("stored event %v, %v", e, err)
	}
	if err := b.DeleteMsg(ctx, contracts.StreamAudit, seqs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetMsg(ctx, contracts.StreamAudit, seqs[0]); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("GetMsg of a deleted message: %v, want ErrMsgNotFound", err)
	}
	info, err := b.StreamInfo(ctx, contracts.StreamAudit)
	if err != nil || info.State.Msgs != 2 {
		t.Fatalf("StreamInfo = %+v, %v; want 2 messages", info, err)
	}
	if err := b.Purge(ctx, contracts.StreamAudit); err != nil {
		t.Fatal(err)
	}
	if info, err := b.StreamInfo(ctx, contracts.StreamAudit); err != nil || info.State.Msgs != 0 {
		t.Fatalf("after Purge: %+v, %v", info, err)
	}
	if _, err := b.StreamInfo(ctx, "NO_SUCH_STREAM"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("StreamInfo of a missing stream: %v", err)
	}

	// The auditor's durable: every decision pending, then consumed, then rewound for a replay.
	again := publishAudit(t, b, "ops", 2)
	if ok, err := b.CaughtUp(ctx, contracts.ConsumerAuditor); ok || err != nil {
		t.Fatalf("CaughtUp = %v, %v with two decisions just stored", ok, err)
	}
	expectLag(t, b, mustConsumer(t, contracts.ConsumerAuditor), 2, 0)
	var handled atomic.Int32
	runConsume(t, b, mustConsumer(t, contracts.ConsumerAuditor), func(context.Context, Event) error {
		handled.Add(1)
		return nil
	}, fastOpts())
	expectLag(t, b, mustConsumer(t, contracts.ConsumerAuditor), 0, 0)
	if ok, err := b.CaughtUp(ctx, contracts.ConsumerAuditor); !ok || err != nil {
		t.Fatalf("CaughtUp = %v, %v once both are handled", ok, err)
	}
	ci, err := b.ConsumerInfo(ctx, contracts.ConsumerAuditor)
	if err != nil || ci.Delivered.Consumer != 2 || ci.Config.Durable != contracts.ConsumerAuditor {
		t.Fatalf("ConsumerInfo = %+v, %v", ci, err)
	}
	if err := b.ResetConsumer(ctx, contracts.ConsumerAuditor, again[0]); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyNil(t, 5*time.Second, "condition", func() error {
		if n := handled.Load(); n != 4 {
			return errorf("%d deliveries after the rewind, want both decisions handled again", n)
		}
		return nil
	})
	for _, err := range []error{
		func() error { _, err := b.ConsumerInfo(ctx, "nope"); return err }(),
		b.ResetConsumer(ctx, "nope", 1),
		func() error { _, _, err := b.Lag(ctx, "nope"); return err }(),
	} {
		if !errors.Is(err, ErrUnknownConsumer) {
			t.Errorf("unknown durable: %v, want ErrUnknownConsumer", err)
		}
	}

	// Abort cuts the connection as a killed process's is cut.
	b.Abort()
	if err := b.Check(ctx); err == nil {
		t.Fatal("Check passed after Abort")
	}
}

func mustConsumer(t *testing.T, durable string) contracts.ConsumerSpec {
	t.Helper()
	c, ok := contracts.ConsumerFor(durable)
	if !ok {
		t.Fatalf("no durable %s in contracts", durable)
	}
	return c
}
