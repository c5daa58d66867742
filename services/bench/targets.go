package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
)

// figures are what a run measured that issue 16's targets are judged on, kept as the phases run, so the
// targets table is computed from the run's own figures.
type figures struct {
	pcBacklog    *backlogRun
	sfBacklog    *sfBacklogRun // at the run's pc-writer rate
	sfBacklogOff *sfBacklogRun // with pc-writer's limit off (the same run as sfBacklog when the run has it off)
	steady       []steadyRun   // -rate, then -rate-high
	soak         *steadyRun
	// writerBacklog is sf-writer's own backlog (stopped while the referrals were decided, then started).
	writerBacklog *writerBacklogRun
	replayed      bool
	replaySF      int
	replayPC      int
	// start is when the fleet was up, before the first phase: the Audit write-backs are counted from there.
	start time.Time
}

// flatSlope is the most a process's memory may grow per minute over the second half of a soak and still
// count as flat: under 10 MiB over a 10-minute run, against nats-server's hundreds.
const flatSlope = 1.0

// The targets (issue 16, "Targets").
const (
	maxStoredPerChange     = 8
	maxLinkWritesPerChange = 2
	maxDeliveriesPerChange = 5
	steadyP50              = 5 * time.Millisecond
	steadyP99              = 50 * time.Millisecond
	steadyMax              = 150 * time.Millisecond
	highP99                = 200 * time.Millisecond
	minPCBacklogRate       = 600
	minSFBacklogRate       = 300
	maxSFCallsPer1000      = 10
	maxStageRSS            = 40 << 20
	soakLength             = 10 * time.Minute
)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// renderTargets prints issue 16's targets against what this run measured: one row per target, "met" or
// "not met" (or why the run could not tell).
func (b *bench) renderTargets(ctx context.Context, o options) error {
	fig, r := &b.fig, b.r
	r.add("")
	r.add("Issue 16's targets, from this run's figures:")
	r.add("")
	r.add("| target | measured | |")
	r.add("|---|---|---|")
	row := func(target, measured, v string) { r.add("| %s | %s | %s |", target, measured, v) }
	missing := func(target, why string) { row(target, "—", "not measured: "+why) }

	steady := fig.steadyAt(o.rate)
	if st := steady; st != nil && st.made > 0 {
		n := float64(st.made)
		stored := float64(sum(st.m.bus.stored)) / n
		links := float64(st.m.bus.stored["KV_"+contracts.BucketLinks]) / n
		deliveries := float64(sum(st.m.bus.deliveries)) / n
		at := fmt.Sprintf(" (steady %d/s)", st.rate)
		row("≤ 8 stored publishes per change on the steady path", fmt.Sprintf("%.1f%s: %s", stored, at, perChange(st.m.bus.stored, st.made)), verdict(stored <= maxStoredPerChange))
		row("≤ 2 link writes per change on the steady path", fmt.Sprintf("%.2f%s", links, at), verdict(links <= maxLinkWritesPerChange))
		row("≤ 5 durable deliveries per change", fmt.Sprintf("%.1f%s: %s", deliveries, at, perChange(st.m.bus.deliveries, st.made)), verdict(deliveries <= maxDeliveriesPerChange))
	} else {
		for _, t := range []string{"≤ 8 stored publishes per change on the steady path", "≤ 2 link writes per change on the steady path", "≤ 5 durable deliveries per change"} {
			missing(t, fmt.Sprintf("no steady run at %d/s", o.rate))
		}
	}

	if st := fig.steadyAt(100); st != nil && len(st.h.d[len(hops)-1]) > 0 {
		d := st.h.d[len(hops)-1]
		p50, p99, mx := quantile(d, 0.5), quantile(d, 0.99), quantile(d, 1)
		var met []string
		for _, c := range []struct {
			name string
			ok   bool
		}{{"p50", p50 <= steadyP50}, {"p99", p99 <= steadyP99}, {"max", mx <= steadyMax}} {
			if c.ok {
				met = append(met, c.name)
			}
		}
		v := verdict(len(met) == 3)
		if len(met) > 0 && len(met) < 3 {
			v = "not met (" + strings.Join(met, ", ") + " met)"
		}
		row("steady 100 changes/s PC → SF: p50 ≤ 5 ms, p99 ≤ 50 ms, max ≤ 150 ms", fmt.Sprintf("%s / %s / %s (%d writes; every change made: %s)",
			short(p50), short(p99), short(mx), len(d), quantiles(st.changeLat)), v)
	} else {
		missing("steady 100 changes/s PC → SF: p50 ≤ 5 ms, p99 ≤ 50 ms, max ≤ 150 ms", "no steady run at 100/s (-rate 100)")
	}
	if st := fig.steadyAt(500); st != nil && len(st.h.d[len(hops)-1]) > 0 {
		p99 := quantile(st.h.d[len(hops)-1], 0.99)
		row("500 changes/s: p99 ≤ 200 ms", fmt.Sprintf("%s (the driver made %.0f/s; every change made: p99 %s)", short(p99),
			float64(st.made)/st.d.Seconds(), short(quantile(st.changeLat, 0.99))), verdict(p99 <= highP99))
	} else {
		missing("500 changes/s: p99 ≤ 200 ms", "no steady run at 500/s (-rate-high 500)")
	}

	if p := fig.pcBacklog; p != nil {
		row("PC → SF backlog ≥ 600 referrals/s", fmt.Sprintf("%.1f referrals/s (backlog of %d)", p.rate, p.n), verdict(p.rate >= minPCBacklogRate))
	}
	if s := fig.sfBacklogOff; s != nil {
		row("SF → PC backlog with the Partner Center limit off ≥ 300/s", fmt.Sprintf("%.1f opportunities/s (backlog of %d)", s.rate, s.n), verdict(s.rate >= minSFBacklogRate))
	}

	// Partner Center calls: the Referrals API's (the sign-in's token calls are not per record).
	var creates, createCalls int
	var from, to snapshot // the SF → PC backlogs' counts, summed, to name the endpoints
	from.pc, to.pc = map[string]int{}, map[string]int{}
	runs := []*sfBacklogRun{fig.sfBacklog}
	if fig.sfBacklogOff != fig.sfBacklog { // one phase when the run has the limit off already
		runs = append(runs, fig.sfBacklogOff)
	}
	for _, s := range runs {
		if s == nil {
			continue
		}
		creates += s.n
		createCalls += referralCalls(s.m.from, s.m.to)
		for k, v := range s.m.to.pc {
			to.pc[k] += v - s.m.from.pc[k]
		}
	}
	if creates > 0 {
		perCreate := float64(createCalls) / float64(creates)
		perChange, changeCell := 0.0, "no steady run"
		if st := steady; st != nil && st.made > 0 {
			perChange = float64(referralCalls(st.m.from, st.m.to)) / float64(st.made)
			changeCell = fmt.Sprintf("%.2f per change %s", perChange, strings.TrimSpace(endpoints(st.m.from.pc, st.m.to.pc, isReferralCall)))
		}
		row("Partner Center calls per referral created from Salesforce: 1; per incoming referral change: 1",
			fmt.Sprintf("%.2f per create (%d creates %s); %s", perCreate, creates, strings.TrimSpace(endpoints(from.pc, to.pc, isReferralCall)), changeCell),
			verdict(createCalls <= creates && steady != nil && perChange <= 1))
	}

	if p := fig.pcBacklog; p != nil {
		// The target counts writes: the calls that write (Collections and sObject writes, and Composite
		// calls holding a write, each one call as Salesforce counts it), with the reads (queries, read-only
		// Composites) and the total beside them. Two backlogs: the PC → SF one, whose commands reach
		// sf-writer as a stream at the rate the mapper decides them (a batch holds what came while it
		// lingered), and sf-writer's own (every command waiting when it starts); each is judged.
		all := p.m.to.sfAPI() - p.m.from.sfAPI()
		writes := sfWriteCalls(p.m.from, p.m.to)
		cell := fmt.Sprintf("%.1f writes per 1,000 on the PC → SF backlog of %d %s; reads beside them %.1f, all calls %.1f %s",
			per1000(writes, p.n), p.n, strings.TrimSpace(endpoints(p.m.from.sf, p.m.to.sf, isSFWrite)),
			per1000(all-writes, p.n), per1000(all, p.n), strings.TrimSpace(sfEndpoints(p.m.from, p.m.to)))
		met := per1000(writes, p.n) <= maxSFCallsPer1000
		v := verdict(met)
		if w := fig.writerBacklog; w != nil {
			ww, wall := sfWriteCalls(w.from, w.to), w.to.sfAPI()-w.from.sfAPI()
			cell += fmt.Sprintf("; %.1f writes per 1,000 on sf-writer's own backlog of %d (all calls %.1f %s)",
				per1000(ww, w.n), w.n, per1000(wall, w.n), strings.TrimSpace(sfEndpoints(w.from, w.to)))
			wmet := per1000(ww, w.n) <= maxSFCallsPer1000
			switch {
			case met && wmet:
				v = "met"
			case wmet:
				v = "not met (met on sf-writer's own backlog, not on the PC → SF stream)"
			case met:
				v = "not met (met on the PC → SF backlog, not on sf-writer's own)"
			}
		}
		row("Salesforce calls per 1,000 changes on a backlog ≤ 10 (writes)", cell, v)
	}
	unchanged, audits, err := unchangedAuditWrites(ctx, b.js, fig.start)
	if err != nil {
		return err
	}
	row("no Audit write for an unchanged summary", fmt.Sprintf("%d of %d Audit write-backs written over the run carried the text the Opportunity already had from cosell", unchanged, audits), verdict(unchanged == 0))

	if st := fig.steadyAt(500); st != nil && st.mem != nil && len(st.mem.at) > 0 {
		var over, all []string
		var top int64
		for _, name := range st.mem.names() {
			if !isStage(name) {
				continue
			}
			peak := slices.Max(st.mem.rss[name])
			top = max(top, peak)
			all = append(all, fmt.Sprintf("%s %.0f", name, mib(peak)))
			if peak >= maxStageRSS {
				over = append(over, name)
			}
		}
		v := verdict(len(over) == 0)
		if len(over) > 0 {
			v += " (" + strings.Join(over, ", ") + ")"
		}
		row("each stage < 40 MiB RSS at 500 changes/s", fmt.Sprintf("peaks in MiB: %s", strings.Join(all, ", ")), v)
	} else {
		missing("each stage < 40 MiB RSS at 500 changes/s", "no steady run at 500/s (-rate-high 500)")
	}

	row("nats-server memory flat over a 10-minute steady run", fig.natsGrowth()+b.liveHeapGrowth(ctx), fig.natsVerdict())

	if fig.replayed {
		row("a full replay of every stream costs zero external writes", fmt.Sprintf("Salesforce %d, Partner Center %d", fig.replaySF, fig.replayPC), verdict(fig.replaySF == 0 && fig.replayPC == 0))
	}
	return nil
}

