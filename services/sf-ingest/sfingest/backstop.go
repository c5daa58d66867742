package sfingest

// The backstop poll next to Change Data Capture: what the change events already handled it does not read
// again. Without this, the poll's own SystemModstamp watermark moved only when it polled, so the first
// backstop after an sf-ingest outage (or after any busy interval) re-read every record the change events
// had just caught up on: after a 10-minute outage with 5,000 changes, a REST scan of every Opportunity
// changed in it, minutes after the subscription had replayed them all from the stored replay id.
//
// Why skipping is safe, and how far. The backstop exists to catch what the change events missed: objects
// they do not carry (Notes; an object not selected for Change Data Capture in Setup, or not on the
// configured channels), and cosell's own writes dropped from their header. So:
//
//   - Coverage is kept per object (the Opportunity, its children, the Account, the Contact, and the Lead),
//     and only an object's own change events move it: an object that sends
//     none (Notes, one not selected in Setup) is read from the poll's watermark as before. Its moment is
//     the commit timestamp of the newest event of that object in a burst whose snapshots are published
//     (its replay id need not be stored yet: a new run starts with no coverage and replays from the stored
//     one, replay.go). A channel delivers its events in commit order and in full (a change
//     Salesforce cannot publish becomes a GAP event, which is re-read, or a GAP_OVERFLOW, which runs a
//     REST catch-up inside its burst), and a subscription resumes exactly after the stored replay id, also
//     in another process; so every change of that object committed up to that moment has been handled.
//     The poll reads the object from that moment itself, with no Overlap before it: the Overlap is for a
//     change whose SystemModstamp lies before the commit of its transaction (commit-time skew) and that a
//     poll could miss; here such a change's event is still to come on the channel, after the ones handled,
//     and the subscription handles it. (With the Overlap, the first backstop after an outage's catch-up
//     re-read every record of sf-writer's last burst of write-backs: 280 of 500 in the 10-minute bench run.)
//   - An own write of a field the mapping syncs that CDC.reread let drop unread (no seller changed the
//     record within the backstop interval) is the one kind of handled event the backstop is still relied
//     on for (see reread). Its commit time holds its object's coverage back ("held": read from the Overlap
//     before it, since its row's stamp may lie before its commit) until a poll has read past it; it is kept in the checkpoints bucket (HeldKey) before its burst's replay id is stored, so a
//     restarted or new leader, which rebuilds coverage from the events it replays, holds it back too.
//     Own writes of the link, sync status and Audit summary, and records cosell created, need no backstop
//     (reread) and hold nothing.
//   - A coverage moment is only ever a commit time a handled event carried: it never runs ahead of what
//     was handled, and after a restart it starts empty (the poll reads from its watermark) until events
//     are replayed.
//
// What it does not cover: changes of an object while its Change Data Capture was switched off in Setup
// and then on again within one backstop interval, when events of that object came just before and just
// after; the first event after it moves the coverage past them.
//
// The backstop also waits while a subscription has not caught up since it started (no batch yet, or its
// batches come full: a backlog being replayed): the replay reads the same changes from the events, and a
// SystemModstamp scan run meanwhile would read them again. It runs at the first tick after every
// subscription has handed over a batch smaller than a full one, or when one failed, or when one has handed
// over nothing for stuckAfter (a stream that neither delivers nor fails must not stop the backstop).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub"
)

// HeldKey is the checkpoints-bucket key holding, per object, the commit time of the oldest own write
// dropped unread since the last backstop poll (see coverage).
func HeldKey() string { return contracts.CheckpointKey(contracts.StageSFIngest, "cdc-held") }

// coverage is what the change events have handled, per object, for the backstop poll. Safe for the
// concurrent subscriptions and the poller.
type coverage struct {
	kv       jetstream.KeyValue
	interval time.Duration // the backstop interval

	mu      sync.Mutex
	at      map[string]time.Time    // object -> commit time of its newest change event handled
	held    map[string]time.Time    // object -> commit time of its oldest own write dropped unread since a poll
	drops   map[string]uint64       // object -> how many own writes were dropped unread (a poll lifts a hold only if none came since it planned)
	heldRev uint64                  // HeldKey's revision (0: absent)
	subs    map[string]subscription // channel -> how far its subscription is
}

// subscription is where a channel's subscription stands for the backstop: caught up (its last batch was
// smaller than a full one, or it failed), or not, since when.
type subscription struct {
	caughtUp bool
	since    time.Time
}

// stuckAfter is how long a subscription that is not caught up may hand over nothing before the backstop
// stops waiting for it.
func (c *coverage) stuckAfter() time.Duration { return max(c.interval, 5*time.Minute) }

type heldRecord struct {
	Held map[string]time.Time `json:"held"`
}

func newCoverage(kv jetstream.KeyValue, interval time.Duration) *coverage {
	return &coverage{kv: kv, interval: interval, at: map[string]time.Time{}, held: map[string]time.Time{}, drops: map[string]uint64{},
		subs: map[string]subscription{}}
}

// load reads the holds a previous leader stored.
func (c *coverage) load(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, err := c.kv.Get(ctx, HeldKey())
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("read %s: %w", HeldKey(), err)
	}
	var r heldRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return fmt.Errorf("checkpoint %s: %w", HeldKey(), err)
	}
	for obj, at := range r.Held {
		c.held[obj] = at
	}
	c.heldRev = e.Revision()
	return nil
}

