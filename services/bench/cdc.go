package main

// The Change Data Capture benchmarks (go run ./services/bench -cdc): sf-ingest follows the Salesforce
// emulator's change events over the Pub/Sub API (COSELL_SF_CDC=on), its poll only the backstop at the
// production interval (5 minutes: longer than the run, so no backstop poll falls inside a measured phase).
// Measured, in one run next to the raw JetStream ceiling:
//
//   - an idle org: Salesforce REST calls over a quiet window between backstop polls (target 0);
//   - Salesforce → Partner Center at a steady rate (a seller's Amount edits): latency from the change's
//     commit (its SystemModstamp, the command's cause version) to the referral written (pc-writer's
//     outcome), and Salesforce calls per 1,000 changes;
//   - Partner Center → Salesforce at the same rate (the "trickle" row of the poller's table): Salesforce
//     calls per 1,000 changes, now that sf-ingest no longer polls to see cosell's own writes;
//   - an sf-ingest outage: kill -9, a backlog of changes while it is down (made as fast as the emulator
//     takes them, or with -outage-for spread over that long: the 10 minutes), a restart: the
//     catch-up from the stored replay id, its time, Salesforce calls by endpoint, that every final value
//     arrived, and where the snapshots came from: change events, or a REST scan (a published snapshot
//     read by a poll; and any query filtering on SystemModstamp, a catch-up's or the backstop's, counted by
//     the emulator with the rows it matched). After a long outage it also waits for the first backstop
//     poll after the catch-up and counts what it read.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// cdcOptions size the CDC run.
type cdcOptions struct {
	n, rate, outage int
	dur, idle       time.Duration
	outageFor       time.Duration // 0: the outage's changes as fast as they go
	raw             int
}

