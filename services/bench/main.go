// Command bench measures cosell end to end on this machine, with every stage as its own OS process next to
// a nats-server and both emulators (internal/harness/fleet), and prints Markdown tables:
//
//   - the raw JetStream ceilings on the same server in the same run: async publish, sync publish, durable
//     fetch + ack, and the stages' way (sync publish with fetch + double-ack at once);
//   - throughput of referral creates (Partner Center → Salesforce) and Opportunity creates (the reverse), as a
//     backlog injected at once, and the honest ratio to the ceiling: records/s against the async publish
//     ceiling divided by the messages the server stores per record;
//   - the bus cost per change, from the server's own counters: stored publishes per stream and KV bucket,
//     durable deliveries per consumer, JetStream API requests;
//   - sync latency (source change → other side written) p50 / p99 / max at two steady rates (-rate,
//     -rate-high) and at saturation, and the same split per hop (hops.go: webhook received, snapshot stored,
//     fetched by the mapper, command stored, fetched by the writer, written, outcome stored);
//   - API economy: Salesforce calls (counted as Salesforce counts them: a Composite is one, the token none)
//     and Partner Center calls per 1,000 changes by endpoint, and the external writes a full replay of
//     already-converged records causes (target: zero);
//   - CPU per process in each phase (cores, and milliseconds per change), replay rate, resident memory of
//     every process during each steady run;
//   - with -big N, a backlog of N referrals whose per-change costs are set beside the -n backlog's; with
//     -soak D, a steady run of D with every process's memory sampled every -soak-every (start, peak, end,
//     growth per minute), the nats-server's Go heap beside it (cosell nats --pprof) and its heap profiles
//     at the soak's start, middle and end (what holds the memory, what grew over the second half);
//   - last, issue 16's targets against this run's own figures, met or not (targets.go).
//
// Usage: go run ./services/bench [-n 500] [-rate 100] [-rate-high 500] [-duration 20s] [-big 10000] [-soak 10m] [-nats-env GOMEMLIMIT=…] [-defaults] [-cdc [-outage 5000] [-outage-for 10m] [-idle 30s]]   (make bench, make bench-full)
//
// With -cdc it measures the Change Data Capture set instead (cdc.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

