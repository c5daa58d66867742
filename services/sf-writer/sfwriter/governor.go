package sfwriter

import (
	"context"
	"log/slog"
	"time"

	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
)

// GovernorConfig is the API budget: how much of the org's daily allowance sf-writer leaves for everyone
// else, and how it slows down before reaching that floor.
type GovernorConfig struct {
	Floor     int           `env:"COSELL_SF_API_FLOOR" default:"1000" help:"daily API calls left to other users of the org: at or below this many remaining, writes pause"`
	SlowBelow int           `env:"COSELL_SF_API_SLOW_BELOW" default:"5000" help:"below this many remaining daily API calls, each batch of writes waits COSELL_SF_API_SLOW_DELAY first"`
	SlowDelay time.Duration `env:"COSELL_SF_API_SLOW_DELAY" default:"2s" help:"the wait before each batch of writes once below COSELL_SF_API_SLOW_BELOW"`
	Pause     time.Duration `env:"COSELL_SF_LIMIT_PAUSE" default:"15m" help:"how long writes pause once at the floor or when the daily allowance is spent; the commands wait unacked and resume"`
}

// Governor keeps sf-writer within its API budget. It reads the allowance from the Sforce-Limit-Info header
// of every response (sfapi.Client.Usage), so it costs no calls, except one /limits call per pause to learn
// whether the allowance has come back.
type Governor struct {
	SF     *sfapi.Client
	Config GovernorConfig
	Log    *slog.Logger
}

// Admit is asked before a batch of write calls. It returns 0 to go ahead, after waiting SlowDelay when the
// allowance is near the floor; or how long the commands must wait (they are redelivered after it, nothing
// fails) when the allowance is at the floor.
func (g *Governor) Admit(ctx context.Context) time.Duration {
	if g == nil || g.SF == nil {
		return 0
	}
	u := g.SF.Usage()
	if !u.Known() {
		return 0
	}
	if u.Remaining() <= g.Config.Floor {
		if time.Since(u.At) < g.Config.Pause {
			return g.pause(u)
		}
		// The pause is over: ask once whether the allowance came back (24 h rolling window).
		fresh, err := g.SF.Limits(ctx)
		if err != nil || fresh.Remaining() <= g.Config.Floor {
			return g.pause(g.SF.Usage())
		}
		u = fresh
		if g.Log != nil {
			g.Log.Info("API allowance above the floor again: resuming writes", "remaining", u.Remaining(), "floor", g.Config.Floor)
		}
	}
	if u.Remaining() < g.Config.SlowBelow && g.Config.SlowDelay > 0 {
		t := time.NewTimer(g.Config.SlowDelay)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return 0
}

func (g *Governor) pause(u sfapi.Usage) time.Duration {
	d := g.Config.Pause
	if d <= 0 {
		d = time.Minute
	}
	if g.Log != nil {
		g.Log.Warn("API allowance at the floor: writes paused", "used", u.Used, "max", u.Max, "floor", g.Config.Floor, "resume_in", d)
	}
	return d
}