func runCDC(ctx context.Context, o cdcOptions) (err error) {
	extraEnv = append(extraEnv, "COSELL_SF_CDC=on")
	b, err := startBench(ctx, o.raw)
	if err != nil {
		return err
	}
	defer b.Done(&err)
	f, bin, probe, js, r := b.f, b.bin, b.probe, b.js, b.r

	// Set-up: n synced Opportunities (SF → PC creates on change events) and n referrals (PC → SF).
	began := time.Now()
	var el time.Duration
	m, _, _, err := b.phase(ctx, func() (int, error) {
		if err := createOpportunities(ctx, f, o.n); err != nil {
			return 0, err
		}
		err := waitRecords(ctx, func(ctx context.Context) (int, error) { return pcFromSF(ctx, f) }, o.n, time.Duration(o.n)*time.Second)
		el = time.Since(began)
		return o.n, err
	}, contracts.SubjectReferralRequested, contracts.SubjectReferralWritten)
	if err != nil {
		return err
	}
	r.add("| Salesforce → Partner Center on change events, backlog of %d new synced Opportunities | %.1f opportunities/s |", o.n, float64(o.n)/el.Seconds())
	h, err := m.follow(ctx, js, sfToPC)
	if err != nil {
		return err
	}
	r.add("| … per hop p50 / p99 / max: Opportunity committed → snapshot stored (sf-ingest) | %s (then snapshot stored → fetched by the mapper %s; end to end %s) |",
		h.between(ptChange, ptSnapStored), h.between(ptSnapStored, ptSnapFetched), h.between(ptChange, ptWritten))
	r.add("| … Salesforce calls per 1,000 Opportunities (backlog, incl. the link write-back) | %.0f %s|", per1000(m.to.sfAPI()-m.from.sfAPI(), o.n), sfEndpoints(m.from, m.to))
	refIDs, err := createReferrals(ctx, f, o.n)
	if err != nil {
		return err
	}
	if err := waitRecords(ctx, func(ctx context.Context) (int, error) { return sfLinked(ctx, f) }, 2*o.n, time.Duration(o.n)*time.Second); err != nil {
		return err
	}
	if _, err := quiet(ctx, js, f); err != nil {
		return err
	}
	opps, err := partnerOpportunities(ctx, f)
	if err != nil {
		return err
	}

	// 1. An idle org.
	before := counts(ctx, f)
	fleet.Pause(ctx, o.idle)
	after := counts(ctx, f)
	r.add("| idle org for %s between backstop polls (every 5 min): Salesforce REST calls | %d %s|", o.idle, after.sfAPI()-before.sfAPI(), sfEndpoints(before, after))

	// 2. Salesforce → Partner Center at a steady rate.
	m, sent, lat, err := b.phase(ctx, func() (int, error) { return sellerEdits(ctx, f, opps, o.rate, o.dur) },
		contracts.SubjectReferralRequested, contracts.SubjectReferralWritten)
	if err != nil {
		return err
	}
	r.add("| steady %d Amount changes/s in Salesforce for %s: change committed → referral written p50 / p99 / max | %s |", o.rate, o.dur, lat)
	r.add("| … Salesforce calls per 1,000 changes (SF → PC trickle) | %.1f %s|", per1000(m.to.sfAPI()-m.from.sfAPI(), sent), sfEndpoints(m.from, m.to))
	r.add("| … Partner Center calls per 1,000 changes | %.0f |", per1000(m.to.pcAPI()-m.from.pcAPI(), sent))
	r.add("| … CPU, cores used over the phase | %s |", m.cpu)

	// 3. Partner Center → Salesforce at the same rate.
	m, sent, lat, err = b.phase(ctx, func() (int, error) { n, _, err := steady(ctx, f, refIDs, o.rate, o.dur); return n, err },
		contracts.SubjectOpportunityRequested, contracts.SubjectOpportunityWritten)
	if err != nil {
		return err
	}
	r.add("| steady %d deal-value changes/s in Partner Center for %s: Salesforce calls per 1,000 changes (PC → SF trickle) | %.1f %s|", o.rate, o.dur, per1000(m.to.sfAPI()-m.from.sfAPI(), sent), sfEndpoints(m.from, m.to))
	r.add("| … sync latency p50 / p99 / max | %s |", lat)

	// 4. An sf-ingest outage with a backlog of changes, then the catch-up from the stored replay id.
	if err := f.Kill(ctx, "sf-ingest"); err != nil {
		return err
	}
	down := time.Now()
	heldAtKill := held(ctx, js)
	var final map[string]float64
	if o.outageFor > 0 {
		final, err = spreadEdits(ctx, f, opps, o.outage, o.outageFor)
	} else {
		final, err = backlogEdits(ctx, f, opps, o.outage)
	}
	if err != nil {
		return err
	}
	made := time.Since(down)
	ph, err := begin(ctx, f, probe)
	downFor := time.Since(down)
	if err != nil {
		return err
	}
	if _, err := f.StartStage(ctx, "sf-ingest"); err != nil {
		return err
	}
	// The restarted process subscribes once it leads: the killed one's lease must expire first.
	if err := waitCount(ctx, f, "pubsub.subscribe", ph.api.sf["pubsub.subscribe"], time.Minute); err != nil {
		return err
	}
	subscribed := time.Since(ph.startedAt)
	if err := waitFinal(ctx, f, final, 10*time.Minute); err != nil {
		return err
	}
	caught := time.Since(ph.startedAt)
	atFinal := counts(ctx, f)
	if _, err := quiet(ctx, js, f); err != nil {
		return err
	}
	if m, err = ph.end(ctx, f, probe); err != nil {
		return err
	}
	viaCDC, viaPoll, err := snapshotsSince(ctx, js, ph.startedAt)
	if err != nil {
		return err
	}
	r.add("| sf-ingest killed (-9) while %d changes to %d Opportunities were made over %s (down %s), then restarted: every final value in Partner Center after | %s (subscribed after %s: the killed holder's lease expiring, the start; %d snapshots from change events, %d from a REST scan; %s) |",
		o.outage, len(opps), made.Round(time.Millisecond), downFor.Round(time.Second), caught.Round(time.Millisecond), subscribed.Round(time.Millisecond),
		viaCDC, viaPoll, scans(ph.api, atFinal))
	r.add("| … Salesforce calls per 1,000 changes (catch-up backlog, until quiet) | %.1f %s|", per1000(m.to.sfAPI()-m.from.sfAPI(), o.outage), sfEndpoints(m.from, m.to))
	if o.outageFor > 0 {
		// The first backstop poll after the catch-up: its interval runs from sf-ingest's start.
		backstop, err := time.ParseDuration(envValue("COSELL_SF_BACKSTOP_INTERVAL", "5m"))
		if err != nil {
			return err
		}
		from := counts(ctx, f)
		if err := waitCount(ctx, f, sfemu.ScanCount, from.sf[sfemu.ScanCount], backstop+time.Minute); err != nil {
			return err
		}
		if _, err := quiet(ctx, js, f); err != nil {
			return err
		}
		to := counts(ctx, f)
		_, polled, err := snapshotsSince(ctx, js, ph.startedAt)
		if err != nil {
			return err
		}
		r.add("| … the first backstop poll after the catch-up (%s after the restart): what it read | %s; %d snapshots from a REST scan since the restart %s(coverage held back at the kill: %s; after the poll: %s) |",
			time.Since(ph.startedAt).Round(time.Second), scans(from, to), polled, sfEndpoints(from, to), heldAtKill, held(ctx, js))
		viaPoll = polled
	}
	r.add("")
	r.add("Machine: %d cores (%s/%s), Go %s, %s, load average before the run %s. Command: `go run ./services/bench %s`.",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Now().UTC().Format("2006-01-02"), loadBefore, strings.Join(os.Args[1:], " "))
	r.add("Stage settings: %s.", settingsLine(ctx, bin))
	fmt.Println(strings.Join(r.lines, "\n"))
	if viaPoll > 0 {
		return fmt.Errorf("the catch-up read %d snapshots by a REST scan, want none", viaPoll)
	}
	if rows := atFinal.sf[sfemu.ScanRowsCount] - ph.api.sf[sfemu.ScanRowsCount]; rows > 0 {
		return fmt.Errorf("the catch-up read %d rows by SystemModstamp, want none", rows)
	}
	return nil
}

