package pcapi

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestTenantLimiterPausesEveryCaller: after Pause, no caller gets through until the pause is over.
func TestTenantLimiterPausesEveryCaller(t *testing.T) {
	l := NewTenantLimiter(0, 1)
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.Pause(time.Hour)
	l.Pause(time.Millisecond) // a shorter Retry-After does not shorten the pause in force
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait during a pause = %v, want the caller's deadline", err)
	}
}
