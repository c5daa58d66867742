package platform

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestParseMemoryLimit: COSELL_MEMORY_LIMIT and cosell nats --memory-limit take what GOMEMLIMIT takes, and say
// what they want otherwise.
func TestParseMemoryLimit(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"256MiB": 256 << 20, "2GiB": 2 << 30, "1048576": 1 << 20, "512B": 512, "64KiB": 64 << 10, "off": NoMemoryLimit} {
		if got, err := ParseMemoryLimit(in); err != nil || got != want {
			t.Errorf("ParseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "256M", "-1MiB", "0", "lots", "9999999TiB"} {
		if _, err := ParseMemoryLimit(in); err == nil || !strings.Contains(err.Error(), "256MiB") {
			t.Errorf("ParseMemoryLimit(%q): %v, want an error naming a size it takes", in, err)
		}
	}
}

// A bad COSELL_MEMORY_LIMIT is refused with the config's other errors, naming the variable.
func TestConfigRefusesABadMemoryLimit(t *testing.T) {
	t.Parallel()
	var c Common
	err := LoadConfig(&c, func(k string) (string, bool) {
		if k == "COSELL_MEMORY_LIMIT" {
			return "24M", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), "COSELL_MEMORY_LIMIT") || !strings.Contains(err.Error(), "256MiB") {
		t.Fatalf("LoadConfig = %v, want an error naming COSELL_MEMORY_LIMIT and a size it takes", err)
	}
}

// ApplyRuntime sets the soft limit and stops heap-profile sampling when profiles are off, and puts both back;
// a GOMEMLIMIT from the environment is the operator's and wins over the setting. (Not parallel: it changes
// the process's runtime settings.)
func TestApplyRuntime(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	before, rate := debug.SetMemoryLimit(-1), runtime.MemProfileRate
	restore, limit, err := ApplyRuntime(RuntimeConfig{MemoryLimit: "48MiB"})
	if err != nil {
		t.Fatal(err)
	}
	if limit != 48<<20 || debug.SetMemoryLimit(-1) != 48<<20 {
		t.Errorf("limit = %d (runtime %d), want %d", limit, debug.SetMemoryLimit(-1), 48<<20)
	}
	if runtime.MemProfileRate != 0 {
		t.Errorf("MemProfileRate = %d with profiles off, want 0", runtime.MemProfileRate)
	}
	restore()
	if debug.SetMemoryLimit(-1) != before || runtime.MemProfileRate != rate {
		t.Errorf("not restored: limit %d, rate %d; want %d, %d", debug.SetMemoryLimit(-1), runtime.MemProfileRate, before, rate)
	}

	restore, _, err = ApplyRuntime(RuntimeConfig{MemoryLimit: "48MiB", Profiles: true})
	if err != nil {
		t.Fatal(err)
	}
	if runtime.MemProfileRate != rate {
		t.Errorf("MemProfileRate = %d with profiles on, want %d", runtime.MemProfileRate, rate)
	}
	restore()

	t.Setenv("GOMEMLIMIT", "100MiB") // the runtime read it at start; stand in for that
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(100 << 20))
	restore, limit, err = ApplyRuntime(RuntimeConfig{MemoryLimit: "48MiB"})
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	if limit != 100<<20 {
		t.Errorf("limit = %d with GOMEMLIMIT=100MiB, want GOMEMLIMIT's %d", limit, 100<<20)
	}
}
