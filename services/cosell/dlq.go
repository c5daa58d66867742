package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/spf13/cobra"
)

const dlqSummary = "dead letters: ls | show SEQ | retry SEQ…|--all | purge SEQ…|--all"

func newDLQCmd() *cobra.Command {
	cmd := group("dlq", dlqSummary, dlqSummary+`

Messages a stage gave up on (after MaxDeliver attempts, or at once for a permanent error) are parked in
the COSELL_DLQ stream with the reason. SEQ is a dead letter's sequence, as cosell dlq ls prints it.`)
	af := addAdminFlags(cmd.PersistentFlags())

	ls := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "list parked messages: sequence, stage, link, deliveries, reason", Args: noArgs}
	lsOut := addOutput(ls)
	ls.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		return withAuditor(ctx, af, "cosell dlq ls", stderr, func(a *auditor.Auditor) int {
			dls, err := a.DeadLetters(ctx)
			if err != nil {
				fmt.Fprintf(stderr, "cosell dlq ls: %v\n", err)
				return exitFailure
			}
			lsOut.print(stdout, dls, func(w io.Writer) {
				if len(dls) == 0 {
					fmt.Fprintln(w, "no dead letters")
					return
				}
				tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tPARKED\tSTAGE\tLINK\tDELIVERIES\tREASON")
				for _, d := range dls {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", d.Seq, d.At.Format("2006-01-02 15:04:05"), d.Stage, d.LinkID, d.Deliveries, d.Reason)
				}
				tw.Flush()
			})
			return exitOK
		})
	})

	show := &cobra.Command{Use: "show SEQ", Short: "one parked message with its headers and data", Args: seqArgs(1, 1)}
	showOut := addOutput(show)
	show.RunE = runE(func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		seq, _ := strconv.ParseUint(args[0], 10, 64)
		return withAuditor(ctx, af, "cosell dlq show", stderr, func(a *auditor.Auditor) int {
			d, err := a.DeadLetter(ctx, seq)
			if err != nil {
				fmt.Fprintf(stderr, "cosell dlq show: %v\n", err)
				return exitFailure
			}
			var data any = string(d.Data)
			if json.Valid(d.Data) {
				data = json.RawMessage(d.Data)
			}
			v := deadLetterView{Seq: d.Seq, LinkID: d.LinkID, Stage: d.Stage, Stream: d.Stream, Consumer: d.Consumer,
				StreamSeq: d.StreamSeq, Subject: d.Subject, Reason: d.Reason, Deliveries: d.Deliveries, At: d.At,
				OriginalID: d.OriginalID, Header: d.Header, Data: data}
			showOut.print(stdout, v, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "SEQ\t%d\nPARKED\t%s\nSTAGE\t%s\nLINK\t%s\nORIGINAL\t%s seq %d (consumer %s), subject %s, event %s\nDELIVERIES\t%d\nREASON\t%s\n",
					d.Seq, d.At.UTC().Format(time.RFC3339), d.Stage, dash(d.LinkID), d.Stream, d.StreamSeq, d.Consumer, d.Subject, d.OriginalID, d.Deliveries, d.Reason)
				tw.Flush()
				fmt.Fprintln(w, "\nHEADERS")
				keys := make([]string, 0, len(d.Header))
				for k := range d.Header {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					fmt.Fprintf(w, "  %s: %s\n", k, strings.Join(d.Header[k], ", "))
				}
				fmt.Fprintln(w, "\nDATA")
				printJSON(w, data)
				fmt.Fprintf(w, "\nre-drive it once the cause is fixed: cosell dlq retry %d\n", d.Seq)
			})
			return exitOK
		})
	})

	retry := &cobra.Command{Use: "retry SEQ… | --all", Short: "re-drive: publish the original event again on its original subject, then remove it from the dead-letter stream",
		Long: `Re-drive parked messages: publish each original event again on its original subject (same CloudEvent id,
so handlers stay idempotent), then remove it from the dead-letter stream. Fix the cause first.`,
		Example: "  cosell dlq retry 12 13\n  cosell dlq retry --all"}
	retryAll := retry.Flags().Bool("all", false, "every parked message")
	retry.Args = seqArgsOrAll(retryAll)
	retryOut := addOutput(retry)
	retry.RunE = runE(func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return withAuditor(ctx, af, "cosell dlq retry", stderr, func(a *auditor.Auditor) int {
			seqs := parseSeqs(args)
			if *retryAll {
				var err error
				if seqs, err = allSeqs(ctx, a); err != nil {
					fmt.Fprintf(stderr, "cosell dlq retry: %v\n", err)
					return exitFailure
				}
			}
			res := retryResult{Redriven: []redriven{}, Failed: []retryFailure{}}
			for _, s := range seqs {
				d, err := a.Retry(ctx, s)
				if err != nil {
					res.Failed = append(res.Failed, retryFailure{Seq: s, Error: err.Error()})
					fmt.Fprintf(stderr, "cosell dlq retry %d: %v\n", s, err)
					continue
				}
				res.Redriven = append(res.Redriven, redriven{Seq: s, Subject: d.Subject, LinkID: d.LinkID})
			}
			retryOut.print(stdout, res, func(w io.Writer) {
				for _, r := range res.Redriven {
					fmt.Fprintf(w, "re-driven %d → %s (link %s)\n", r.Seq, r.Subject, r.LinkID)
				}
				fmt.Fprintf(w, "%d re-driven, %d failed\n", len(res.Redriven), len(res.Failed))
			})
			if len(res.Failed) > 0 {
				return exitFailure
			}
			return exitOK
		})
	})

	purge := &cobra.Command{Use: "purge SEQ… | --all", Short: "remove parked messages for good", Example: "  cosell dlq purge 12\n  cosell dlq purge --all"}
	purgeAll := purge.Flags().Bool("all", false, "every parked message")
	purge.Args = seqArgsOrAll(purgeAll)
	purgeOut := addOutput(purge)
	purge.RunE = runE(func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return withAuditor(ctx, af, "cosell dlq purge", stderr, func(a *auditor.Auditor) int {
			n, err := a.Purge(ctx, parseSeqs(args)...)
			if err != nil {
				fmt.Fprintf(stderr, "cosell dlq purge: %v\n", err)
				return exitFailure
			}
			purgeOut.print(stdout, map[string]int{"purged": n}, func(w io.Writer) { fmt.Fprintf(w, "purged %d dead letter(s)\n", n) })
			return exitOK
		})
	})
	cmd.AddCommand(ls, show, retry, purge)
	return cmd
}

