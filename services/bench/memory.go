package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
)

// memSeries is the resident memory (VmRSS) of every process of the fleet, sampled over a run.
type memSeries struct {
	at  []time.Duration    // since the run started
	rss map[string][]int64 // process → bytes, one per sample (0 where it could not be read)
	// anon is, per process, the anonymous part of each sample (RssAnon: heap, stacks, the runtime); the rest
	// of its VmRSS is file pages (its binary's code and read-only data: page cache, shared between replicas).
	anon map[string][]int64
	// extra, when set, is sampled with the processes: rows of their own, such as what the server holds on
	// disk (storedRow) and its Go heap, to set its memory against.
	extra func() map[string]int64
}

// storedRow names the JetStream store's samples in the table.
const storedRow = "(JetStream store: the account's stored bytes, on disk, not memory)"

// sample reads every process's VmRSS at once and then every `every`, until ctx ends.
func (s *memSeries) sample(ctx context.Context, f *fleet.Fleet, start time.Time, every time.Duration) {
	if s.rss == nil {
		s.rss = map[string][]int64{}
	}
	if s.anon == nil {
		s.anon = map[string][]int64{}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.at = append(s.at, time.Since(start))
		for _, name := range f.Names() {
			p := f.Proc(name)
			if p == nil {
				continue
			}
			if _, ok := s.rss[name]; !ok {
				s.rss[name] = make([]int64, len(s.at)-1)
			}
			if exited, _ := p.Exited(); exited {
				s.rss[name] = append(s.rss[name], 0)
				continue
			}
			v, anon, _ := p.Memory()
			s.rss[name] = append(s.rss[name], v)
			s.anon[name] = append(s.anon[name], anon)
		}
		if s.extra != nil {
			for name, v := range s.extra() {
				if _, ok := s.rss[name]; !ok {
					s.rss[name] = make([]int64, len(s.at)-1)
				}
				s.rss[name] = append(s.rss[name], v)
			}
		}
		for name, v := range s.rss {
			if len(v) < len(s.at) { // not read this time (0: left out of the fits)
				s.rss[name] = append(v, 0)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *memSeries) names() []string {
	names := make([]string, 0, len(s.rss))
	for k := range s.rss {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// middle is every process's sample nearest the middle of the run.
func (s *memSeries) middle() map[string]int64 {
	out := map[string]int64{}
	for name, v := range s.rss {
		if i := len(s.at) / 2; i < len(v) {
			out[name] = v[i]
		}
	}
	return out
}

// peaks renders each process's highest sample and its sample nearest mid-run: "mapper 31 (30) MiB".
func (s *memSeries) peaks() string {
	if len(s.at) == 0 {
		return "not sampled"
	}
	mid := s.middle()
	var parts []string
	for _, name := range s.names() {
		var peak int64
		for _, x := range s.rss[name] {
			peak = max(peak, x)
		}
		parts = append(parts, fmt.Sprintf("%s %.0f (%.0f) MiB", name, mib(peak), mib(mid[name])))
	}
	return strings.Join(parts, ", ")
}

// anonPeaks renders each process's highest anonymous sample (RssAnon): "mapper 19 MiB".
func (s *memSeries) anonPeaks() string {
	if len(s.anon) == 0 {
		return "not sampled"
	}
	var parts []string
	for _, name := range s.names() {
		v, ok := s.anon[name]
		if !ok {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.0f MiB", name, mib(slices.Max(append(v, 0)))))
	}
	return strings.Join(parts, ", ")
}

// slope is the least-squares fit of bytes over time, in MiB per minute, over the samples from index i on.
func (s *memSeries) slope(v []int64, from int) float64 {
	var n, sx, sy, sxx, sxy float64
	for i := from; i < len(v) && i < len(s.at); i++ {
		if v[i] == 0 {
			continue
		}
		x, y := s.at[i].Minutes(), mib(v[i])
		n++
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	if n < 2 || n*sxx-sx*sx == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// render prints the memory table of a long run: start, peak and end of every process, and its growth per
// minute fitted over the whole run and over its second half (a process whose memory levels off shows a
// second-half slope near zero).
func (s *memSeries) render(r *report, every time.Duration) {
	if len(s.at) == 0 {
		return
	}
	r.add("")
	r.add("Resident memory (VmRSS) over the soak, sampled every %s (%d samples over %s):", every, len(s.at), s.at[len(s.at)-1].Round(time.Second))
	r.add("")
	r.add("| process | start | peak | end | growth, least squares over the run | … over its second half |")
	r.add("|---|---|---|---|---|---|")
	for _, name := range s.names() {
		v := s.rss[name]
		var first, last, peak int64
		for _, x := range v {
			if x == 0 {
				continue
			}
			if first == 0 {
				first = x
			}
			last = x
			peak = max(peak, x)
		}
		r.add("| %s | %.1f MiB | %.1f MiB | %.1f MiB | %+.2f MiB/min | %+.2f MiB/min |", name, mib(first), mib(peak), mib(last),
			s.slope(v, 0), s.slope(v, len(v)/2))
	}
}
