package pcingest

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// clockSlack allows for the clocks of the pc-writer that announced a create and the pc-ingest replica that
// received the webhook to differ: an attempt that began this much after a webhook was received may still
// be its cause.
const clockSlack = 250 * time.Millisecond

// ownCreates knows which referral creates pc-writer has under way, from the create records it writes in
// the applied bucket (contracts.PCCreate, followed as they are written): the first before it calls
// Partner Center, the second once it has published the created referral as its observed snapshot.
// Partner Center may deliver referral-created before, while or after it answers the create; a webhook
// that arrives while a create that could be its cause is under way is held until that create's second
// record says which referral it made. When it names this one, the snapshot is already stored and no read
// is needed. The wait is bounded: a pc-writer that died after its create never writes the second record,
// and after Wait the referral is read.
type ownCreates struct {
	follow *platform.KVFollower
	wait   time.Duration

	mu sync.Mutex
	// underWay are the attempts not yet answered, by Opportunity id, with the time each began.
	underWay map[string]time.Time
	// created are referrals pc-writer created and published, with when it said so.
	created map[string]time.Time
	// changed is closed (and replaced) whenever either changes, to wake the held webhooks.
	changed chan struct{}
	// holding counts the webhooks being held (tests wait for one to be held).
	holding int
}

func newOwnCreates(wait time.Duration) *ownCreates {
	return &ownCreates{wait: wait, underWay: map[string]time.Time{}, created: map[string]time.Time{}, changed: make(chan struct{})}
}

// start follows pc-writer's create records on bus until ctx ends.
func (o *ownCreates) start(ctx context.Context, bus *platform.Bus) error {
	f, err := bus.FollowKV(ctx, contracts.BucketApplied, contracts.PCCreateKeyPrefix+">", o.apply)
	if err != nil {
		return err
	}
	o.follow = f
	return nil
}

func (o *ownCreates) apply(_ string, value []byte) {
	var rec contracts.PCCreate
	if json.Unmarshal(value, &rec) != nil || rec.OpportunityID == "" {
		return
	}
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.prune(now)
	if rec.UnderWay() {
		o.underWay[rec.OpportunityID] = rec.Attempt()
	} else {
		delete(o.underWay, rec.OpportunityID)
		if rec.ReferralID != "" {
			o.created[rec.ReferralID] = now
		}
	}
	close(o.changed)
	o.changed = make(chan struct{})
}

// prune forgets attempts and creates older than the wait: a held webhook no longer waits for them.
// Callers hold o.mu.
func (o *ownCreates) prune(now time.Time) {
	for opp, at := range o.underWay {
		if now.Sub(at) > o.wait {
			delete(o.underWay, opp)
		}
	}
	for id, at := range o.created {
		if now.Sub(at) > o.wait {
			delete(o.created, id)
		}
	}
}

// ours holds a referral-created webhook received at received until it is known whether pc-writer's own
// create made referralID: true once pc-writer said so (its snapshot is stored); false when no create that
// could have made it is under way any more, or after the wait.
func (o *ownCreates) ours(ctx context.Context, referralID string, received time.Time) bool {
	if o == nil || o.follow == nil {
		return false
	}
	// Every create record written before Partner Center was called is on this connection already (the
	// webhook came after it): apply them before looking.
	if o.follow.Sync(ctx) != nil {
		return false
	}
	giveUp := time.Now().Add(o.wait)
	held := false
	defer func() {
		if held {
			o.mu.Lock()
			o.holding--
			o.mu.Unlock()
		}
	}()
	for {
		o.mu.Lock()
		o.prune(time.Now())
		if _, ok := o.created[referralID]; ok {
			o.mu.Unlock()
			return true
		}
		// The attempts that began before the webhook was received could be its cause; the first of them to
		// be forgotten (pruned) ends this round of waiting, if nothing changes before.
		var next time.Time
		for _, at := range o.underWay {
			if !at.After(received.Add(clockSlack)) && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
		if next.IsZero() || !time.Now().Before(giveUp) {
			o.mu.Unlock()
			return false
		}
		if !held {
			held = true
			o.holding++
		}
		changed := o.changed
		o.mu.Unlock()
		wake := next.Add(o.wait)
		if giveUp.Before(wake) {
			wake = giveUp
		}
		timer := time.NewTimer(max(time.Until(wake), time.Millisecond))
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return false
		}
		timer.Stop()
	}
}

// held is how many webhooks are being held now.
func (o *ownCreates) held() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.holding
}
