package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's utime and stime: 100 on every Linux the Go runtime
// supports (sysconf(_SC_CLK_TCK); proc(5)).
const clockTicks = 100

// cpuTimes reads the user + system CPU time of every process of the fleet: the server, both emulators, the
// stages and their replicas (Linux /proc/<pid>/stat, fields 14 and 15).
func cpuTimes(f *fleet.Fleet) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, name := range f.Names() {
		p := f.Proc(name)
		if p == nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID()))
		if err != nil {
			continue
		}
		// The command name (field 2) is in parentheses and may hold spaces: count from after it.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(fields[11], 10, 64)
		st, _ := strconv.ParseInt(fields[12], 10, 64)
		out[name] = time.Duration(ut+st) * time.Second / clockTicks
	}
	return out
}

// cpuShare renders each process's CPU time between two readings as cores used over wall, largest first,
// with its share of all the fleet used: "nats 0.52 cores (26%)".
func cpuShare(a, b map[string]time.Duration, wall time.Duration) string {
	type use struct {
		name string
		d    time.Duration
	}
	var uses []use
	var total time.Duration
	for k, v := range b {
		d := v - a[k]
		uses = append(uses, use{k, d})
		total += d
	}
	if total == 0 || wall <= 0 {
		return "no CPU time read"
	}
	sort.Slice(uses, func(i, j int) bool { return uses[i].d > uses[j].d })
	parts := make([]string, 0, len(uses))
	for _, u := range uses {
		parts = append(parts, fmt.Sprintf("%s %.2f (%.0f%%)", u.name, u.d.Seconds()/wall.Seconds(), 100*float64(u.d)/float64(total)))
	}
	return fmt.Sprintf("%.2f cores in all: %s", total.Seconds()/wall.Seconds(), strings.Join(parts, ", "))
}
