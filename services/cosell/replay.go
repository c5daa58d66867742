package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

const replaySummary = "re-drive a stage from a point in a stream, with progress and a summary"

func newReplayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay --stream STREAM (--since T | --from-seq N) [--stage STAGE]",
		Short: replaySummary,
		Long: replaySummary + `

Rewinds the durable consumer(s) of --stream (only --stage's, when given) to the first message at or after
--since, or to --from-seq, and waits while the running stage handles everything again. Handlers are
idempotent: a record already in the desired state costs no external write. The summary counts what was
really written while replaying:
  applied   writes carried out: a writer's written outcomes; for the mapper and the auditor, the written
            outcomes of the commands they decided while replaying (the replay waits for the writers), so a
            command a writer skips as already carried out is not counted
  skipped   handled with nothing to do: already converged (applied mark, echo, stale, no change, an
            outcome already folded into its link)
  failed    failed outcomes and messages parked in the dead-letter stream (see cosell dlq ls)
Live traffic that arrives meanwhile is counted too. Progress goes to stderr.

Streams and their stages: ` + replayStreams(),
		Example: "  cosell replay --stream COSELL_REQUESTED --since 90m\n  cosell replay --stream COSELL_OBSERVED --from-seq 1 --stage mapper",
		Args:    noArgs,
	}
	af := addAdminFlags(cmd.Flags())
	fs := cmd.Flags()
	stream := fs.String("stream", "", "stream to replay (required), e.g. COSELL_REQUESTED")
	since := fs.String("since", "", "replay from this time: RFC 3339 (2025-01-31T09:00:00Z) or a duration ago (90m)")
	fromSeq := fs.Uint64("from-seq", 0, "replay from this stream sequence")
	stage := fs.String("stage", "", "only this stage's consumer(s) (default: every consumer of the stream)")
	wait := fs.Duration("wait", 10*time.Minute, "give up waiting for the replay to finish after this long")
	_ = cmd.MarkFlagRequired("stream")
	cmd.MarkFlagsMutuallyExclusive("since", "from-seq")
	cmd.MarkFlagsOneRequired("since", "from-seq")
	var streams, stages []string
	for _, c := range contracts.Consumers() {
		if !slices.Contains(streams, c.Stream) {
			streams = append(streams, c.Stream)
		}
		if !slices.Contains(stages, c.Stage) {
			stages = append(stages, c.Stage)
		}
	}
	_ = cmd.RegisterFlagCompletionFunc("stream", cobra.FixedCompletions(streams, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("stage", cobra.FixedCompletions(stages, cobra.ShellCompDirectiveNoFileComp))
	out := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *fromSeq == 0 && *since == "" {
			return usagef("give exactly one of --since or --from-seq (a --from-seq of 0 is no start point)")
		}
		var start time.Time
		if *since != "" {
			t, err := parseSince(*since, time.Now())
			if err != nil {
				return usagef("--since: %v", err)
			}
			start = t
		}
		var specs []contracts.ConsumerSpec
		for _, c := range contracts.Consumers() {
			if c.Stream == *stream && (*stage == "" || c.Stage == *stage) {
				specs = append(specs, c)
			}
		}
		if len(specs) == 0 {
			return usagef("no consumer on stream %q for stage %q; streams and stages: %s", *stream, *stage, replayStreams())
		}
		return runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
			bus, err := af.bus(ctx)
			if err != nil {
				fmt.Fprintf(stderr, "cosell replay: %v\n", err)
				return exitFailure
			}
			defer bus.Close()
			res, err := replay(ctx, bus, specs, start, *fromSeq, *wait, stderr)
			if err != nil {
				fmt.Fprintf(stderr, "\ncosell replay: %v\n", err)
				return exitFailure
			}
			res.Stream = *stream
			out.print(stdout, res, func(w io.Writer) {
				fmt.Fprintf(w, "replayed %d message(s) of %s through %s: applied %d, skipped as already converged %d, failed %d\n",
					res.Replayed, *stream, strings.Join(res.Consumers, ", "), res.Applied, res.Skipped, res.Failed)
				if res.Failed > 0 {
					fmt.Fprintln(w, "failed messages are in the dead-letter stream: cosell dlq ls")
				}
			})
			return exitOK
		})(cmd, nil)
	}
	return cmd
}

