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

// cpuUsed is the CPU time each process used between two readings.
func cpuUsed(a, b map[string]time.Duration) map[string]time.Duration {
	used := make(map[string]time.Duration, len(b))
	for k, v := range b {
		used[k] = v - a[k]
	}
	return used
}

type use struct {
	name string
	d    time.Duration
}

// largestFirst lists the processes' CPU times, largest first, and their total.
func largestFirst(used map[string]time.Duration) ([]use, time.Duration) {
	uses := make([]use, 0, len(used))
	var total time.Duration
	for k, d := range used {
		uses = append(uses, use{k, d})
		total += d
	}
	sort.Slice(uses, func(i, j int) bool {
		if uses[i].d != uses[j].d {
			return uses[i].d > uses[j].d
		}
		return uses[i].name < uses[j].name
	})
	return uses, total
}

// cpuShare renders each process's CPU time as cores used over wall, largest first, with its share of all
// the fleet used: "nats 0.52 (26%)".
func cpuShare(used map[string]time.Duration, wall time.Duration) string {
	uses, total := largestFirst(used)
	if total == 0 || wall <= 0 {
		return "no CPU time read"
	}
	parts := make([]string, 0, len(uses))
	for _, u := range uses {
		parts = append(parts, fmt.Sprintf("%s %.2f (%.0f%%)", u.name, u.d.Seconds()/wall.Seconds(), 100*float64(u.d)/float64(total)))
	}
	return fmt.Sprintf("%.2f cores in all: %s", total.Seconds()/wall.Seconds(), strings.Join(parts, ", "))
}

// cpuPerChange renders the CPU time the fleet spent per change, in all and per process, largest first:
// "4.1 ms in all: nats 1.2, mapper 0.8".
func cpuPerChange(used map[string]time.Duration, n int) string {
	uses, total := largestFirst(used)
	if total == 0 || n <= 0 {
		return "no CPU time read"
	}
	parts := make([]string, 0, len(uses))
	for _, u := range uses {
		parts = append(parts, fmt.Sprintf("%s %.2f", u.name, cpuMillis(used, u.name, n)))
	}
	return fmt.Sprintf("%.2f ms in all: %s", cpuMillis(used, "", n), strings.Join(parts, ", "))
}

// cpuMillis is the milliseconds of CPU per change of one process (of all, for "").
func cpuMillis(used map[string]time.Duration, name string, n int) float64 {
	if n <= 0 {
		return 0
	}
	var d time.Duration
	for k, v := range used {
		if name == "" || k == name {
			d += v
		}
	}
	return float64(d.Microseconds()) / 1000 / float64(n)
}