func main() {
	var o options
	flag.IntVar(&o.n, "n", 500, "records created in each backlog run")
	flag.IntVar(&o.rate, "rate", 100, "changes per second in the steady run")
	flag.IntVar(&o.rateHigh, "rate-high", 500, "changes per second in a second steady run (0 = none)")
	flag.DurationVar(&o.dur, "duration", 20*time.Second, "length of each steady run")
	flag.IntVar(&o.raw, "raw", 20000, "messages in each raw JetStream ceiling run")
	flag.IntVar(&o.big, "big", 0, "also run a Partner Center → Salesforce backlog of this many referrals and set its per-change costs beside the -n backlog's (e.g. 10000)")
	flag.DurationVar(&o.soak, "soak", 0, "also run a steady run this long, sampling every process's memory (e.g. 10m)")
	flag.DurationVar(&o.soakEvery, "soak-every", 10*time.Second, "with -soak: how often memory is sampled")
	flag.IntVar(&o.soakRate, "soak-rate", 0, "with -soak: changes per second (0 = -rate)")
	pcRate := flag.String("pc-write-rate", "", "COSELL_PC_WRITE_RATE for pc-writer (empty = its default, 10 calls/s; 0 = no limit)")
	flag.Func("env", "NAME=VALUE added to every stage's environment (repeatable), e.g. -env COSELL_DUPLICATE_WINDOW=2m", func(kv string) error {
		if name, _, ok := strings.Cut(kv, "="); !ok || !strings.HasPrefix(name, "COSELL_") {
			return fmt.Errorf("want COSELL_NAME=value, got %q", kv)
		}
		userEnv = append(userEnv, kv)
		return nil
	})
	flag.Func("nats-env", "NAME=VALUE added to the nats-server's (cosell nats) environment (repeatable), e.g. -nats-env GOMEMLIMIT=200MiB or -nats-env GOGC=50", func(kv string) error {
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
			return fmt.Errorf("want NAME=value, got %q", kv)
		}
		natsEnv = append(natsEnv, kv)
		return nil
	})
	flag.BoolVar(&scale, "scale", true, "also run the mapper and both writers at 1, 2 and 3 replicas (backlogs of n referrals and n/5 Opportunities each) and count duplicates")
	defaults := flag.Bool("defaults", false, "run the stages with the production defaults of the Salesforce poll and Audit summary intervals instead of the bench's (500ms, 1s)")
	cdc := flag.Bool("cdc", false, "run the Change Data Capture set instead (cdc.go): idle org, SF → PC latency and calls on change events, PC → SF calls, an sf-ingest outage's catch-up")
	outage := flag.Int("outage", 5000, "with -cdc: changes made while sf-ingest is down")
	outageFor := flag.Duration("outage-for", 0, "with -cdc: how long sf-ingest stays down, its changes spread over it (e.g. 10m; 0 = as fast as they go), then the first backstop poll after the catch-up is waited for too")
	idle := flag.Duration("idle", 30*time.Second, "with -cdc: the idle window counted for REST calls")
	flag.Parse()
	if !*defaults {
		extraEnv = append(extraEnv, benchSettings...)
	}
	extraEnv = append(extraEnv, userEnv...)
	calmFor = 2 * time.Second
	if d, err := time.ParseDuration(envValue("COSELL_AUDIT_SUMMARY_INTERVAL", "30s")); err == nil {
		calmFor += d
	}
	if *pcRate != "" {
		extraEnv = append(extraEnv, "COSELL_PC_WRITE_RATE="+*pcRate)
	}
	// The drivers send hundreds of requests a second to the emulators: keep their connections, as a
	// client of the real services would, instead of a new one per request beyond the default two idle.
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t.MaxIdleConnsPerHost = 64
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *cdc {
		err := runCDC(ctx, cdcOptions{n: o.n, rate: o.rate, dur: o.dur, raw: o.raw, outage: *outage, outageFor: *outageFor, idle: *idle})
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// benchSettings make a run settle quickly: Salesforce polled every 500ms, Audit summaries every second.
// They are not the production defaults (the report prints both).
var benchSettings = []string{"COSELL_SF_POLL_INTERVAL=500ms", "COSELL_AUDIT_SUMMARY_INTERVAL=1s"}

// scale runs the replica phase.
var scale bool

// envValue is a variable's value in extraEnv (the last one set, as a process's environment takes it), or
// def (its production default).
func envValue(name, def string) string {
	v := def
	for _, kv := range extraEnv {
		if k, val, _ := strings.Cut(kv, "="); k == name {
			v = val
		}
	}
	return v
}

// extraEnv is added to every stage's environment.
var extraEnv []string

// userEnv are the -env settings.
var userEnv []string

// natsEnv are the -nats-env settings.
var natsEnv []string

type report struct {
	lines []string
}

func (r *report) add(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.lines = append(r.lines, line)
	fmt.Fprintln(os.Stderr, line)
}

// phase is what one measured phase cost: bus work, API calls, CPU per process, wall time, and when the
// server delivered each message to the durables the hops name.
type phase struct {
	bus       busState
	api       snapshot
	cpu       map[string]time.Duration
	startedAt time.Time
	log       *deliveryLog
}

func begin(ctx context.Context, f *fleet.Fleet, probe *busProbe) (phase, error) {
	b, err := probe.read(ctx)
	if err != nil {
		return phase{}, err
	}
	// A stage started since (a replica, a restart) provisioned its durables again, which clears sampling.
	if err := sampleAcks(ctx, probe.js); err != nil {
		return phase{}, err
	}
	log, err := probe.watchDeliveries()
	return phase{bus: b, api: counts(ctx, f), cpu: cpuTimes(f), startedAt: time.Now(), log: log}, err
}

// measured is the difference between a phase's start and now.
type measured struct {
	bus      busCost
	from, to snapshot
	cpu      string
	// used is the CPU time each process used over the phase.
	used  map[string]time.Duration
	since time.Time
	log   *deliveryLog
}

func (p phase) end(ctx context.Context, f *fleet.Fleet, probe *busProbe) (measured, error) {
	wall := time.Since(p.startedAt)
	used := cpuUsed(p.cpu, cpuTimes(f))
	p.log.stop()
	b, err := probe.read(ctx)
	return measured{bus: p.bus.to(b), from: p.api, to: counts(ctx, f), cpu: cpuShare(used, wall), used: used,
		since: p.startedAt, log: p.log}, err
}

// follow is the hop samples of the phase's changes in one direction.
func (m measured) follow(ctx context.Context, js jetstream.JetStream, dir direction) (hopTimes, error) {
	return followChanges(ctx, js, m.since, dir, m.log)
}

// options size a run.
type options struct {
	n, rate, rateHigh, raw, big, soakRate int
	dur, soak, soakEvery                  time.Duration
}

func run(ctx context.Context, o options) (err error) {
	b, err := startBench(ctx, o.raw)
	if err != nil {
		return err
	}
	defer b.Done(&err)
	f, bin, js, r := b.f, b.bin, b.js, b.r
	hopsTab := &hopTable{}

	// 2. Backlog PC → SF.
	small, refIDs, err := b.pcBacklog(ctx, o.n, "Bench")
	if err != nil {
		return err
	}
	b.fig.pcBacklog = &small
	hopsTab.add(fmt.Sprintf("PC → SF backlog of %d", o.n), small.hops)

	// 3. Backlog SF → PC, at the run's pc-writer rate and with its limit off (issue 16's target).
	sfRun, err := b.sfBacklog(ctx, o.n, false)
	if err != nil {
		return err
	}
	b.fig.sfBacklog = &sfRun
	hopsTab.add(fmt.Sprintf("SF → PC backlog of %d", o.n), sfRun.hops)
	if sfRun.limitOff {
		b.fig.sfBacklogOff = &sfRun
	} else {
		off, err := b.sfBacklog(ctx, o.n, true)
		if err != nil {
			return err
		}
		b.fig.sfBacklogOff = &off
		hopsTab.add(fmt.Sprintf("SF → PC backlog of %d, pc-writer's limit off", o.n), off.hops)
	}

	// 4. Steady trickles of Partner Center changes.
	for _, rate := range []int{o.rate, o.rateHigh} {
		if rate <= 0 {
			continue
		}
		st, err := b.steadyPhase(ctx, refIDs, rate, o.dur, time.Second, nil)
		if err != nil {
			return err
		}
		b.fig.steady = append(b.fig.steady, st)
		hopsTab.add(fmt.Sprintf("steady %d/s PC → SF", rate), st.h)
	}

	// 5. Replay of every stream from sequence 1.
	if err := b.replay(ctx); err != nil {
		return err
	}

	// 5b. sf-writer's own backlog: its commands all waiting when it starts.
	wb, err := b.writerBacklog(ctx, o.n)
	if err != nil {
		return err
	}
	b.fig.writerBacklog = &wb

	// 6. A large backlog: the per-change costs beside the small one's.
	var growth []backlogRun
	if o.big > 0 {
		big, _, err := b.pcBacklog(ctx, o.big, "Big")
		if err != nil {
			return err
		}
		hopsTab.add(fmt.Sprintf("PC → SF backlog of %d", o.big), big.hops)
		growth = []backlogRun{small, big}
	}

	// 7. A long steady run: memory of every process over it.
	var soak *memSeries
	if o.soak > 0 {
		rate := o.soakRate
		if rate <= 0 {
			rate = o.rate
		}
		soak = &memSeries{}
		st, err := b.steadyPhase(ctx, refIDs, rate, o.soak, o.soakEvery, soak)
		if err != nil {
			return err
		}
		b.fig.soak = &st
		hopsTab.add(fmt.Sprintf("soak %d/s for %s", rate, o.soak), st.h)
	}

	// 8. The mapper and both writers at 1, 2 and 3 replicas, sharing their durables (last: the replicas stay).
	if scale {
		for replicas := 1; replicas <= 3; replicas++ {
			for _, stage := range []string{"mapper", "pc-writer", "sf-writer"} {
				for i := 2; i <= replicas; i++ {
					if f.Proc(fmt.Sprintf("%s#%d", stage, i)) == nil {
						if _, err := f.StartReplica(ctx, stage, i); err != nil {
							return err
						}
					}
				}
			}
			row, err := scaleRun(ctx, f, js, o.n, max(o.n/5, 1))
			if err != nil {
				return err
			}
			r.add("| mapper, pc-writer and sf-writer at %d replica(s) each | %s |", replicas, row)
		}
	}
	hopsTab.render(r)
	renderGrowth(r, growth)
	if soak != nil {
		soak.render(r, o.soakEvery)
		b.renderProfiles(ctx)
	}
	if err := b.renderTargets(ctx, o); err != nil {
		return err
	}
	r.add("")
	r.add("Machine: %d cores (%s/%s), Go %s, %s, load average before the run %s, after it %s. Command: `go run ./services/bench %s`.",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Now().UTC().Format("2006-01-02"), loadBefore, loadAverage(), strings.Join(os.Args[1:], " "))
	r.add("Stage settings: %s.", settingsLine(ctx, bin))
	fmt.Println(strings.Join(r.lines, "\n"))
	return nil
}

// honest renders a phase's rate against the same run's async ceiling divided by the messages the server
// stored per record.
func (b *bench) honest(perSec float64, m measured, count int) string {
	stored := float64(sum(m.bus.stored)) / float64(count)
	if stored == 0 {
		return "no stored messages"
	}
	bound := b.ceil.async / stored
	return fmt.Sprintf("%.1f%% of the async ceiling ÷ %.1f stored messages per record = %.0f/s", 100*perSec/bound, stored, bound)
}

// backlogRun is what one Partner Center → Salesforce backlog cost, kept to set backlogs of two sizes side by side.
type backlogRun struct {
	n    int
	rate float64
	m    measured
	hops hopTimes
}

// pcBacklog shares n new referrals at once (customers named "<prefix> customer i%50"), waits until every
// one is linked and everything is quiet, and reports the phase's rows.
func (b *bench) pcBacklog(ctx context.Context, n int, prefix string) (backlogRun, []string, error) {
	run := backlogRun{n: n}
	var refIDs []string
	var err error
	run.rate, run.m, run.hops, err = b.backlog(ctx, backlogSpec{
		n: n, title: fmt.Sprintf("Partner Center → Salesforce, backlog of %d new referrals", n), unit: "referral", units: "referrals", sfNote: "backlog", dir: pcToSF,
		count: func(ctx context.Context) (int, error) { return sfLinked(ctx, b.f) },
		create: func(ctx context.Context) (err error) {
			refIDs, err = createReferralsNamed(ctx, b.f, n, prefix)
			return err
		},
	})
	return run, refIDs, err
}

// backlogSpec is one backlog phase: n records made at once, done when count has grown by n.
type backlogSpec struct {
	n                  int
	title, unit, units string // the main row's title, and what a record is ("referral", "Opportunity") and records are
	sfNote             string // what the Salesforce calls row includes
	dir                direction
	count              func(context.Context) (int, error)
	create             func(context.Context) error
}

// backlog runs one backlog phase: it makes the records, waits until every one has its counterpart and
// everything is quiet, and reports the phase's rows (rate, bus cost, API calls, CPU, latency).
func (b *bench) backlog(ctx context.Context, s backlogSpec) (rate float64, m measured, h hopTimes, err error) {
	f, r := b.f, b.r
	before, err := s.count(ctx)
	if err != nil {
		return 0, m, h, err
	}
	ph, err := begin(ctx, f, b.probe)
	if err != nil {
		return 0, m, h, err
	}
	if err := s.create(ctx); err != nil {
		return 0, m, h, err
	}
	if err := waitRecords(ctx, s.count, before+s.n, time.Duration(s.n)*time.Second); err != nil {
		return 0, m, h, err
	}
	el := time.Since(ph.startedAt)
	if _, err := quiet(ctx, b.js, f); err != nil {
		return 0, m, h, err
	}
	if m, err = ph.end(ctx, f, b.probe); err != nil {
		return 0, m, h, err
	}
	rate = float64(s.n) / el.Seconds()
	r.add("| %s | %.1f %s/s (%s) |", s.title, rate, strings.ToLower(s.units), b.honest(rate, m, s.n))
	m.bus.report(r, s.n, s.unit)
	r.add("| … Salesforce API calls per 1,000 %s (%s) | %.0f %s|", s.units, s.sfNote, per1000(m.to.sfAPI()-m.from.sfAPI(), s.n), sfEndpoints(m.from, m.to))
	r.add("| … Partner Center calls per 1,000 %s (backlog) | %.0f %s|", s.units, per1000(m.to.pcAPI()-m.from.pcAPI(), s.n), pcEndpoints(m.from, m.to))
	r.add("| … CPU, cores used over the phase (share of the fleet's CPU time) | %s |", m.cpu)
	r.add("| … CPU per %s | %s |", s.unit, cpuPerChange(m.used, s.n))
	if h, err = m.follow(ctx, b.js, s.dir); err != nil {
		return rate, m, h, err
	}
	r.add("| … sync latency at saturation p50 / p99 / max | %s |", h.endToEnd())
	return rate, m, h, nil
}

// sfBacklogRun is what one Salesforce → Partner Center backlog cost.
type sfBacklogRun struct {
	n        int
	rate     float64
	limitOff bool // pc-writer ran with COSELL_PC_WRITE_RATE=0
	m        measured
	hops     hopTimes
}

// sfBacklog marks n new Opportunities Sync with Partner Center at once, waits until every one names its
// referral and everything is quiet, and reports the phase's rows. With limitOff, pc-writer is restarted with
// its Partner Center rate limit off for the phase (and then with the run's settings again), unless the run
// has it off already.
func (b *bench) sfBacklog(ctx context.Context, n int, limitOff bool) (run sfBacklogRun, err error) {
	run = sfBacklogRun{n: n, limitOff: limitOff || envValue("COSELL_PC_WRITE_RATE", "") == "0"}
	what := fmt.Sprintf("backlog of %d new synced Opportunities", n)
	if limitOff && envValue("COSELL_PC_WRITE_RATE", "") != "0" {
		what += ", pc-writer's Partner Center limit off (COSELL_PC_WRITE_RATE=0)"
		if err := b.restartStage(ctx, "pc-writer", "COSELL_PC_WRITE_RATE=0"); err != nil {
			return run, err
		}
		defer func() {
			if rerr := b.restartStage(ctx, "pc-writer"); err == nil {
				err = rerr
			}
		}()
	}
	run.rate, run.m, run.hops, err = b.backlog(ctx, backlogSpec{
		n: n, title: "Salesforce → Partner Center, " + what, unit: "Opportunity", units: "Opportunities", sfNote: "backlog, incl. polling and link write-back", dir: sfToPC,
		count:  func(ctx context.Context) (int, error) { return pcFromSF(ctx, b.f) },
		create: func(ctx context.Context) error { return createOpportunities(ctx, b.f, n) },
	})
	return run, err
}

// restartStage stops a stage (SIGTERM) and starts it again with env added to the fleet's.
func (b *bench) restartStage(ctx context.Context, name string, env ...string) error {
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := b.f.Stop(stopCtx, name); err != nil {
		return err
	}
	_, err := b.f.StartStage(ctx, name, env...)
	return err
}

// steadyRun is what one steady phase measured.
type steadyRun struct {
	rate, made int
	d          time.Duration
	m          measured
	h          hopTimes
	// changeLat is every change made until the first write of its version or a newer one; unwritten
	// counts the changes never written.
	changeLat []time.Duration
	unwritten int
	mem       *memSeries
}

// steadyPhase changes referrals' deal values at rate per second for d, sampling every process's memory
// every `every` (into soak when given), and reports the phase's rows.
func (b *bench) steadyPhase(ctx context.Context, refIDs []string, rate int, d, every time.Duration, soak *memSeries) (steadyRun, error) {
	run := steadyRun{rate: rate, d: d}
	f, r := b.f, b.r
	ph, err := begin(ctx, f, b.probe)
	if err != nil {
		return run, err
	}
	mem := soak
	if mem == nil {
		mem = &memSeries{}
	} else {
		mem.extra = b.soakRows(ctx)
		endProfiles := b.soakProfiles(ctx, d)
		defer endProfiles() // an error before: the profiles so far
	}
	made, err := drive(ctx, f, refIDs, rate, d, every, mem)
	if soak != nil {
		b.endProfiles(ctx)
	}
	changes := len(made)
	if err != nil {
		return run, err
	}
	if _, err := quiet(ctx, b.js, f); err != nil {
		return run, err
	}
	m, err := ph.end(ctx, f, b.probe)
	if err != nil {
		return run, err
	}
	h, err := m.follow(ctx, b.js, pcToSF)
	if err != nil {
		return run, err
	}
	what := "steady"
	if soak != nil {
		what = "soak:"
	}
	r.add("| %s %d deal-value changes/s on Partner Center for %s (%d made, %.0f/s): sync latency p50 / p99 / max | %s |", what, rate, d, changes, float64(changes)/d.Seconds(), h.endToEnd())
	lat, unwritten := h.coverage(made)
	run.made, run.m, run.h, run.changeLat, run.unwritten, run.mem = changes, m, h, lat, unwritten, mem
	r.add("| … every change made, until the first write of its version or a newer one (a change superseded before it was read counts until the newer value was written) | %s (%d changes, %d never written) |", quantiles(lat), len(lat), unwritten)
	m.bus.report(r, changes, "change")
	r.add("| … Salesforce API calls per 1,000 changes (trickle, incl. polling) | %.0f %s|", per1000(m.to.sfAPI()-m.from.sfAPI(), changes), sfEndpoints(m.from, m.to))
	r.add("| … Partner Center calls per 1,000 changes (trickle) | %.0f %s|", per1000(m.to.pcAPI()-m.from.pcAPI(), changes), pcEndpoints(m.from, m.to))
	r.add("| … CPU, cores used over the run and until quiet (share of the fleet's CPU time) | %s |", m.cpu)
	r.add("| … CPU per change | %s |", cpuPerChange(m.used, changes))
	r.add("| … resident memory (VmRSS) during the run, peak (at mid-run) | %s |", mem.peaks())
	r.add("| … of it anonymous memory (RssAnon: heap, stacks, runtime; the rest is the binary's pages, page cache shared by replicas), peak | %s |", mem.anonPeaks())
	return run, nil
}

// replay rewinds every durable consumer to sequence 1, waits until quiet and reports its rate and the
// external writes it caused (target: zero).
func (b *bench) replay(ctx context.Context) error {
	var msgs uint64
	for _, c := range contracts.Consumers() {
		info, err := b.js.Consumer(ctx, c.Stream, c.Durable)
		if err != nil {
			return err
		}
		msgs += info.CachedInfo().Delivered.Consumer
	}
	ph, err := begin(ctx, b.f, b.probe)
	if err != nil {
		return err
	}
	for _, c := range contracts.Consumers() {
		if _, err := b.js.ResetConsumerToSequence(ctx, c.Stream, c.Durable, 1); err != nil {
			return err
		}
	}
	calm, err := quiet(ctx, b.js, b.f)
	if err != nil {
		return err
	}
	el := calm.Sub(ph.startedAt)
	m, err := ph.end(ctx, b.f, b.probe)
	if err != nil {
		return err
	}
	b.r.add("| replay of every stream from sequence 1 (%d deliveries) | %.0f messages/s (until the last delivery or write) |", msgs, float64(msgs)/el.Seconds())
	b.fig.replayed, b.fig.replaySF, b.fig.replayPC = true, m.to.sfWrites()-m.from.sfWrites(), m.to.pcWrites()-m.from.pcWrites()
	b.r.add("| … external writes caused by the replay | Salesforce %d, Partner Center %d %s|", b.fig.replaySF, b.fig.replayPC, diff(m.from, m.to))
	return nil
}

// renderGrowth sets the per-referral costs of backlogs of different sizes side by side.
func renderGrowth(r *report, runs []backlogRun) {
	if len(runs) < 2 {
		return
	}
	r.add("")
	r.add("Backlog size against the cost per change (Partner Center → Salesforce, same run):")
	r.add("")
	head := make([]string, len(runs))
	for i, g := range runs {
		head[i] = fmt.Sprintf("backlog of %d", g.n)
	}
	r.add("| per referral | %s |", strings.Join(head, " | "))
	r.add("|---|%s", strings.Repeat("---|", len(runs)))
	row := func(name string, cell func(g backlogRun) string) {
		cells := make([]string, len(runs))
		for i, g := range runs {
			cells[i] = cell(g)
		}
		r.add("| %s | %s |", name, strings.Join(cells, " | "))
	}
	row("referrals/s", func(g backlogRun) string { return fmt.Sprintf("%.1f", g.rate) })
	row("stored publishes", func(g backlogRun) string { return fmt.Sprintf("%.2f", float64(sum(g.m.bus.stored))/float64(g.n)) })
	row("… of them links bucket", func(g backlogRun) string {
		return fmt.Sprintf("%.2f", float64(g.m.bus.stored["KV_"+contracts.BucketLinks])/float64(g.n))
	})
	row("durable deliveries", func(g backlogRun) string { return fmt.Sprintf("%.2f", float64(sum(g.m.bus.deliveries))/float64(g.n)) })
	row("JetStream API requests", func(g backlogRun) string { return fmt.Sprintf("%.2f", float64(g.m.bus.api)/float64(g.n)) })
	row("Salesforce API calls (per 1,000)", func(g backlogRun) string {
		return fmt.Sprintf("%.0f", per1000(g.m.to.sfAPI()-g.m.from.sfAPI(), g.n))
	})
	row("Partner Center calls (per 1,000)", func(g backlogRun) string {
		return fmt.Sprintf("%.0f", per1000(g.m.to.pcAPI()-g.m.from.pcAPI(), g.n))
	})
	row("CPU, all processes (ms)", func(g backlogRun) string { return fmt.Sprintf("%.2f", cpuMillis(g.m.used, "", g.n)) })
	for _, p := range []string{"nats", "mapper", "auditor", "sf-writer", "pc-ingest", "pc-emulator", "sf-emulator"} {
		row("… "+p+" (ms)", func(g backlogRun) string { return fmt.Sprintf("%.2f", cpuMillis(g.m.used, p, g.n)) })
	}
	row("sync latency p50 / p99 / max", func(g backlogRun) string { return quantiles(g.hops.d[len(hops)-1]) })
}

// population is how many records each emulator holds, for counting duplicates.
type population struct {
	opps, linkedOpps                   int
	refs, namingOpp, distinctOppsNamed int
}

func count(ctx context.Context, f *fleet.Fleet) (population, error) {
	var p population
	var sfc struct {
		TotalSize int `json:"totalSize"`
	}
	if err := fleet.GetJSON(ctx, f.SFURL()+"/_emulator/sobjects/Opportunity?count=true", &sfc); err != nil {
		return p, err
	}
	p.opps = sfc.TotalSize
	linked, err := sfLinked(ctx, f)
	if err != nil {
		return p, err
	}
	p.linkedOpps = linked
	var pcc struct {
		Total    int `json:"total"`
		Linked   int `json:"withExternalReferenceId"`
		Distinct int `json:"distinctExternalReferenceIds"`
	}
	if err := fleet.GetJSON(ctx, f.PCURL()+"/_emulator/referrals?count=true", &pcc); err != nil {
		return p, err
	}
	p.refs, p.namingOpp, p.distinctOppsNamed = pcc.Total, pcc.Linked, pcc.Distinct
	return p, nil
}

// scaleRun runs a backlog of n referrals, then one of m Opportunities, and counts duplicates: every new
// record must have exactly one counterpart (one Opportunity per referral, one referral per Opportunity).
func scaleRun(ctx context.Context, f *fleet.Fleet, js jetstream.JetStream, n, m int) (string, error) {
	before, err := count(ctx, f)
	if err != nil {
		return "", err
	}
	t0 := time.Now()
	if _, err := createReferrals(ctx, f, n); err != nil {
		return "", err
	}
	if err := waitRecords(ctx, func(ctx context.Context) (int, error) { return sfLinked(ctx, f) }, before.linkedOpps+n, time.Duration(n)*time.Second); err != nil {
		return "", err
	}
	pcToSF := float64(n) / time.Since(t0).Seconds()
	if _, err := quiet(ctx, js, f); err != nil {
		return "", err
	}
	mid, err := count(ctx, f)
	if err != nil {
		return "", err
	}
	t0 = time.Now()
	if err := createOpportunities(ctx, f, m); err != nil {
		return "", err
	}
	if err := waitRecords(ctx, func(ctx context.Context) (int, error) { return pcFromSF(ctx, f) }, mid.namingOpp+m, time.Duration(m)*time.Second); err != nil {
		return "", err
	}
	sfToPC := float64(m) / time.Since(t0).Seconds()
	if _, err := quiet(ctx, js, f); err != nil {
		return "", err
	}
	after, err := count(ctx, f)
	if err != nil {
		return "", err
	}
	dups := (after.opps - before.opps - (n + m)) + (after.refs - before.refs - (n + m)) +
		(after.linkedOpps - before.linkedOpps - (n + m)) +
		((after.namingOpp - after.distinctOppsNamed) - (before.namingOpp - before.distinctOppsNamed))
	return fmt.Sprintf("PC → SF %.1f referrals/s (%d), SF → PC %.1f opportunities/s (%d); duplicates %d (new Opportunities %d, new referrals %d, referrals naming one Opportunity twice %d)",
		pcToSF, n, sfToPC, m, dups, after.opps-before.opps, after.refs-before.refs,
		(after.namingOpp-after.distinctOppsNamed)-(before.namingOpp-before.distinctOppsNamed)), nil
}

// loadBefore is /proc/loadavg when the bench started: other work on the machine moves the figures.
var loadBefore = loadAverage()

// loadAverage is the 1, 5 and 15 minute load averages (/proc/loadavg).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// settingsLine says which settings the stages ran with against the production defaults, read from the built
// binaries' --help (so the line cannot drift from the code).
func settingsLine(ctx context.Context, bin string) string {
	var set []string
	for _, kv := range extraEnv {
		name, value, _ := strings.Cut(kv, "=")
		def := helpDefault(ctx, bin, name)
		set = append(set, fmt.Sprintf("%s=%s (production default %s)", name, value, def))
	}
	prod := []string{}
	for _, kv := range benchSettings {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(extraEnv, func(s string) bool { return strings.HasPrefix(s, name+"=") }) {
			prod = append(prod, fmt.Sprintf("%s=%s", name, helpDefault(ctx, bin, name)))
		}
	}
	switch {
	case len(set) == 0:
		return "the production defaults (" + strings.Join(prod, ", ") + ")"
	case len(prod) == 0:
		return "bench settings, not the production defaults: " + strings.Join(set, ", ")
	}
	return "bench settings, not the production defaults: " + strings.Join(set, ", ") + "; production defaults: " + strings.Join(prod, ", ")
}

// helpDefault finds the default of a variable in the --help of the stage binaries.
func helpDefault(ctx context.Context, bin, name string) string {
	for _, s := range fleet.Stages {
		out, _ := exec.CommandContext(ctx, filepath.Join(bin, s), "--help").CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == name && f[1] == "default" {
				return strings.TrimSuffix(f[2], ";")
			}
		}
	}
	return "?"
}