func replayStreams() string {
	var parts []string
	for _, c := range contracts.Consumers() {
		parts = append(parts, fmt.Sprintf("%s→%s (%s)", c.Stream, c.Stage, c.Durable))
	}
	return strings.Join(parts, ", ")
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration", s)
	}
	return now.Add(-d), nil
}

// replayResult is what a replay did.
type replayResult struct {
	Stream    string   `json:"stream"`
	Consumers []string `json:"consumers"`
	Replayed  int      `json:"replayed"`
	Applied   int      `json:"applied"`
	Skipped   int      `json:"skipped"`
	Failed    int      `json:"failed"`
}

// outputs names, for a stage, the stream and subjects whose new messages mean "applied" and "failed".
func outputs(stage string) (stream string, applied, failed []string) {
	switch stage {
	case contracts.StagePCWriter:
		return contracts.StreamOutcomes, []string{contracts.SubjectReferralWritten + ".>"}, []string{contracts.SubjectReferralFailed + ".>"}
	case contracts.StageSFWriter:
		return contracts.StreamOutcomes, []string{contracts.SubjectOpportunityWritten + ".>"}, []string{contracts.SubjectOpportunityFailed + ".>"}
	case contracts.StageMapper:
		return contracts.StreamRequested, []string{contracts.SubjectReferralRequested + ".>", contracts.SubjectOpportunityRequested + ".>"}, nil
	case contracts.StageAuditor:
		return contracts.StreamRequested, []string{contracts.SubjectOpportunityRequested + ".>"}, nil
	}
	return "", nil, nil
}

func replay(ctx context.Context, bus *platform.Bus, specs []contracts.ConsumerSpec, since time.Time, fromSeq uint64, wait time.Duration, progress io.Writer) (replayResult, error) {
	var res replayResult
	// Baselines: what the stages' output streams and the dead-letter stream hold before the replay.
	baseline := map[string]uint64{}
	for _, name := range []string{contracts.StreamOutcomes, contracts.StreamRequested, contracts.StreamDeadLetter} {
		seq, err := lastSeq(ctx, bus, name)
		if err != nil {
			return res, err
		}
		baseline[name] = seq
	}
	type target struct {
		spec contracts.ConsumerSpec
		from uint64
	}
	var targets []target
	for _, c := range specs {
		from := fromSeq
		if from == 0 {
			seq, ok, err := firstSeqSince(ctx, bus, c, since)
			if err != nil {
				return res, err
			}
			if !ok {
				continue // nothing in the stream for this consumer since then
			}
			from = seq
		}
		targets = append(targets, target{c, from})
	}
	total := 0
	for _, t := range targets {
		// Count what the rewind re-delivers before rewinding: a running stage may have handled all of it
		// before the durable's own pending count could be read.
		n, err := countSince(ctx, bus, t.spec.Stream, t.from-1, t.spec.FilterSubjects, "")
		if err != nil {
			return res, err
		}
		total += n
		if err := bus.ResetConsumer(ctx, t.spec.Durable, t.from); err != nil {
			return res, fmt.Errorf("rewind: %w", err)
		}
		res.Consumers = append(res.Consumers, fmt.Sprintf("%s (from seq %d)", t.spec.Durable, t.from))
	}
	res.Replayed = total
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		left := 0
		for _, t := range targets {
			pending, ackPending, err := bus.Lag(ctx, t.spec.Durable)
			if err != nil {
				return res, err
			}
			left += int(pending + ackPending)
		}
		drawProgress(progress, total-min(left, total), total)
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%d message(s) still pending after %s; the stage may be down (cosell status)", left, wait)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-tick.C:
		}
	}
	fmt.Fprintln(progress)
	for _, t := range targets {
		stream, applied, failed := outputs(t.spec.Stage)
		if stream == "" {
			continue
		}
		if stream == contracts.StreamRequested {
			// The stage decides commands: count the ones a writer then carried out.
			written, failedN, err := commandsWritten(ctx, bus, baseline, applied, t.spec.Stage, deadline)
			if err != nil {
				return res, err
			}
			res.Applied += written
			res.Failed += failedN
			n, err := countSince(ctx, bus, contracts.StreamDeadLetter, baseline[contracts.StreamDeadLetter],
				[]string{contracts.SubjectDeadLetter + "." + contracts.Token(t.spec.Stage) + ".>"}, "")
			if err != nil {
				return res, err
			}
			res.Failed += n
			continue
		}
		n, err := countSince(ctx, bus, stream, baseline[stream], applied, t.spec.Stage)
		if err != nil {
			return res, err
		}
		res.Applied += n
		if len(failed) > 0 {
			n, err := countSince(ctx, bus, stream, baseline[stream], failed, t.spec.Stage)
			if err != nil {
				return res, err
			}
			res.Failed += n
		}
		n, err = countSince(ctx, bus, contracts.StreamDeadLetter, baseline[contracts.StreamDeadLetter],
			[]string{contracts.SubjectDeadLetter + "." + contracts.Token(t.spec.Stage) + ".>"}, "")
		if err != nil {
			return res, err
		}
		res.Failed += n
	}
	res.Skipped = max(res.Replayed-res.Applied-res.Failed, 0)
	return res, nil
}

