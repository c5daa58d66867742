package platform

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
)

// RunAsLeader runs fn only while this process holds the lease called name, so a poller runs once however
// many replicas of its stage are up. The lease is a key in contracts.BucketLeases, created with
// compare-and-set and renewed every LeaseTTL/3; if the holder dies, the key expires after LeaseTTL and a
// standby takes over. fn's context is cancelled when the lease is lost. On ctx's end the lease is released
// at once, so an orderly shutdown hands over without waiting for the TTL.
func (b *Bus) RunAsLeader(ctx context.Context, name string, fn func(context.Context) error) error {
	kv, err := b.KV(ctx, contracts.BucketLeases)
	if err != nil {
		return fmt.Errorf("lease %s: %w", name, err)
	}
	holder := leaseHolder(b.stage)
	every := contracts.LeaseTTL / 3
	log := b.log.With("lease", name, "holder", holder)
	for {
		rev, err := kv.Create(ctx, name, []byte(holder))
		if err == nil {
			log.Info("lease acquired: running")
			if err := b.lead(ctx, kv, name, holder, rev, every, fn); err != nil {
				return err
			}
			log.Info("lease released")
		} else if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
			log.Warn("lease: cannot read; will try again", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// lead runs fn while renewing the lease; it returns nil when the lease is lost or ctx ends, fn's error
// otherwise.
func (b *Bus) lead(ctx context.Context, kv jetstream.KeyValue, name, holder string, rev uint64, every time.Duration, fn func(context.Context) error) error {
	leadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(leadCtx) }()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			b.release(kv, name, rev)
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-tick.C:
			next, err := kv.Update(ctx, name, []byte(holder), rev)
			if err != nil {
				// Someone else holds it now (we stalled past the TTL) or NATS is away: stop, and compete again.
				b.log.Warn("lease lost: stopping", "lease", name, "err", err)
				cancel()
				<-done
				return nil
			}
			rev = next
		}
	}
}

func (b *Bus) release(kv jetstream.KeyValue, name string, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = kv.Delete(ctx, name, jetstream.LastRevision(rev))
}

func leaseHolder(stage string) string {
	host, _ := os.Hostname()
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s/%s/%d/%s", stage, host, os.Getpid(), hex.EncodeToString(r[:]))
}