// steadyAt is the steady run at rate, if the run had one.
func (f *figures) steadyAt(rate int) *steadyRun {
	for i := range f.steady {
		if f.steady[i].rate == rate {
			return &f.steady[i]
		}
	}
	return nil
}

// natsGrowth renders nats-server's VmRSS growth: over each steady phase, and over the soak (the whole run
// and its second half) when there was one.
func (f *figures) natsGrowth() string {
	var parts []string
	for _, st := range f.steady {
		if v := st.mem.rss["nats"]; len(v) > 1 {
			parts = append(parts, fmt.Sprintf("steady %d/s for %s: %.0f → %.0f MiB, %+.1f MiB/min", st.rate, st.d, mib(firstSample(v)), mib(v[len(v)-1]), st.mem.slope(v, 0)))
		}
	}
	if s := f.soak; s != nil {
		if v := s.mem.rss["nats"]; len(v) > 1 {
			parts = append(parts, fmt.Sprintf("soak %d/s for %s: %.0f → %.0f MiB (peak %.0f), %+.1f MiB/min over the run, %+.1f over its second half",
				s.rate, s.d, mib(firstSample(v)), mib(v[len(v)-1]), mib(slices.Max(v)), s.mem.slope(v, 0), s.mem.slope(v, len(v)/2)))
		}
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, "; ")
}

