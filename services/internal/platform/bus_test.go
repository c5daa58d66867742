package platform

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/nats-io/nats.go/jetstream"
)

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
		st, err := b.JS.Stream(ctx, s.Name)
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
		cons, err := b.JS.Consumer(ctx, spec.Stream, spec.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", spec.Durable, err)
		}
		c := cons.CachedInfo().Config
		if c.AckPolicy != jetstream.AckExplicitPolicy || c.AckWait != cfg.AckWait || c.MaxDeliver != cfg.MaxDeliver ||
			c.MaxAckPending != 1000 || c.DeliverPolicy != jetstream.DeliverAllPolicy || len(c.FilterSubjects) != len(spec.FilterSubjects) {
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
	st, err := b2.JS.Stream(ctx, contracts.StreamObserved)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Fatalf("MaxAge after re-provision = %s, want 2h", got)
	}
	cons, err := b2.JS.Consumer(ctx, contracts.StreamRequested, contracts.ConsumerPCWriter)
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

func TestConnectEmbeddedAndExternal(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := testBusConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "js")
	owner, err := Connect(ctx, cfg, "runner", testLog(t, "runner"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if owner.Server == nil {
		t.Fatal("empty URL did not start an embedded server")
	}
	if err := owner.Check(ctx); err != nil {
		t.Fatal(err)
	}

	ext := cfg
	ext.URL = owner.Server.ClientURL()
	client, err := Connect(ctx, ext, contracts.StageAuditor, testLog(t, "auditor"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if client.Server != nil {
		t.Error("external connection reports an embedded server")
	}
	if got := client.Conn.Opts.Name; got != "cosell-auditor" {
		t.Errorf("connection name = %q", got)
	}
	if err := client.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	client.Close()

	ns := owner.Server
	owner.Close()
	if ns.Running() {
		t.Fatal("Close left the owned embedded server running")
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
