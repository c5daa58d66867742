// Command bench measures cosell end to end on this machine, with every stage as its own OS process next to
// a nats-server and both emulators (internal/harness/fleet), and prints a Markdown report:
//
//   - the raw JetStream ceiling: synchronous publish + fetch + double-ack through the same server, measured
//     the same way in the same run;
//   - throughput of referral creates (Partner Center → Salesforce) and Opportunity creates (the reverse), as a
//     backlog injected at once, and the ratio to the ceiling;
//   - sync latency (source change → other side written) p50 / p99 / max at a steady rate and at saturation,
//     from the commands' source versions and the writers' outcomes;
//   - API economy: Salesforce and Partner Center calls per 1,000 changes (backlog and steady trickle), and the
//     external writes a full replay of already-converged records causes (target: zero);
//   - replay rate and resident memory of each stage at steady load.
//
// Usage: go run ./services/bench [-n 500] [-rate 100] [-duration 20s]   (make bench)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

func main() {
	n := flag.Int("n", 500, "records created in each backlog run")
	rate := flag.Int("rate", 100, "changes per second in the steady run")
	dur := flag.Duration("duration", 20*time.Second, "length of the steady run")
	raw := flag.Int("raw", 20000, "messages in the raw JetStream run")
	pcRate := flag.String("pc-write-rate", "", "COSELL_PC_WRITE_RATE for pc-writer (empty = its default, 10 calls/s; 0 = no limit)")
	flag.Parse()
	if *pcRate != "" {
		extraEnv = append(extraEnv, "COSELL_PC_WRITE_RATE="+*pcRate)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *n, *rate, *dur, *raw); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// extraEnv is added to every stage's environment.
var extraEnv []string

type report struct {
	lines []string
}

func (r *report) add(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.lines = append(r.lines, line)
	fmt.Fprintln(os.Stderr, line)
}

func run(ctx context.Context, n, rate int, dur time.Duration, rawN int) (err error) {
	work, err := os.MkdirTemp("", "cosell-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := work + "/bin"
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "building…")
	if err := fleet.Build(ctx, bin); err != nil {
		return err
	}
	f, err := fleet.New(bin, work)
	if err != nil {
		return err
	}
	defer f.Close()
	defer func() {
		if err != nil {
			fmt.Fprintln(os.Stderr, f.Outputs(4000))
		}
	}()
	if err := f.StartInfra(ctx); err != nil {
		return err
	}
	f.Env = append(f.Env, "COSELL_SF_POLL_INTERVAL=500ms", "COSELL_LOG_LEVEL=warn", "COSELL_AUDIT_SUMMARY_INTERVAL=1s")
	f.Env = append(f.Env, extraEnv...)
	if err := f.StartStages(ctx); err != nil {
		return err
	}
	if err := f.RegisterWebhook(ctx); err != nil {
		return err
	}
	nc, err := nats.Connect("nats://" + f.NATSAddr)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r := &report{}
	r.add("| measure | value |")
	r.add("|---|---|")

	// 1. The ceiling.
	ceiling, err := rawRate(ctx, js, rawN)
	if err != nil {
		return err
	}
	r.add("| raw JetStream: sync publish + fetch + double-ack, 2 KiB, %d msgs | %.0f msgs/s |", rawN, ceiling)

	// 2. Backlog PC → SF.
	before := counts(ctx, f)
	sfBefore, err := sfLinked(ctx, f)
	if err != nil {
		return err
	}
	t0 := time.Now()
	refIDs, err := createReferrals(ctx, f, n)
	if err != nil {
		return err
	}
	if err := waitRecords(ctx, func(ctx context.Context) (int, error) { return sfLinked(ctx, f) }, sfBefore+n, time.Duration(n)*time.Second); err != nil {
		return err
	}
	el := time.Since(t0)
	if err := quiet(ctx, js, f); err != nil {
		return err
	}
	after := counts(ctx, f)
	pcRate := float64(n) / el.Seconds()
	r.add("| Partner Center → Salesforce, backlog of %d new referrals | %.1f referrals/s (%.2f%% of the ceiling) |", n, pcRate, 100*pcRate/ceiling)
	r.add("| … Salesforce calls per 1,000 referrals (backlog) | %.0f |", per1000(after.sfAPI()-before.sfAPI(), n))
	r.add("| … Partner Center calls per 1,000 referrals (backlog) | %.0f |", per1000(after.pcAPI()-before.pcAPI(), n))
	satLat, err := latencies(ctx, js, t0, contracts.SubjectOpportunityRequested, contracts.SubjectOpportunityWritten)
	if err != nil {
		return err
	}
	r.add("| … sync latency at saturation p50 / p99 / max | %s |", satLat)

	// 3. Backlog SF → PC.
	before = counts(ctx, f)
	pcBefore, err := pcFromSF(ctx, f)
	if err != nil {
		return err
	}
	t0 = time.Now()
	if err := createOpportunities(ctx, f, n); err != nil {
		return err
	}
	if err := waitRecords(ctx, func(ctx context.Context) (int, error) { return pcFromSF(ctx, f) }, pcBefore+n, time.Duration(n)*time.Second); err != nil {
		return err
	}
	el = time.Since(t0)
	if err := quiet(ctx, js, f); err != nil {
		return err
	}
	after = counts(ctx, f)
	sfRate := float64(n) / el.Seconds()
	r.add("| Salesforce → Partner Center, backlog of %d new synced Opportunities | %.1f opportunities/s (%.2f%% of the ceiling) |", n, sfRate, 100*sfRate/ceiling)
	r.add("| … Salesforce calls per 1,000 Opportunities (backlog, incl. polling and link write-back) | %.0f |", per1000(after.sfAPI()-before.sfAPI(), n))
	r.add("| … Partner Center calls per 1,000 Opportunities (backlog) | %.0f |", per1000(after.pcAPI()-before.pcAPI(), n))

	// 4. Steady trickle of Partner Center changes.
	before = counts(ctx, f)
	t0 = time.Now()
	changes, rss, err := steady(ctx, f, refIDs, rate, dur)
	if err != nil {
		return err
	}
	if err := quiet(ctx, js, f); err != nil {
		return err
	}
	after = counts(ctx, f)
	lat, err := latencies(ctx, js, t0, contracts.SubjectOpportunityRequested, contracts.SubjectOpportunityWritten)
	if err != nil {
		return err
	}
	r.add("| steady %d deal-value changes/s on Partner Center for %s: sync latency p50 / p99 / max | %s |", rate, dur, lat)
	r.add("| … Salesforce calls per 1,000 changes (trickle, incl. polling) | %.0f |", per1000(after.sfAPI()-before.sfAPI(), changes))
	r.add("| … Partner Center calls per 1,000 changes (trickle) | %.0f |", per1000(after.pcAPI()-before.pcAPI(), changes))
	names := make([]string, 0, len(rss))
	for k := range rss {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.0f MiB", k, float64(rss[k])/(1<<20)))
	}
	r.add("| resident memory at steady load | %s |", strings.Join(parts, ", "))

	// 5. Replay of every stream from sequence 1.
	before = counts(ctx, f)
	var msgs uint64
	for _, c := range contracts.Consumers() {
		info, err := js.Consumer(ctx, c.Stream, c.Durable)
		if err != nil {
			return err
		}
		ci, err := info.Info(ctx)
		if err != nil {
			return err
		}
		msgs += ci.Delivered.Consumer
	}
	t0 = time.Now()
	for _, c := range contracts.Consumers() {
		if _, err := js.ResetConsumerToSequence(ctx, c.Stream, c.Durable, 1); err != nil {
			return err
		}
	}
	if err := quiet(ctx, js, f); err != nil {
		return err
	}
	el = time.Since(t0)
	after = counts(ctx, f)
	r.add("| replay of every stream from sequence 1 (%d deliveries) | %.0f messages/s |", msgs, float64(msgs)/el.Seconds())
	r.add("| … external writes caused by the replay | Salesforce %d, Partner Center %d %s|", after.sfWrites()-before.sfWrites(), after.pcWrites()-before.pcWrites(), diff(before, after))
	r.add("")
	r.add("Machine: %d cores (%s/%s), Go %s, %s. Command: `go run ./services/bench %s`; stage settings: %s.", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Now().UTC().Format("2006-01-02"), strings.Join(os.Args[1:], " "), strings.Join(append([]string{"COSELL_SF_POLL_INTERVAL=500ms", "COSELL_AUDIT_SUMMARY_INTERVAL=1s"}, extraEnv...), " "))
	fmt.Println(strings.Join(r.lines, "\n"))
	return nil
}

// rawRate publishes and consumes msgs through a scratch stream, synchronously, the way the stages do.
func rawRate(ctx context.Context, js jetstream.JetStream, msgs int) (float64, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw.>"},
		Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute})
	if err != nil {
		return 0, err
	}
	defer js.DeleteStream(ctx, "BENCH_RAW")
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return 0, err
	}
	payload := []byte(strings.Repeat("x", 2048))
	start := time.Now()
	var wg sync.WaitGroup
	var perr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < msgs; i++ {
			if _, err := js.Publish(ctx, fmt.Sprintf("bench.raw.%d", i%100), payload, jetstream.WithMsgID(fmt.Sprint("raw-", i))); err != nil {
				perr = err
				return
			}
		}
	}()
	got := 0
	for got < msgs {
		batch, err := cons.Fetch(64, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return 0, err
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				return 0, err
			}
			got++
		}
		if perr != nil {
			return 0, perr
		}
	}
	wg.Wait()
	return float64(msgs) / time.Since(start).Seconds(), nil
}

