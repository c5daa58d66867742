package platform

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/nats-io/nats.go/jetstream"
)

// kvHistory is how many revisions of each KV key are kept: enough to see how a link got where it is.
const kvHistory = 5

// maxAckPending bounds in-flight messages per durable across every replica of a stage.
const maxAckPending = 1000

// Provision creates or updates every stream, durable consumer and KV bucket named in contracts to the
// configured settings; running it again (any stage, any replica) is harmless.
func (b *Bus) Provision(ctx context.Context) error {
	for _, s := range contracts.Streams() {
		if _, err := b.js.CreateOrUpdateStream(ctx, b.StreamConfig(s)); err != nil {
			return fmt.Errorf("provision stream %s: %w", s.Name, err)
		}
	}
	for _, c := range contracts.Consumers() {
		if _, err := b.js.CreateOrUpdateConsumer(ctx, c.Stream, b.ConsumerConfig(c)); err != nil {
			return fmt.Errorf("provision consumer %s/%s: %w", c.Stream, c.Durable, err)
		}
	}
	for _, name := range contracts.Buckets() {
		kvc := jetstream.KeyValueConfig{
			Bucket:   name,
			History:  kvHistory,
			Storage:  jetstream.FileStorage,
			Replicas: b.replicas(),
		}
		switch name {
		case contracts.BucketApplied:
			kvc.TTL = b.cfg.MaxAge
		case contracts.BucketLeases:
			kvc.TTL, kvc.History = contracts.LeaseTTL, 1
		case contracts.BucketPCCredentials:
			kvc.History = 1 // no trail of superseded refresh tokens
		}
		kv, err := b.js.CreateOrUpdateKeyValue(ctx, kvc)
		if err != nil {
			return fmt.Errorf("provision bucket %s: %w", name, err)
		}
		b.kv.put(name, kv)
	}
	b.log.Info("provisioned", "streams", len(contracts.Streams()), "consumers", len(contracts.Consumers()),
		"buckets", len(contracts.Buckets()))
	return nil
}

// StreamConfig is the configuration Provision applies to one contracts stream.
func (b *Bus) StreamConfig(s contracts.StreamSpec) jetstream.StreamConfig {
	perSubject := int64(-1)
	if s.PerSubjectHistory > 0 {
		perSubject = s.PerSubjectHistory
	}
	return jetstream.StreamConfig{
		Name:              s.Name,
		Subjects:          s.Subjects,
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          b.replicas(),
		MaxAge:            b.cfg.MaxAge,
		Duplicates:        b.cfg.DuplicateWindow,
		MaxMsgsPerSubject: perSubject,
		AllowDirect:       true,
	}
}

// ConsumerConfig is the configuration Provision applies to one contracts durable.
func (b *Bus) ConsumerConfig(c contracts.ConsumerSpec) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.Durable,
		FilterSubjects: serverFilters(c),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        b.cfg.AckWait,
		MaxDeliver:     b.cfg.MaxDeliver,
		MaxAckPending:  maxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// serverFilters is the one filter the server is given for a durable whose several filters one subject
// can name without naming any other of its stream's subjects: ">" for mapper-outcomes and auditor-outcomes
// (their four filters are COSELL_OUTCOMES' whole subject list), "cosell.*.*.observed.>" for mapper-observed
// (two of COSELL_OBSERVED's three). With several filters the server intersects each message block's subject
// tree with them for every message it hands out; BenchmarkDurableFilters measured 730 µs per delivery of a
// lagging durable that way against 8–9 µs with one filter, and a profile of nats-server at 500 changes/s had
// 50–60 % of its CPU there. (">" rather than no filter: nats-server 2.15 counts a durable updated from
// several filters to none as 0 pending until it restarts.)
func serverFilters(c contracts.ConsumerSpec) []string {
	if len(c.FilterSubjects) < 2 {
		return c.FilterSubjects
	}
	var stream []string
	for _, s := range contracts.Streams() {
		if s.Name == c.Stream {
			stream = s.Subjects
		}
	}
	others := slices.DeleteFunc(slices.Clone(stream), func(s string) bool { return slices.Contains(c.FilterSubjects, s) })
	if len(others) == 0 {
		return []string{">"}
	}
	one := strings.Split(c.FilterSubjects[0], ".")
	for _, f := range c.FilterSubjects[1:] {
		t := strings.Split(f, ".")
		if len(t) != len(one) {
			return c.FilterSubjects
		}
		for i := range t {
			if t[i] != one[i] {
				one[i] = "*"
			}
		}
	}
	// Every stored message matches one of the stream's subjects: one that overlaps none of the others can
	// only match what the filters match.
	wide := strings.Join(one, ".")
	for _, o := range others {
		if subjectsCollide(wide, o) {
			return c.FilterSubjects
		}
	}
	return []string{wide}
}

// subjectsCollide reports whether one subject could match both NATS subject patterns a and b, as
// nats-server's server.SubjectsCollide does (TestSubjectsCollideAsTheServerDoes holds the two equal): the
// stages do not link the server for it.
func subjectsCollide(a, b string) bool {
	ta, tb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(ta) && i < len(tb); i++ {
		if ta[i] == ">" || tb[i] == ">" {
			return true
		}
		if ta[i] != "*" && tb[i] != "*" && ta[i] != tb[i] {
			return false
		}
	}
	return len(ta) == len(tb)
}

func (b *Bus) replicas() int {
	if b.cfg.Replicas < 1 {
		return 1
	}
	return b.cfg.Replicas
}

// KV returns a cached handle to a bucket (provisioned or not by this process).
func (b *Bus) KV(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	kv, err := b.kv.get(bucket, func() (jetstream.KeyValue, error) { return b.js.KeyValue(ctx, bucket) })
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", bucket, err)
	}
	return kv, nil
}