// between is p50 / p99 / max of the hop from one point to another (one of hops).
func (h hopTimes) between(from, to int) string {
	for i, hp := range hops {
		if hp.from == from && hp.to == to {
			return quantiles(h.d[i])
		}
	}
	return "—"
}

// phase measures work (which returns how many changes it made) as one phase: its cost from the start to
// the quiet after it, and the latency of the commands under cmdRoot to their outcomes under writtenRoot.
func (b *bench) phase(ctx context.Context, work func() (int, error), cmdRoot, writtenRoot string) (measured, int, string, error) {
	ph, err := begin(ctx, b.f, b.probe)
	if err != nil {
		return measured{}, 0, "", err
	}
	n, err := work()
	if err != nil {
		return measured{}, n, "", err
	}
	if _, err := quiet(ctx, b.js, b.f); err != nil {
		return measured{}, n, "", err
	}
	m, err := ph.end(ctx, b.f, b.probe)
	if err != nil {
		return m, n, "", err
	}
	lat, err := latencies(ctx, b.js, ph.startedAt, cmdRoot, writtenRoot)
	return m, n, lat, err
}

// partnerOpportunities lists the synced Opportunities a Salesforce user created (not those made from referrals).
func partnerOpportunities(ctx context.Context, f *fleet.Fleet) ([]string, error) {
	var out struct {
		Records []map[string]any `json:"records"`
	}
	if err := fleet.GetJSON(ctx, f.SFURL()+"/_emulator/sobjects/Opportunity", &out); err != nil {
		return nil, err
	}
	var ids []string
	for _, o := range out.Records {
		if name, _ := o["Name"].(string); strings.HasPrefix(name, "Bench opportunity ") {
			ids = append(ids, fmt.Sprint(o["Id"]))
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no Opportunity of the set-up found")
	}
	return ids, nil
}

// sellerEdits changes the Amount of the Opportunities round-robin at rate per second for d, as a
// Salesforce user does; it returns how many changes were made.
func sellerEdits(ctx context.Context, f *fleet.Fleet, ids []string, rate int, d time.Duration) (int, error) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := time.Now().Add(d)
	errs := make(chan error, 1)
	done := make(chan struct{}, rate)
	inflight, i := 0, 0
	for ; time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			return i, ctx.Err()
		case err := <-errs:
			return i, err
		case <-tick.C:
		}
		id, amount := ids[i%len(ids)], 70000+i
		inflight++
		go func() {
			defer func() { done <- struct{}{} }()
			if err := fleet.SendJSON(ctx, "PATCH", f.SFURL()+"/_emulator/sobjects/Opportunity/"+id, map[string]any{"Amount": amount}, nil); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}()
		for len(done) > 0 {
			<-done
			inflight--
		}
	}
	for ; inflight > 0; inflight-- {
		<-done
	}
	select {
	case err := <-errs:
		return i, err
	default:
	}
	return i, nil
}