// liveHeapGrowth renders the nats-server's live heap at the soak's middle and end (its heap profiles), which
// a memory limit does not hold down: "; live heap 88 → 92 MiB (+1.3 MiB/min)".
func (b *bench) liveHeapGrowth(ctx context.Context) string {
	s := b.fig.soak
	mid, end := b.profiles["soak-middle"], b.profiles["soak-end"]
	if s == nil || mid == "" || end == "" {
		return ""
	}
	a, errA := liveHeap(ctx, mid)
	z, errZ := liveHeap(ctx, end)
	if errA != nil || errZ != nil {
		return ""
	}
	return fmt.Sprintf("; its live heap (heap profiles, as of a GC) %.0f MiB at the middle, %.0f at the end (%+.1f MiB/min)", a, z, (z-a)/(s.d.Minutes()/2))
}

func (f *figures) natsVerdict() string {
	s := f.soak
	if s == nil {
		return "not shown: the steady phases are too short to tell; -soak 10m (make bench-full) decides"
	}
	v := s.mem.rss["nats"]
	if len(v) < 4 {
		return "not shown: too few samples"
	}
	flat := s.mem.slope(v, len(v)/2) <= flatSlope
	if s.d < soakLength {
		return fmt.Sprintf("not shown: the soak (%s) is shorter than 10 minutes (its second half %s)", s.d, map[bool]string{true: "flat", false: "growing"}[flat])
	}
	return verdict(flat) + fmt.Sprintf(" (flat: the second half grows ≤ %.0f MiB/min)", flatSlope)
}