func createReferrals(ctx context.Context, f *fleet.Fleet, n int) ([]string, error) {
	return createReferralsNamed(ctx, f, n, "Bench")
}

// createReferralsNamed shares n referrals "<prefix> referral i" of 50 customers "<prefix> customer i%50".
func createReferralsNamed(ctx context.Context, f *fleet.Fleet, n int, prefix string) ([]string, error) {
	ids := make([]string, n)
	err := parallel(n, 8, func(i int) error {
		var out struct {
			ID string `json:"id"`
		}
		err := fleet.SendJSON(ctx, "POST", f.PCURL()+"/_emulator/referrals", map[string]any{
			"name":            fmt.Sprintf("%s referral %d", prefix, i),
			"customerProfile": map[string]any{"name": fmt.Sprintf("%s customer %d", prefix, i%50), "address": map[string]any{"city": "Oslo", "postalCode": "0150", "country": "NO"}},
			"consent":         map[string]any{"consentToToShareInfoWithOthers": true, "consentToContact": true},
			"details":         map[string]any{"dealValue": 1000 + i, "currency": "EUR", "closingDateTime": "2027-06-30T00:00:00Z"},
		}, &out)
		ids[i] = out.ID
		return err
	})
	return ids, err
}

func createOpportunities(ctx context.Context, f *fleet.Fleet, n int) error {
	// A flagged Opportunity needs its customer Account: without one cosell refuses to share it.
	var acc struct {
		ID string `json:"id"`
	}
	if err := fleet.SendJSON(ctx, "POST", f.SFURL()+"/_emulator/sobjects/Account", map[string]any{
		"Name": "Bench customer", "BillingCountry": "US", "BillingPostalCode": "98052",
	}, &acc); err != nil {
		return err
	}
	return parallel(n, 8, func(i int) error {
		return fleet.SendJSON(ctx, "POST", f.SFURL()+"/_emulator/sobjects/Opportunity", map[string]any{
			"Name": fmt.Sprintf("Bench opportunity %d", i), "AccountId": acc.ID, "Amount": 500 + i, "CurrencyIsoCode": "USD", "CloseDate": "2027-05-01",
			"StageName": "Qualification", "Sync_with_Partner_Center__c": true,
		}, nil)
	})
}