func createReferrals(ctx context.Context, f *fleet.Fleet, n int) ([]string, error) {
	ids := make([]string, n)
	err := parallel(n, 8, func(i int) error {
		var out struct {
			ID string `json:"id"`
		}
		err := fleet.SendJSON(ctx, "POST", f.PCURL()+"/_emulator/referrals", map[string]any{
			"name":            fmt.Sprintf("Bench referral %d", i),
			"customerProfile": map[string]any{"name": fmt.Sprintf("Bench customer %d", i%50), "address": map[string]any{"city": "Oslo", "postalCode": "0150", "country": "NO"}},
			"consent":         map[string]any{"consentToToShareInfoWithOthers": true, "consentToContact": true},
			"details":         map[string]any{"dealValue": 1000 + i, "currency": "EUR", "closingDateTime": "2027-06-30T00:00:00Z"},
		}, &out)
		ids[i] = out.ID
		return err
	})
	return ids, err
}

func createOpportunities(ctx context.Context, f *fleet.Fleet, n int) error {
	return parallel(n, 8, func(i int) error {
		return fleet.SendJSON(ctx, "POST", f.SFURL()+"/_emulator/sobjects/Opportunity", map[string]any{
			"Name": fmt.Sprintf("Bench opportunity %d", i), "Amount": 500 + i, "CurrencyIsoCode": "USD", "CloseDate": "2027-05-01",
			"StageName": "Qualification", "Sync_with_Partner_Center__c": true,
		}, nil)
	})
}

