package sfwriter

import (
	"testing"
	"time"

	"github.com/cosell-dev/cosell/services/internal/platform"
)

// TestLingerOptions: by default a batch waits only behind a backlog, and only while it keeps arriving at
// 300 commands/s (6 a 20ms step); COSELL_SF_BATCH_LINGER_RATE opts live traffic in, at its own rate.
func TestLingerOptions(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         platform.ConsumeOptions
		batch      BatchConfig
		wantGrowth int
		wantLive   bool
	}{
		{"default: behind a backlog only", platform.ConsumeOptions{}, BatchConfig{Linger: 200 * time.Millisecond}, 6, false},
		{"live traffic opted in", platform.ConsumeOptions{}, BatchConfig{Linger: 200 * time.Millisecond, LingerRate: 500}, 10, true},
		{"a 10ms step", platform.ConsumeOptions{LingerStep: 10 * time.Millisecond}, BatchConfig{Linger: time.Second}, 3, false},
		{"growth set by the caller", platform.ConsumeOptions{LingerGrowth: 2, Linger: time.Minute}, BatchConfig{Linger: time.Second, LingerRate: 300}, 2, false},
	} {
		got := lingerOptions(tc.in, tc.batch)
		wantLinger := tc.batch.Linger
		if tc.in.Linger > 0 {
			wantLinger = tc.in.Linger
		}
		if got.LingerGrowth != tc.wantGrowth || got.LingerLive != tc.wantLive || got.Linger != wantLinger {
			t.Errorf("%s: growth %d live %v linger %s, want %d %v %s", tc.name, got.LingerGrowth, got.LingerLive, got.Linger,
				tc.wantGrowth, tc.wantLive, wantLinger)
		}
	}
}