// retryResult is cosell dlq retry as data.
type retryResult struct {
	Redriven []redriven     `json:"redriven"`
	Failed   []retryFailure `json:"failed"`
}

type redriven struct {
	Seq     uint64 `json:"seq"`
	Subject string `json:"subject"`
	LinkID  string `json:"linkId"`
}

type retryFailure struct {
	Seq   uint64 `json:"seq"`
	Error string `json:"error"`
}

// deadLetterView is cosell dlq show as data.
type deadLetterView struct {
	Seq        uint64              `json:"seq"`
	LinkID     string              `json:"linkId"`
	Stage      string              `json:"stage"`
	Stream     string              `json:"stream"`
	Consumer   string              `json:"consumer"`
	StreamSeq  uint64              `json:"streamSeq"`
	Subject    string              `json:"subject"`
	Reason     string              `json:"reason"`
	Deliveries uint64              `json:"deliveries"`
	At         time.Time           `json:"at"`
	OriginalID string              `json:"originalId"`
	Header     map[string][]string `json:"header"`
	Data       any                 `json:"data"`
}

// withAuditor connects and runs fn over a read-only auditor view.
func withAuditor(ctx context.Context, af *adminFlags, name string, stderr io.Writer, fn func(*auditor.Auditor) int) int {
	bus, err := af.bus(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitFailure
	}
	defer bus.Close()
	a, err := auditorOn(ctx, bus)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitFailure
	}
	return fn(a)
}

// checkSeqs refuses an argument that is not a dead-letter sequence.
func checkSeqs(args []string) error {
	for _, s := range args {
		if n, err := strconv.ParseUint(s, 10, 64); err != nil || n == 0 {
			return fmt.Errorf("%q is not a dead-letter sequence (see cosell dlq ls)", s)
		}
	}
	return nil
}

// seqArgs accepts between lo and hi sequences.
func seqArgs(lo, hi int) cobra.PositionalArgs {
	return cobra.MatchAll(cobra.RangeArgs(lo, hi), func(_ *cobra.Command, args []string) error { return checkSeqs(args) })
}

// seqArgsOrAll accepts one or more sequences, or none with --all.
func seqArgsOrAll(all *bool) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case *all && len(args) > 0:
			return errors.New("give sequences or --all, not both")
		case !*all && len(args) == 0:
			return errors.New("give the dead-letter sequence(s) to act on (see cosell dlq ls), or --all")
		}
		return checkSeqs(args)
	}
}

func parseSeqs(args []string) []uint64 {
	out := make([]uint64, 0, len(args))
	for _, s := range args {
		n, _ := strconv.ParseUint(s, 10, 64) // checked by the command's Args
		out = append(out, n)
	}
	return out
}

func allSeqs(ctx context.Context, a *auditor.Auditor) ([]uint64, error) {
	dls, err := a.DeadLetters(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]uint64, 0, len(dls))
	for _, d := range dls {
		out = append(out, d.Seq)
	}
	return out, nil
}
