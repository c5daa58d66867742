package sfingest

// The replay id of a channel, stored coalesced. Storing it after every burst made one KV write per burst,
// and on the steady PC → SF path each burst is one echo of cosell's own Salesforce write: 0.97 of the 10
// stored publishes per change (issue 16). Now the replay id of the last handled burst is noted in memory
// and stored at most once per COSELL_SF_CDC_CHECKPOINT_INTERVAL: at once when none is stored yet (a first
// start, or after a heal, must not catch up by REST again), otherwise when the interval since the last
// store has passed (a timer stores what a quiet stream left pending), and always when the subscription
// ends (shutdown, the lease handed off: Run returns before the lease is released) or fails.
//
// Why an older stored replay id is safe. Nothing waits for the replay id to be durable: a burst's snapshots
// are published (and acknowledged by the server) before its replay id is noted, and the holds of own
// writes dropped unread are stored before it (coverage.hold), so the stored id never runs ahead of what is
// durable. After a crash sf-ingest resumes from the stored id and handles again the events of up to one
// interval. Each costs nothing new: an own write is dropped from its header again; a seller's change is
// read by REST (a new run trusts no snapshot of an earlier one) and gives the version it gave before (the
// newest of the record's SystemModstamp and the commit times naming it), so the same event id, which the
// server drops as a duplicate (Nats-Msg-Id, COSELL_DUPLICATE_WINDOW); a record changed since gives its new
// state, a change the mapper had to see anyway, and past the duplicate window the mapper's "not newer than
// the last snapshot" check skips the repeat (TestCDCCrashBeforeTheCheckpointRepeatsNothing,
// e2e TestSFIngestCrashBeforeItsCheckpointCostsNothing). The backstop's coverage moves as bursts are
// handled, not stored: it lives in memory and starts empty in a new run, which replays from the stored id.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub"
	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub/pubsubpb"
)

// defaultCheckpointInterval is COSELL_SF_CDC_CHECKPOINT_INTERVAL's default.
const defaultCheckpointInterval = 2 * time.Second

// replayMark is one channel's replay id for one subscription: the last one handled and the one stored
// (compare-and-set on the revision, so a replica that lost the lease cannot move it). Safe for the
// subscription's handler and its timer.
type replayMark struct {
	kv    jetstream.KeyValue
	key   string
	every time.Duration // 0: store after every burst

	mu      sync.Mutex
	rev     uint64 // the key's revision (0: absent)
	stored  []byte // what the key holds
	pending []byte // handled, not stored yet (nil: none)
	last    time.Time
	timer   *time.Timer
	ctx     context.Context
	failed  error // a store the timer made that failed: returned by the next noted burst
	stopped bool
}

// loadReplayMark reads the channel's stored replay id; Start is where to subscribe from (LATEST: none).
func loadReplayMark(ctx context.Context, kv jetstream.KeyValue, key string, every time.Duration) (*replayMark, sfpubsub.Start, error) {
	m := &replayMark{kv: kv, key: key, every: every, ctx: ctx}
	start := sfpubsub.Start{Preset: pubsubpb.ReplayPreset_LATEST}
	entry, err := kv.Get(ctx, key)
	switch {
	case err == nil:
		m.rev, m.stored = entry.Revision(), entry.Value()
		start = sfpubsub.Start{Preset: pubsubpb.ReplayPreset_CUSTOM, ReplayID: entry.Value()}
	case errors.Is(err, jetstream.ErrKeyNotFound):
	default:
		return nil, start, fmt.Errorf("read replay id %s: %w", key, err)
	}
	return m, start, nil
}

// noted records the replay id after a handled burst, storing it now when none is stored yet or the
// interval has passed since the last store, else arming the timer that stores it when it has.
func (m *replayMark) noted(id []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failed; err != nil {
		m.failed = nil
		return err
	}
	if len(id) == 0 || m.pending == nil && bytes.Equal(id, m.stored) {
		return nil
	}
	m.pending = bytes.Clone(id)
	if wait := m.every - time.Since(m.last); m.rev == 0 || wait <= 0 {
		return m.store(m.ctx)
	} else if m.timer == nil {
		m.timer = time.AfterFunc(wait, m.due)
	}
	return nil
}

// due is the timer's store of what is pending.
func (m *replayMark) due() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.timer = nil
	if m.stopped {
		return
	}
	if err := m.store(m.ctx); err != nil && m.ctx.Err() == nil {
		m.failed = err
	}
}

// store writes what is pending (mu held).
func (m *replayMark) store(ctx context.Context) error {
	if m.pending == nil {
		return nil
	}
	var rev uint64
	var err error
	if m.rev == 0 {
		rev, err = m.kv.Create(ctx, m.key, m.pending)
	} else {
		rev, err = m.kv.Update(ctx, m.key, m.pending, m.rev)
	}
	if err != nil {
		return fmt.Errorf("store replay id %s (another replica holds the lease?): %w", m.key, err)
	}
	m.rev, m.stored, m.pending, m.last = rev, m.pending, nil, time.Now()
	return nil
}

// stop ends the timer and stores what is pending: the subscription ended (shutdown, hand-off, failure).
// ctx may be done already; the store gets a few seconds of its own.
func (m *replayMark) stop(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return m.store(sctx)
}

// drop deletes the stored replay id (it is no longer valid) and forgets what is pending.
func (m *replayMark) drop(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending = nil
	if m.rev == 0 {
		return nil
	}
	if err := m.kv.Delete(ctx, m.key, jetstream.LastRevision(m.rev)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("drop replay id %s: %w", m.key, err)
	}
	m.rev, m.stored = 0, nil
	return nil
}
