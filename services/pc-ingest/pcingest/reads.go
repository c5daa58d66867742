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
// It cannot tell a duplicate, so it reports every snapshot as new.
type asyncPublisher struct{ bus *platform.Bus }

func (p asyncPublisher) Publish(ctx context.Context, subject string, e platform.Event) (bool, error) {
	return false, p.bus.PublishAsync(ctx, subject, e)
}
