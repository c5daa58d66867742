package platform

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// RuntimeConfig holds the Go runtime settings every stage applies at start: how much memory its heap may
// take before the collector works harder, and whether its profiles are served on the admin port.
type RuntimeConfig struct {
	MemoryLimit string `env:"COSELL_MEMORY_LIMIT" default:"24MiB" validate:"memsize" help:"the Go runtime's soft memory limit (GOMEMLIMIT's form: 24MiB, 1GiB, off); GOMEMLIMIT, when set, wins. Above it the collector runs sooner (at most half the CPU), nothing fails"`
	Profiles    bool   `env:"COSELL_PPROF" default:"false" help:"true = serve the Go runtime's profiles (net/http/pprof: /debug/pprof/heap, /debug/pprof/profile, …) on COSELL_ADMIN_ADDR; off, no heap profile is even sampled"`
}

// NoMemoryLimit is what debug.SetMemoryLimit reports when no limit is set.
const NoMemoryLimit = int64(^uint64(0) >> 1)

// ApplyRuntime sets the process's soft memory limit (unless GOMEMLIMIT set one) and, with profiles off, turns
// heap-profile sampling off from here on (no sampling cost, no new profile buckets; the runtime's 1.4 MiB
// bucket table is allocated during package initialisation already, before any setting is read). It
// returns a function that puts both back (tests run stages inside their own process) and the limit in
// force.
func ApplyRuntime(c RuntimeConfig) (restore func(), limit int64, err error) {
	prevLimit, prevRate := debug.SetMemoryLimit(-1), runtime.MemProfileRate
	if os.Getenv("GOMEMLIMIT") == "" {
		n, err := ParseMemoryLimit(c.MemoryLimit)
		if err != nil {
			return func() {}, 0, fmt.Errorf("COSELL_MEMORY_LIMIT: %w", err)
		}
		debug.SetMemoryLimit(n)
	}
	if !c.Profiles {
		runtime.MemProfileRate = 0
	}
	return func() {
		debug.SetMemoryLimit(prevLimit)
		runtime.MemProfileRate = prevRate
	}, debug.SetMemoryLimit(-1), nil
}

// ParseMemoryLimit reads a limit as GOMEMLIMIT writes it: a number of bytes with an optional B, KiB, MiB,
// GiB or TiB suffix, or "off".
func ParseMemoryLimit(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "off" {
		return NoMemoryLimit, nil
	}
	num, unit := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, unit = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > NoMemoryLimit/unit {
		return 0, fmt.Errorf("%q is not a size such as 256MiB or 2GiB (or off)", s)
	}
	return n * unit, nil
}

// ProfileHandler serves net/http/pprof on a mux of its own, so the profiles are only where a setting asks.
func ProfileHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
