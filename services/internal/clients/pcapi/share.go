package pcapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// RateShare makes a stage's Partner Center rate (pc-writer's COSELL_PC_WRITE_RATE, pc-ingest's
// COSELL_PC_READ_RATE) the tenant's rate however many replicas of the stage run: each replica paces its own
// calls at the rate divided by the replicas alive. Partner Center throttles per tenant and publishes no
// quota, so the operator's number is what the tenant gets, not that number per replica. The replicas know
// each other from their presence keys in the leases bucket (<stage>.<host>-<random>, one per replica, put
// every LeaseTTL/3, gone LeaseTTL after the last put), followed as they are written: a replica that starts
// announces itself and the others answer at once, so the shares change within a round trip; a replica that
// dies stops renewing and its share is given back after LeaseTTL. Between a replica's start and the others'
// answer it may pace at a larger share; no replica ever paces faster than the rate.
type RateShare struct {
	stage       string
	lim         *TenantLimiter
	rate        float64
	burst       int
	id          string
	kv          jetstream.KeyValue
	follow      *platform.KVFollower
	log         *slog.Logger
	renewEvery  time.Duration
	aliveWithin time.Duration

	mu     sync.Mutex
	seen   map[string]time.Time // other replicas, by presence key, last heard
	answer chan struct{}        // a new replica was heard: announce this one again now
}

// NewRateShare paces lim at rate/N (bursts of burst/N) for the N live replicas of the bus's stage; Run
// announces this one.
func NewRateShare(ctx context.Context, bus *platform.Bus, lim *TenantLimiter, rate float64, burst int, log *slog.Logger) (*RateShare, error) {
	stage := bus.Stage()
	kv, err := bus.KV(ctx, contracts.BucketLeases)
	if err != nil {
		return nil, fmt.Errorf("%s rate share: %w", stage, err)
	}
	prefix := stage + "."
	s := &RateShare{stage: stage, lim: lim, rate: rate, burst: burst, id: prefix + replicaID(), kv: kv, log: log,
		renewEvery: contracts.LeaseTTL / 3, aliveWithin: contracts.LeaseTTL,
		seen: map[string]time.Time{}, answer: make(chan struct{}, 1)}
	if s.follow, err = bus.FollowKV(ctx, contracts.BucketLeases, prefix+">", s.heard); err != nil {
		return nil, err
	}
	return s, nil
}

// replicaID names this process among the replicas: host name and a random suffix (a restarted pod is new).
func replicaID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return contracts.Token(host) + "-" + hex.EncodeToString(b)
}

// heard takes one presence put (or delete) of any replica, this one's included.
func (s *RateShare) heard(key string, value []byte) {
	if key == s.id {
		return
	}
	s.mu.Lock()
	_, known := s.seen[key]
	if value == nil {
		delete(s.seen, key)
	} else {
		s.seen[key] = time.Now()
	}
	s.applyLocked()
	s.mu.Unlock()
	if value != nil && !known {
		select {
		case s.answer <- struct{}{}:
		default:
		}
	}
}

// applyLocked sets the limiter to this replica's share. Callers hold s.mu.
func (s *RateShare) applyLocked() {
	now := time.Now()
	for k, at := range s.seen {
		if now.Sub(at) > s.aliveWithin {
			delete(s.seen, k)
		}
	}
	n := float64(1 + len(s.seen))
	share := s.rate / n
	if s.lim.Rate() != share {
		s.log.Info("replicas share the tenant's Partner Center rate", "stage", s.stage, "replicas", int(n), "rate", s.rate, "share", share)
	}
	s.lim.SetRate(share, int(math.Ceil(float64(s.burst)/n)))
}

// Replicas is how many replicas of the stage this one counts, itself included.
func (s *RateShare) Replicas() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return 1 + len(s.seen)
}

// Run announces this replica until ctx ends, then withdraws it so the others take its share at once.
func (s *RateShare) Run(ctx context.Context) {
	announce := func() {
		if _, err := s.kv.Put(ctx, s.id, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil && ctx.Err() == nil {
			s.log.Warn("presence not announced; the other replicas may count it out", "stage", s.stage, "err", err)
		}
	}
	announce()
	t := time.NewTicker(s.renewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			bg, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.kv.Delete(bg, s.id)
			return
		case <-s.answer:
			announce()
		case <-t.C:
			announce()
			s.mu.Lock()
			s.applyLocked()
			s.mu.Unlock()
		}
	}
}