// backlogEdits makes n Amount changes round-robin over ids as fast as the emulator takes them; it
// returns each Opportunity's final Amount.
func backlogEdits(ctx context.Context, f *fleet.Fleet, ids []string, n int) (map[string]float64, error) {
	final := map[string]float64{}
	for i := range n {
		final[ids[i%len(ids)]] = float64(90000 + i)
	}
	// Each worker owns the ids i ≡ w (mod workers) of every round, so one record's changes stay in order.
	err := parallel(len(ids), 8, func(k int) error {
		for i := k; i < n; i += len(ids) {
			if err := fleet.SendJSON(ctx, "PATCH", f.SFURL()+"/_emulator/sobjects/Opportunity/"+ids[k], map[string]any{"Amount": 90000 + i}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	return final, err
}

// spreadEdits makes n Amount changes round-robin over ids spread evenly over d (one at a time, each at its
// moment: the outage's changes come as a seller's trickle, not as one burst); it returns each
// Opportunity's final Amount.
func spreadEdits(ctx context.Context, f *fleet.Fleet, ids []string, n int, d time.Duration) (map[string]float64, error) {
	final := map[string]float64{}
	began := time.Now()
	for i := range n {
		fleet.Pause(ctx, time.Until(began.Add(d*time.Duration(i)/time.Duration(n))))
		if err := ctx.Err(); err != nil {
			return final, err
		}
		id, amount := ids[i%len(ids)], 90000+i
		if err := fleet.SendJSON(ctx, "PATCH", f.SFURL()+"/_emulator/sobjects/Opportunity/"+id, map[string]any{"Amount": amount}, nil); err != nil {
			return final, err
		}
		final[id] = float64(amount)
	}
	fleet.Pause(ctx, time.Until(began.Add(d)))
	return final, ctx.Err()
}

// scans says what the queries filtering on SystemModstamp (a REST scan: a catch-up's, a backstop poll's)
// read between two counts of the Salesforce emulator.
func scans(a, b snapshot) string {
	return fmt.Sprintf("SystemModstamp queries %d, rows %d", b.sf[sfemu.ScanCount]-a.sf[sfemu.ScanCount], b.sf[sfemu.ScanRowsCount]-a.sf[sfemu.ScanRowsCount])
}

// held is sf-ingest's record of own writes dropped unread that hold the backstop's coverage back
// (sfingest.HeldKey), or "none".
func held(ctx context.Context, js jetstream.JetStream) string {
	kv, err := js.KeyValue(ctx, contracts.BucketCheckpoints)
	if err != nil {
		return err.Error()
	}
	e, err := kv.Get(ctx, contracts.CheckpointKey(contracts.StageSFIngest, "cdc-held"))
	if err != nil {
		return "none"
	}
	return string(e.Value())
}

// waitCount waits until the Salesforce emulator's count of key has moved past from (a backstop poll's
// query, a new Subscribe stream).
func waitCount(ctx context.Context, f *fleet.Fleet, key string, from int, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for counts(ctx, f).sf[key] == from {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %s within %s: %w", key, within, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// waitFinal polls Partner Center until every Opportunity's referral holds its final Amount as deal value.
func waitFinal(ctx context.Context, f *fleet.Fleet, final map[string]float64, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		var refs []struct {
			ExternalReferenceID string `json:"externalReferenceId"`
			Details             *struct {
				DealValue *float64 `json:"dealValue"`
			} `json:"details"`
		}
		if err := fleet.GetJSON(ctx, f.PCURL()+"/_emulator/referrals", &refs); err != nil {
			return err
		}
		missing := len(final)
		for _, r := range refs {
			if want, ok := final[r.ExternalReferenceID]; ok && r.Details != nil && r.Details.DealValue != nil && *r.Details.DealValue == want {
				missing--
			}
		}
		if missing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d referrals without their Opportunity's final Amount: %w", missing, len(final), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// snapshotsSince counts the Opportunity snapshots published since t by how sf-ingest read them.
func snapshotsSince(ctx context.Context, js jetstream.JetStream, since time.Time) (cdc, poll int, err error) {
	err = platform.ReadStream(ctx, js, contracts.StreamObserved, func(m platform.Stored) error {
		var o contracts.OpportunityObserved
		if json.Unmarshal(m.Data, &o) == nil {
			switch o.Via {
			case "cdc":
				cdc++
			case "poll":
				poll++
			}
		}
		return nil
	}, platform.Subjects(contracts.SubjectOpportunityObserved+".>"), platform.Since(since))
	return cdc, poll, err
}