// commandsWritten waits until the writers have handled the commands stage published (on subjects)
// since the baseline, then counts the written and failed outcomes of exactly those commands. A command a
// writer finds already carried out (its applied mark) has no new outcome, so it counts as neither.
func commandsWritten(ctx context.Context, bus *platform.Bus, baseline map[string]uint64, subjects []string, stage string, deadline time.Time) (written, failed int, err error) {
	ids := map[string]bool{}
	err = bus.Read(ctx, contracts.StreamRequested, func(m platform.Stored) error {
		if m.Header.Get("ce-source") == stage {
			ids[m.Header.Get("ce-id")] = true
		}
		return nil
	}, platform.Subjects(subjects...), platform.FromSeq(baseline[contracts.StreamRequested]+1))
	if err != nil || len(ids) == 0 {
		return 0, 0, err
	}
	for {
		left := 0
		for _, durable := range []string{contracts.ConsumerPCWriter, contracts.ConsumerSFWriter} {
			pending, ackPending, err := bus.Lag(ctx, durable)
			if err != nil {
				return 0, 0, err
			}
			left += int(pending + ackPending)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("the writers still have %d command(s) pending; the stages may be down (cosell status)", left)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	err = bus.Read(ctx, contracts.StreamOutcomes, func(m platform.Stored) error {
		var out contracts.Outcome
		if json.Unmarshal(m.Data, &out) != nil || !ids[out.CommandID] {
			return nil
		}
		if out.Status == contracts.OutcomeWritten {
			written++
		} else {
			failed++
		}
		return nil
	}, platform.FromSeq(baseline[contracts.StreamOutcomes]+1))
	if err != nil {
		return 0, 0, fmt.Errorf("count %s: %w", contracts.StreamOutcomes, err)
	}
	return written, failed, nil
}

func drawProgress(w io.Writer, done, total int) {
	const width = 30
	fill := width
	if total > 0 {
		fill = width * done / total
	}
	fmt.Fprintf(w, "\r[%s%s] %d/%d", strings.Repeat("#", fill), strings.Repeat(".", width-fill), done, total)
}

func lastSeq(ctx context.Context, bus *platform.Bus, stream string) (uint64, error) {
	info, err := bus.StreamInfo(ctx, stream)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// firstSeqSince finds the first message of the consumer's subjects stored at or after t.
func firstSeqSince(ctx context.Context, r platform.StreamReader, c contracts.ConsumerSpec, t time.Time) (uint64, bool, error) {
	var first uint64
	err := r.Read(ctx, c.Stream, func(m platform.Stored) error {
		first = m.Seq
		return platform.ErrStopReading
	}, platform.Subjects(c.FilterSubjects...), platform.Since(t))
	if err != nil {
		return 0, false, fmt.Errorf("find %s messages since %s: %w", c.Stream, t.Format(time.RFC3339), err)
	}
	return first, first > 0, nil
}

// countSince counts messages stored after seq on subjects, published by source ("" = any source).
func countSince(ctx context.Context, r platform.StreamReader, stream string, seq uint64, subjects []string, source string) (int, error) {
	n := 0
	err := r.Read(ctx, stream, func(m platform.Stored) error {
		if source == "" || m.Header.Get("ce-source") == source {
			n++
		}
		return nil
	}, platform.Subjects(subjects...), platform.FromSeq(seq+1))
	if err != nil {
		return n, fmt.Errorf("count %s: %w", stream, err)
	}
	return n, nil
}