// steady changes referrals' deal values at rate per second for d, and samples each stage's memory.
func steady(ctx context.Context, f *fleet.Fleet, ids []string, rate int, d time.Duration) (int, map[string]int64, error) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	var sent atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	rss := map[string]int64{}
	sampled := false
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		id := ids[i%len(ids)]
		value := 20000 + i
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fleet.SendJSON(ctx, "PATCH", f.PCURL()+"/_emulator/referrals/"+id, map[string]any{"details": map[string]any{"dealValue": value}}, nil); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			sent.Add(1)
		}()
		if !sampled && time.Until(end) < d/2 {
			sampled = true
			for _, s := range fleet.Stages {
				if v, err := f.Proc(s).RSS(); err == nil {
					rss[s] = v
				}
			}
		}
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return int(sent.Load()), rss, err
	}
	return int(sent.Load()), rss, nil
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
		if strings.HasPrefix(k, "seller.") || (strings.HasPrefix(k, "webhooks.") && !strings.HasPrefix(k, "webhooks.register") &&
			!strings.HasPrefix(k, "webhooks.get") && !strings.HasPrefix(k, "webhooks.update")) || k == "throttled" {
			continue
		}
		total += v
	}
	return total
}

func (s snapshot) sfAPI() int {
	total := 0
	for _, v := range s.sf {
		total += v
	}
	return total
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

// sfLinked counts Opportunities that carry a Referral Identifier.
func sfLinked(ctx context.Context, f *fleet.Fleet) (int, error) {
	var opps struct {
		Records []map[string]any `json:"records"`
	}
	if err := fleet.GetJSON(ctx, f.SFURL()+"/_emulator/sobjects/Opportunity", &opps); err != nil {
		return 0, err
	}
	n := 0
	for _, o := range opps.Records {
		if o["Referral_Identifier__c"] != nil {
			n++
		}
	}
	return n, nil
}

// pcFromSF counts referrals that name an Opportunity (created from Salesforce, or linked from Partner Center).
func pcFromSF(ctx context.Context, f *fleet.Fleet) (int, error) {
	var refs []map[string]any
	if err := fleet.GetJSON(ctx, f.PCURL()+"/_emulator/referrals", &refs); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range refs {
		if s, _ := r["externalReferenceId"].(string); s != "" {
			n++
		}
	}
	return n, nil
}

// quiet waits until every durable consumer is caught up and no external write happened, three checks in a
// row (so deferred work, like the Audit summaries written every second, is done too).
func quiet(ctx context.Context, js jetstream.JetStream, f *fleet.Fleet) error {
	deadline := time.Now().Add(10 * time.Minute)
	calm := 0
	last := -1
	for calm < 3 {
		c := counts(ctx, f)
		writes := c.sfWrites() + c.pcWrites()
		busy := writes != last
		last = writes
		for _, c := range contracts.Consumers() {
			cons, err := js.Consumer(ctx, c.Stream, c.Durable)
			if err != nil {
				return err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending+uint64(info.NumAckPending) > 0 {
				busy = true
			}
		}
		if busy {
			calm = 0
		} else {
			calm++
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not quiet after 10 minutes")
		}
		time.Sleep(700 * time.Millisecond)
	}
	return nil
}

// latencies joins the commands published since t0 with their written outcomes: source change (the command's
// cause version) → other side written (the outcome's time).
func latencies(ctx context.Context, js jetstream.JetStream, since time.Time, cmdRoot, writtenRoot string) (string, error) {
	causes := map[string]time.Time{}
	if err := readSince(ctx, js, contracts.StreamRequested, cmdRoot+".>", since, func(id string, data []byte) {
		var c struct {
			CauseVersion contracts.Version `json:"causeVersion"`
		}
		if json.Unmarshal(data, &c) == nil && !c.CauseVersion.At.IsZero() {
			causes[id] = c.CauseVersion.At
		}
	}); err != nil {
		return "", err
	}
	var lat []time.Duration
	if err := readSince(ctx, js, contracts.StreamOutcomes, writtenRoot+".>", since, func(_ string, data []byte) {
		var o contracts.Outcome
		if json.Unmarshal(data, &o) != nil {
			return
		}
		if at, ok := causes[o.CommandID]; ok {
			lat = append(lat, o.At.Sub(at))
			delete(causes, o.CommandID)
		}
	}); err != nil {
		return "", err
	}
	if len(lat) == 0 {
		return "no samples", nil
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	return fmt.Sprintf("%s / %s / %s (%d writes)", q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat)), nil
}

func readSince(ctx context.Context, js jetstream.JetStream, stream, subject string, since time.Time, fn func(id string, data []byte)) error {
	return platform.ReadStream(ctx, js, stream, func(m platform.Stored) error {
		fn(m.Header.Get("ce-id"), m.Data)
		return nil
	}, platform.Subjects(subject), platform.Since(since))
}
