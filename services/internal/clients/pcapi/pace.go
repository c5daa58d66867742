package pcapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// TenantLimiter paces the calls one process makes to a Partner Center tenant (Partner Center throttles per
// tenant). Every handler of a stage shares it, so a Retry-After pauses them all, not only the throttled
// call. pc-writer and pc-ingest each use one.
type TenantLimiter struct {
	lim   *rate.Limiter
	mu    sync.Mutex
	until time.Time
}

// NewTenantLimiter allows perSecond calls with bursts of burst; perSecond <= 0 means no limit (a
// Retry-After still pauses every caller).
func NewTenantLimiter(perSecond float64, burst int) *TenantLimiter {
	limit := rate.Limit(perSecond)
	if perSecond <= 0 {
		limit = rate.Inf
	}
	return &TenantLimiter{lim: rate.NewLimiter(limit, max(burst, 1))}
}

// SetRate changes the pace to perSecond calls with bursts of burst (perSecond <= 0: no limit), e.g. when
// the replicas sharing a tenant's rate change.
func (t *TenantLimiter) SetRate(perSecond float64, burst int) {
	limit := rate.Limit(perSecond)
	if perSecond <= 0 {
		limit = rate.Inf
	}
	t.lim.SetLimit(limit)
	t.lim.SetBurst(max(burst, 1))
}

// Rate is the pace in calls per second (0: no limit).
func (t *TenantLimiter) Rate() float64 {
	if l := t.lim.Limit(); l != rate.Inf {
		return float64(l)
	}
	return 0
}

// Wait blocks until a call may be made: after any pause Partner Center asked for, then at the pace.
func (t *TenantLimiter) Wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		d := time.Until(t.until)
		t.mu.Unlock()
		if d <= 0 {
			return t.lim.Wait(ctx)
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// Pause holds every call for d (a Retry-After), extending a pause already in force.
func (t *TenantLimiter) Pause(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if until := time.Now().Add(d); until.After(t.until) {
		t.until = until
	}
}

// Call makes one Partner Center call f at the tenant's pace; a 429 pauses every caller for its Retry-After
// and f is tried again, up to retries times (3 when retries <= 0); then the throttled error is returned
// (IsThrottled gives its Retry-After, for the consumer loop to put the message back for that long).
func (t *TenantLimiter) Call(ctx context.Context, log *slog.Logger, retries int, f func() error) error {
	if retries <= 0 {
		retries = 3
	}
	for attempt := 0; ; attempt++ {
		if err := t.Wait(ctx); err != nil {
			return err
		}
		err := f()
		d, throttled := IsThrottled(err)
		if !throttled {
			return err
		}
		t.Pause(d)
		if attempt >= retries {
			return err
		}
		if log != nil {
			log.Info("partner center throttled the call; waiting", "retry_after", d, "attempt", attempt+1)
		}
	}
}