// hold notes own writes dropped unread (object -> oldest commit time) and stores the holds when one is
// new, before the caller stores its burst's replay id.
func (c *coverage) hold(ctx context.Context, dropped map[string]time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for obj, at := range dropped {
		c.drops[obj]++
		if h, ok := c.held[obj]; !ok || at.Before(h) {
			c.held[obj] = at
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return c.storeHeld(ctx)
}

// storeHeld writes c.held (compare-and-set; mu held): a replica that lost the lease cannot overwrite it.
func (c *coverage) storeHeld(ctx context.Context) error {
	var err error
	if len(c.held) == 0 {
		if c.heldRev != 0 {
			err = c.kv.Delete(ctx, HeldKey(), jetstream.LastRevision(c.heldRev))
			if err == nil {
				c.heldRev = 0
			}
		}
	} else {
		b, _ := json.Marshal(heldRecord{Held: c.held})
		var rev uint64
		if c.heldRev == 0 {
			rev, err = c.kv.Create(ctx, HeldKey(), b)
		} else {
			rev, err = c.kv.Update(ctx, HeldKey(), b, c.heldRev)
		}
		if err == nil {
			c.heldRev = rev
		}
	}
	if err != nil {
		return fmt.Errorf("store %s (another replica holds the lease?): %w", HeldKey(), err)
	}
	return nil
}

// handled moves the coverage of each object to the newest commit time among a handled burst's events
// (called once its snapshots are published, before its replay id is noted); full says the burst was as large
// as the client hands over at once, so the channel is still replaying a backlog.
func (c *coverage) handled(channel string, events []sfpubsub.ChangeEvent, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range events {
		h := ev.Header
		if _, tracked := cdcParents[h.EntityName]; !tracked && h.EntityName != sf.ObjectLead || h.ChangeType == "GAP_OVERFLOW" {
			continue // not read on its event (GAP_OVERFLOW: caught up by REST, in its burst)
		}
		if h.CommitTimestamp.After(c.at[h.EntityName]) {
			c.at[h.EntityName] = h.CommitTimestamp
		}
	}
	c.subs[channel] = subscription{caughtUp: !full, since: time.Now()}
}

// started notes a subscription starting: not caught up until it hands over a batch smaller than a full one.
func (c *coverage) started(channel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs[channel] = subscription{since: time.Now()}
}

// failed notes a subscription failing: the backstop does not wait for it.
func (c *coverage) failed(channel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs[channel] = subscription{caughtUp: true, since: time.Now()}
}

// replaying reports whether a subscription has not caught up yet (and is not stuck): the backstop waits.
func (c *coverage) replaying() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.subs {
		if !s.caughtUp && time.Since(s.since) < c.stuckAfter() {
			return true
		}
	}
	return false
}

// pollPlan is where one poll reads each object from, and the holds it will have read past (by the count
// of drops when it planned).
type pollPlan struct {
	from map[string]time.Time
	held map[string]uint64
}

// plan says where a poll starting now reads each object from: the watermark's from, or later where the
// change events cover the object (from the commit time of its newest event handled, or the overlap before
// a hold: never past one).
func (c *coverage) plan(watermarkFrom time.Time, overlap time.Duration) pollPlan {
	if c == nil {
		return pollPlan{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := pollPlan{from: map[string]time.Time{}, held: map[string]uint64{}}
	for obj, at := range c.at {
		from := at
		if h, ok := c.held[obj]; ok && !h.After(at) {
			from = h.Add(-overlap)
		}
		if from.After(watermarkFrom) {
			p.from[obj] = from
		}
	}
	for obj := range c.held {
		p.held[obj] = c.drops[obj]
	}
	return p
}

// fromFor is where the poll reads object from.
func (p pollPlan) fromFor(object string, watermarkFrom time.Time) time.Time {
	if f, ok := p.from[object]; ok {
		return f
	}
	return watermarkFrom
}

// polled lifts the holds a finished poll has read past: it read each held object from before its hold up
// to the poll's start, or later. A hold with a drop after the plan stays (that drop may be past what the
// poll read; the hold is the oldest drop, so it is kept whole until a poll sees none come meanwhile).
func (c *coverage) polled(ctx context.Context, p pollPlan) error {
	if c == nil || len(p.held) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for obj, n := range p.held {
		if _, ok := c.held[obj]; ok && c.drops[obj] == n {
			delete(c.held, obj)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return c.storeHeld(ctx)
}

// coverBackstop gives the Ingest's backstop poll this run's coverage, with the holds a previous leader
// stored.
func (c *CDC) coverBackstop(ctx context.Context) error {
	c.cov = newCoverage(c.In.Checkpoints, c.Config.Backstop)
	if err := c.cov.load(ctx); err != nil {
		return err
	}
	for _, ch := range c.Config.Channels {
		c.cov.started(ch)
	}
	c.In.cov = c.cov
	return nil
}

// noteUnread notes an own write dropped from its header that the backstop is still relied on for: an
// update of a field the mapping syncs (reread let it drop: no seller changed the record lately), unless a
// seller created the record within the interval (sinceCreate: every seller change of it was seen).
func (c *CDC) noteUnread(unread map[string]time.Time, h sfpubsub.Header) {
	if h.ChangeType != "UPDATE" || !c.changesSynced(h) || c.sinceCreate(h) {
		return
	}
	if at, ok := unread[h.EntityName]; !ok || h.CommitTimestamp.Before(at) {
		unread[h.EntityName] = h.CommitTimestamp
	}
}

// fullBatch reports whether a batch of n events is as large as the Pub/Sub client hands over at once: a
// backlog is being replayed, more are waiting.
func (c *CDC) fullBatch(n int) bool {
	most := max(c.Config.PubSub.Coalesce, c.Config.PubSub.BatchSize)
	if most <= 0 {
		most = 100 // the Pub/Sub API's most per request
	}
	return n >= most
}