// steady changes referrals' deal values at rate per second for d; it returns how many changes it made and
// every process's memory sampled in the middle of the run.
func steady(ctx context.Context, f *fleet.Fleet, ids []string, rate int, d time.Duration) (int, map[string]int64, error) {
	var mem memSeries
	made, err := drive(ctx, f, ids, rate, d, d/2, &mem)
	return len(made), mem.middle(), err
}

// drive changes referrals' deal values at rate per second for d, and samples every process's memory into
// mem every `every` (at the start, then on); it returns each change it made with the version time Partner
// Center gave it.
func drive(ctx context.Context, f *fleet.Fleet, ids []string, rate int, d, every time.Duration, mem *memSeries) ([]change, error) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	end := start.Add(d)
	var mu sync.Mutex
	var made []change
	var firstErr atomic.Value
	var wg sync.WaitGroup
	sampling, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		mem.sample(sampling, f, start, every)
	}()
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		<-tick.C
		id := ids[i%len(ids)]
		value := 20000 + i
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out struct {
				UpdatedDateTime time.Time `json:"updatedDateTime"`
			}
			if err := fleet.SendJSON(ctx, "PATCH", f.PCURL()+"/_emulator/referrals/"+id, map[string]any{"details": map[string]any{"dealValue": value}}, &out); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			mu.Lock()
			made = append(made, change{id, out.UpdatedDateTime})
			mu.Unlock()
		}()
	}
	wg.Wait()
	stopSampling()
	<-sampled
	if err, _ := firstErr.Load().(error); err != nil {
		return made, err
	}
	return made, ctx.Err()
}

