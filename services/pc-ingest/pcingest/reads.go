package pcingest

import (
	"context"
	"sync"
	"time"

	"github.com/cosell-dev/cosell/services/internal/platform"
)

// maxRemembered bounds how many referrals readVersions remembers (some 100 bytes each); a referral
// forgotten costs one direct get of its last snapshot, never a missed change.
const maxRemembered = 8192

// readVersions remembers, per referral, the newest version this replica published (or found published)
// and which notification's handling published it, so a notification not newer than that needs neither a
// Partner Center read nor a look at the stream: a referral changed many times before its first
// notification was read is read once, and the one read answers every notification behind it.
//
// A snapshot published with PublishAsync may not be stored yet when the referral's next notification is
// handled. That is safe because the notification whose handling published it is acknowledged only once
// the stream has it, and is redelivered otherwise: the version it read is trusted for every other
// notification, but not for that one's own redelivery (same stream sequence), which reads again.
type readVersions struct {
	mu   sync.Mutex
	m    map[string]readVersion
	ring []string // insertion order, for forgetting the oldest
	next int
}

type readVersion struct {
	at time.Time
	// seq is the stream sequence of the notification whose handling published the version, 0 when it is
	// known to be stored.
	seq uint64
}

// covers reports whether the newest version remembered for referralID is at least changedAt and may be
// trusted by the notification at stream sequence seq (platform.StreamSeq).
func (r *readVersions) covers(referralID string, changedAt time.Time, seq uint64) (time.Time, bool) {
	r.mu.Lock()
	v, ok := r.m[referralID]
	r.mu.Unlock()
	if !ok || (v.seq != 0 && v.seq == seq) {
		return time.Time{}, false
	}
	return v.at, !v.at.Before(changedAt)
}

// published records that the handling of the notification at stream sequence seq published version at
// of referralID (seq 0: the version is known to be stored); an older version than the one remembered
// changes nothing.
func (r *readVersions) published(referralID string, at time.Time, seq uint64) {
	if at.IsZero() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m, r.ring = map[string]readVersion{}, make([]string, maxRemembered)
	}
	cur, known := r.m[referralID]
	if known && cur.at.After(at) {
		return
	}
	if !known {
		if old := r.ring[r.next]; old != "" {
			delete(r.m, old)
		}
		r.ring[r.next] = referralID
		r.next = (r.next + 1) % len(r.ring)
	}
	r.m[referralID] = readVersion{at: at, seq: seq}
}

// asyncPublisher publishes the fetcher's snapshots with PublishAsync: the handler's slot is free for the
// next read while the stream's ack is on its way, and the notification is acknowledged once it arrived.
// It cannot tell a duplicate, so it reports every snapshot as new. A snapshot read behind a backlog (behind:
// notifications waiting behind its own, platform.Behind, or a burst of new referrals) is marked so, for
// sf-writer to batch what it causes (platform.MarkBehind; the mark changes no decision).
type asyncPublisher struct {
	bus    *platform.Bus
	behind uint64
}

func (p asyncPublisher) Publish(ctx context.Context, subject string, e platform.Event) (bool, error) {
	platform.MarkBehind(&e, p.behind)
	return false, p.bus.PublishAsync(ctx, subject, e)
}

// A burst of new referrals is at least createBurstFloor referral-created notifications within
// createBurstWindow.
const (
	createBurstFloor  = 4
	createBurstWindow = time.Second
)

// createBurst counts the referral-created notifications the fetcher handled within the last
// createBurstWindow. Partner Center has no bulk feed: a mass share or a migration of referrals arrives as a
// burst of webhooks, records cosell has never seen arriving together, which no pending count shows while the
// fetcher keeps up (each is read at once); a seller's share now and then never makes one, nor does any
// number of updates.
type createBurst struct {
	mu sync.Mutex
	at []time.Time // within the window, oldest first
}

// add notes a referral-created notification handled at now and returns the burst it is part of: how many
// such notifications the window holds, 0 below createBurstFloor.
func (c *createBurst) add(now time.Time) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	cut := 0
	for cut < len(c.at) && now.Sub(c.at[cut]) >= createBurstWindow {
		cut++
	}
	c.at = append(c.at[cut:], now)
	if len(c.at) < createBurstFloor {
		return 0
	}
	return uint64(len(c.at))
}