func firstSample(v []int64) int64 {
	for _, x := range v {
		if x != 0 {
			return x
		}
	}
	return 0
}

// isStage says whether a fleet process is a stage (or a replica of one, "mapper#2"), not the server or an emulator.
func isStage(name string) bool {
	stage, _, _ := strings.Cut(name, "#")
	return slices.Contains(fleet.Stages, stage)
}

// isReferralCall says whether a Partner Center emulator count is a Referrals API call (not the sign-in's).
func isReferralCall(k string) bool { return strings.HasPrefix(k, "referrals.") && pcCounted(k) }

// referralCalls is the Referrals API calls between two counts.
func referralCalls(a, b snapshot) int { return moved(a.pc, b.pc, isReferralCall) }

// moved is how far the counts that counted picks moved from a to b.
func moved(a, b map[string]int, counted func(string) bool) int {
	n := 0
	for k, v := range b {
		if counted(k) {
			n += v - a[k]
		}
	}
	return n
}

// unchangedAuditWrites counts, from the run's commands and outcomes (stored since the fleet was up), the Audit write-backs (the auditor's
// commands of purpose audit) that sf-writer wrote with the same text the link's previous written command
// had carried to the Opportunity: a Salesforce write that changed nothing. audits is all written Audit
// write-backs.
func unchangedAuditWrites(ctx context.Context, js jetstream.JetStream, since time.Time) (unchanged, audits int, err error) {
	type sent struct{ link, text, purpose string }
	commands := map[string]sent{}
	err = readSince(ctx, js, contracts.StreamRequested, []string{contracts.SubjectOpportunityRequested + ".>"}, since, func(m storedMsg) {
		var c contracts.OpportunityCommand
		if json.Unmarshal(m.Data, &c) != nil {
			return
		}
		if text, ok := c.Fields[sf.FieldAudit].(string); ok {
			commands[m.ID] = sent{c.LinkID, text, c.Purpose}
		}
	})
	if err != nil {
		return 0, 0, err
	}
	last := map[string]string{} // link → the Audit text it last wrote
	err = readSince(ctx, js, contracts.StreamOutcomes, []string{contracts.SubjectOpportunityWritten + ".>"}, since, func(m storedMsg) {
		var o contracts.Outcome
		if json.Unmarshal(m.Data, &o) != nil || o.Status != contracts.OutcomeWritten {
			return
		}
		c, ok := commands[o.CommandID]
		if !ok {
			return
		}
		prev, seen := last[c.link]
		last[c.link] = c.text
		if c.purpose != contracts.PurposeAudit {
			return
		}
		audits++
		if seen && prev == c.text {
			unchanged++
		}
	})
	return unchanged, audits, err
}

// quantile is the p-quantile of d (sorted in place; p = 1 is the maximum).
func quantile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[int(p*float64(len(d)-1))]
}

// isSFWrite says an emulator count is of Salesforce calls that write: a Collections or sObject create,
// update, upsert or delete, or a Composite call holding a write (sfemu.CompositeWritesCount; its
// subrequests, "composite.<endpoint>", are not calls of their own).
func isSFWrite(endpoint string) bool {
	if endpoint == sfemu.CompositeWritesCount {
		return true
	}
	if !sfCounted(endpoint) {
		return false
	}
	_, op, _ := strings.Cut(endpoint, ".")
	return strings.HasPrefix(endpoint, "collections.") || strings.HasPrefix(endpoint, "sobjects.") &&
		(op == "create" || op == "update" || op == "upsert" || op == "delete")
}

// sfWriteCalls counts the Salesforce calls that wrote between two snapshots.
func sfWriteCalls(a, b snapshot) int { return moved(a.sf, b.sf, isSFWrite) }
