package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// natsHeap reads the Go runtime of the bench's nats-server (`cosell nats --pprof`): its memory statistics
// during a soak, and heap profiles kept in dir to show what holds the memory.
type natsHeap struct {
	addr string // the --pprof address
	dir  string // where the profiles are written
}

// heapStats are the nats-server's runtime.MemStats figures the soak table samples.
type heapStats struct {
	inuse, idle, released, nextGC int64
}

// stats reads the MemStats block of /debug/pprof/heap?debug=1 (no GC is forced: a sample must not change
// what it measures).
func (h *natsHeap) stats(ctx context.Context) (heapStats, error) {
	var s heapStats
	body, err := h.get(ctx, "/debug/pprof/heap?debug=1")
	if err != nil {
		return s, err
	}
	defer body.Close()
	fields := map[string]*int64{"HeapInuse": &s.inuse, "HeapIdle": &s.idle, "HeapReleased": &s.released, "NextGC": &s.nextGC}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "# "), " = ")
		if p := fields[name]; ok && p != nil {
			*p, _ = strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		}
	}
	return s, sc.Err()
}

func (h *natsHeap) get(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.addr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("nats-server %s: %s", path, resp.Status)
	}
	return resp.Body, nil
}

// profile writes a heap profile of the nats-server as of its last GC to dir/name.pb.gz and returns the path.
func (h *natsHeap) profile(ctx context.Context, name string) (string, error) {
	body, err := h.get(ctx, "/debug/pprof/heap")
	if err != nil {
		return "", err
	}
	defer body.Close()
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(h.dir, name+".pb.gz")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// top is `go tool pprof -top` of a profile by in-use bytes (against base when given: what grew between
// the two), its first lines.
func top(ctx context.Context, path, base string, lines int) (string, error) {
	args := []string{"tool", "pprof", "-top", "-sample_index=inuse_space", "-nodecount=" + strconv.Itoa(lines)}
	if base != "" {
		args = append(args, "-diff_base="+base)
	}
	out, err := exec.CommandContext(ctx, "go", append(args, path)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %v\n%s", err, out)
	}
	return strings.TrimRight(string(out), "\n"), nil
}

// liveHeap is a heap profile's in-use bytes in all (as of the GC before it was taken), in MiB, from `go
// tool pprof -top`'s "… of N total" (pprof's kB, MB and GB are powers of 1024).
func liveHeap(ctx context.Context, path string) (float64, error) {
	out, err := top(ctx, path, "", 1)
	if err != nil {
		return 0, err
	}
	m := totalRe.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no total in go tool pprof's output:\n%s", out)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v * map[string]float64{"B": 1.0 / (1 << 20), "kB": 1.0 / (1 << 10), "MB": 1, "GB": 1 << 10}[m[2]], err
}

var totalRe = regexp.MustCompile(`of ([0-9.]+)(B|kB|MB|GB) total`)

// profileDir is where a run's nats-server heap profiles are kept (they outlive the run's work directory).
func profileDir() string {
	return filepath.Join(os.TempDir(), "cosell-bench-nats-"+time.Now().UTC().Format("20060102-150405"))
}

// Rows of the soak's memory table beside the processes' VmRSS.
const (
	heapInuseRow = "nats: Go heap in use (MemStats.HeapInuse)"
	heapIdleRow  = "nats: Go heap idle, not returned to the OS (HeapIdle − HeapReleased)"
	nextGCRow    = "nats: the GC's next target (NextGC)"
)

// soakRows samples, with every process's VmRSS, the JetStream store's stored bytes and the nats-server's
// Go heap.
func (b *bench) soakRows(ctx context.Context) func() map[string]int64 {
	return func() map[string]int64 {
		rows := map[string]int64{}
		if ai, err := b.js.AccountInfo(ctx); err == nil {
			rows[storedRow] = int64(ai.Store)
		}
		if s, err := b.heap.stats(ctx); err == nil {
			rows[heapInuseRow] = s.inuse
			rows[heapIdleRow] = s.idle - s.released
			rows[nextGCRow] = s.nextGC
		}
		return rows
	}
}

// soakProfiles takes the nats-server's heap profile now and at the middle of a soak of d, in the
// background; endProfiles takes the last one and waits for them.
func (b *bench) soakProfiles(ctx context.Context, d time.Duration) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	b.profiles = map[string]string{}
	take := func(name string) {
		path, err := b.heap.profile(ctx, name)
		b.profMu.Lock()
		defer b.profMu.Unlock()
		if err != nil {
			b.profErr = append(b.profErr, fmt.Sprintf("%s: %v", name, err))
			return
		}
		b.profiles[name] = path
	}
	go func() {
		defer close(done)
		take("soak-start")
		t := time.NewTimer(d / 2)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
			take("soak-middle")
		}
	}()
	b.stopProfiles = func() { cancel(); <-done }
	return b.stopProfiles
}

func (b *bench) endProfiles(ctx context.Context) {
	b.stopProfiles()
	path, err := b.heap.profile(ctx, "soak-end")
	b.profMu.Lock()
	defer b.profMu.Unlock()
	if err != nil {
		b.profErr = append(b.profErr, fmt.Sprintf("soak-end: %v", err))
		return
	}
	b.profiles["soak-end"] = path
}

// renderProfiles prints what holds the nats-server's heap at the soak's end, and what grew over its
// second half, from the profiles soakProfiles took.
func (b *bench) renderProfiles(ctx context.Context) {
	r := b.r
	end, mid := b.profiles["soak-end"], b.profiles["soak-middle"]
	for _, e := range b.profErr {
		r.add("(nats-server heap profile %s)", e)
	}
	if end == "" {
		return
	}
	r.add("")
	r.add("nats-server's heap at the soak's end, in-use bytes by allocation site as of its last GC (profiles kept in %s; `go tool pprof -sample_index=inuse_space` reads them):", b.heap.dir)
	r.add("")
	views := []struct{ title, base string }{{"at the end", ""}}
	if mid != "" {
		views = append(views, struct{ title, base string }{"grown over the second half (end − middle)", mid})
	}
	for _, p := range views {
		out, err := top(ctx, end, p.base, 12)
		if err != nil {
			r.add("(%s: %v)", p.title, err)
			continue
		}
		r.add("%s:", p.title)
		r.add("")
		r.add("```")
		for _, line := range strings.Split(out, "\n") {
			r.add("%s", line)
		}
		r.add("```")
		r.add("")
	}
}