func parallel(n, workers int, fn func(int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

type snapshot struct{ pc, sf map[string]int }

func counts(ctx context.Context, f *fleet.Fleet) snapshot {
	var s snapshot
	_ = fleet.GetJSON(ctx, f.PCURL()+"/_emulator/counts", &s.pc)
	_ = fleet.GetJSON(ctx, f.SFURL()+"/_emulator/counts", &s.sf)
	return s
}

// pcAPI counts the Partner Center API calls cosell made (not the seller's actions or webhook deliveries).
func (s snapshot) pcAPI() int {
	total := 0
	for k, v := range s.pc {
		if pcCounted(k) {
			total += v
		}
	}
	return total
}

func pcCounted(k string) bool {
	return !(strings.HasPrefix(k, "seller.") || (strings.HasPrefix(k, "webhooks.") && !strings.HasPrefix(k, "webhooks.register") &&
		!strings.HasPrefix(k, "webhooks.get") && !strings.HasPrefix(k, "webhooks.update")) || k == "throttled")
}

// sfAPI counts Salesforce API calls the way Salesforce counts them against the daily allowance: a
// Composite request is one call whatever it holds (its subrequests are counted by the emulator as
// "composite.<name>"), the OAuth token endpoint and the versions list are none, and the Pub/Sub API has
// an allocation of its own (REST API Developer Guide, "API Request Limits and Allocations").
func (s snapshot) sfAPI() int {
	total := 0
	for k, v := range s.sf {
		if !sfCounted(k) {
			continue
		}
		total += v
	}
	return total
}

func sfCounted(endpoint string) bool {
	return endpoint != "token" && endpoint != "versions" && !strings.HasPrefix(endpoint, "composite.") && !strings.HasPrefix(endpoint, "pubsub.") &&
		!strings.HasPrefix(endpoint, "scan.") // the emulator's count of SystemModstamp queries (cdc.go scans), inside calls counted already
}

// sfEndpoints and pcEndpoints name the calls that moved, for a row that explains its figure.
func sfEndpoints(a, b snapshot) string {
	return endpoints(a.sf, b.sf, sfCounted)
}

func pcEndpoints(a, b snapshot) string {
	return endpoints(a.pc, b.pc, func(k string) bool { return pcCounted(k) })
}

func endpoints(a, b map[string]int, counted func(string) bool) string {
	keys := make([]string, 0, len(b))
	for k := range b {
		if b[k]-a[k] > 0 && counted(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Slice(keys, func(i, j int) bool { return b[keys[i]]-a[keys[i]] > b[keys[j]]-a[keys[j]] })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, b[k]-a[k]))
	}
	return "(calls: " + strings.Join(parts, ", ") + ") "
}

func (s snapshot) pcWrites() int { return s.pc["referrals.create"] + s.pc["referrals.patch"] }

func (s snapshot) sfWrites() int {
	total := 0
	for k, v := range s.sf {
		if strings.Contains(k, "create") || strings.Contains(k, "update") || strings.Contains(k, "upsert") || strings.Contains(k, "delete") {
			total += v
		}
	}
	return total
}

// diff names the emulator endpoints whose counts moved, for a report that explains itself.
func diff(a, b snapshot) string {
	var parts []string
	for _, side := range []struct {
		name string
		x, y map[string]int
	}{{"sf", a.sf, b.sf}, {"pc", a.pc, b.pc}} {
		keys := make([]string, 0, len(side.y))
		for k := range side.y {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if d := side.y[k] - side.x[k]; d != 0 {
				parts = append(parts, fmt.Sprintf("%s %s +%d", side.name, k, d))
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "(calls: " + strings.Join(parts, ", ") + ") "
}

func per1000(calls, changes int) float64 {
	if changes == 0 {
		return 0
	}
	return 1000 * float64(calls) / float64(changes)
}

// waitRecords polls count until it reaches want, for up to d or until ctx is done.
func waitRecords(ctx context.Context, count func(context.Context) (int, error), want int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	got := 0
	for {
		n, err := count(ctx)
		if err == nil && n >= want {
			return nil
		}
		if err == nil {
			got = n
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d records after %s: %w", got, want, d, ctx.Err())
		case <-t.C:
		}
	}
}

// sfLinked counts Opportunities that carry a Referral Identifier (the emulator's count, not a listing).
func sfLinked(ctx context.Context, f *fleet.Fleet) (int, error) {
	var c struct {
		TotalSize int `json:"totalSize"`
	}
	err := fleet.GetJSON(ctx, f.SFURL()+"/_emulator/sobjects/Opportunity?count=true&notNull=Referral_Identifier__c", &c)
	return c.TotalSize, err
}

// pcFromSF counts referrals that name an Opportunity (created from Salesforce, or linked from Partner Center).
func pcFromSF(ctx context.Context, f *fleet.Fleet) (int, error) {
	var c struct {
		Linked int `json:"withExternalReferenceId"`
	}
	err := fleet.GetJSON(ctx, f.PCURL()+"/_emulator/referrals?count=true", &c)
	return c.Linked, err
}

// quiet waits until every durable consumer is caught up and no external write happened for calmFor (longer
// than the Audit summary interval, so deferred work, like the Audit summaries, is done too).
// It returns when the last activity was seen.
func quiet(ctx context.Context, js jetstream.JetStream, f *fleet.Fleet) (time.Time, error) {
	deadline := time.Now().Add(10 * time.Minute)
	calmSince := time.Now()
	last := -1
	for {
		c := counts(ctx, f)
		writes := c.sfWrites() + c.pcWrites()
		busy := writes != last
		last = writes
		for _, c := range contracts.Consumers() {
			cons, err := js.Consumer(ctx, c.Stream, c.Durable)
			if err != nil {
				return time.Time{}, err
			}
			if info := cons.CachedInfo(); info.NumPending+uint64(info.NumAckPending) > 0 {
				busy = true
			}
		}
		if busy {
			calmSince = time.Now()
		} else if time.Since(calmSince) >= calmFor {
			return calmSince, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("not quiet after 10 minutes")
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// calmFor is how long quiet waits without activity: two seconds past the Audit summary interval in effect.
var calmFor = 3 * time.Second

// storedMsg is a stored message with its CloudEvent id.
type storedMsg struct {
	platform.Stored
	ID string
}

// readSince reads the messages of stream on subjects stored since t.
func readSince(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, since time.Time, fn func(storedMsg)) error {
	return platform.ReadStream(ctx, js, stream, func(m platform.Stored) error {
		fn(storedMsg{m, m.Header.Get("ce-id")})
		return nil
	}, platform.Subjects(subjects...), platform.Since(since))
}
