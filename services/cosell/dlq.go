package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/cosell-dev/cosell/services/auditor/auditor"
)

const dlqSummary = "dead letters: ls | show SEQ | retry SEQ…|--all | purge SEQ…|--all"

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("dlq", dlqSummary+`

  ls            list parked messages: sequence, stage, link, deliveries, reason
  show SEQ      one parked message with its headers and data
  retry SEQ…    re-drive: publish the original event again on its original subject (same CloudEvent id,
                so handlers stay idempotent), then remove it from the dead-letter stream; fix the cause first
  purge SEQ…    remove parked messages for good

Put the flags before the subcommand, e.g. cosell dlq --nats nats://127.0.0.1:4222 retry --all`, stderr)
	af := addAdminFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if done, code := parse(fs, args); done {
		return code
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	sub, rest := rest[0], rest[1:]
	all := len(rest) == 1 && rest[0] == "--all"
	var seqs []uint64
	if !all {
		for _, s := range rest {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil || n == 0 {
				fmt.Fprintf(stderr, "cosell dlq %s: %q is not a dead-letter sequence (see cosell dlq ls)\n", sub, s)
				return 2
			}
			seqs = append(seqs, n)
		}
	}
	switch sub {
	case "ls":
	case "show":
		if len(seqs) != 1 {
			fmt.Fprintln(stderr, "usage: cosell dlq show SEQ")
			return 2
		}
	case "retry", "purge":
		if len(seqs) == 0 && !all {
			fmt.Fprintf(stderr, "usage: cosell dlq %s SEQ… | --all\n", sub)
			return 2
		}
	default:
		fmt.Fprintf(stderr, "cosell dlq: unknown subcommand %q\n", sub)
		fs.Usage()
		return 2
	}

	bus, err := af.bus(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "cosell dlq: %v\n", err)
		return 1
	}
	defer bus.Close()
	a, err := auditorOn(ctx, bus)
	if err != nil {
		fmt.Fprintf(stderr, "cosell dlq: %v\n", err)
		return 1
	}
	switch sub {
	case "ls":
		dls, err := a.DeadLetters(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "cosell dlq ls: %v\n", err)
			return 1
		}
		if *asJSON {
			printJSON(stdout, dls)
			return 0
		}
		if len(dls) == 0 {
			fmt.Fprintln(stdout, "no dead letters")
			return 0
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tPARKED\tSTAGE\tLINK\tDELIVERIES\tREASON")
		for _, d := range dls {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", d.Seq, d.At.Format("2006-01-02 15:04:05"), d.Stage, d.LinkID, d.Deliveries, d.Reason)
		}
		tw.Flush()
	case "show":
		d, err := a.DeadLetter(ctx, seqs[0])
		if err != nil {
			fmt.Fprintf(stderr, "cosell dlq show: %v\n", err)
			return 1
		}
		var data any = string(d.Data)
		if json.Valid(d.Data) {
			data = json.RawMessage(d.Data)
		}
		printJSON(stdout, map[string]any{"seq": d.Seq, "linkId": d.LinkID, "stage": d.Stage, "stream": d.Stream,
			"consumer": d.Consumer, "streamSeq": d.StreamSeq, "subject": d.Subject, "reason": d.Reason,
			"deliveries": d.Deliveries, "at": d.At, "originalId": d.OriginalID, "header": d.Header, "data": data})
	case "retry":
		if all {
			if seqs, err = allSeqs(ctx, a); err != nil {
				fmt.Fprintf(stderr, "cosell dlq retry: %v\n", err)
				return 1
			}
		}
		failed := 0
		for _, s := range seqs {
			d, err := a.Retry(ctx, s)
			if err != nil {
				failed++
				fmt.Fprintf(stderr, "cosell dlq retry %d: %v\n", s, err)
				continue
			}
			fmt.Fprintf(stdout, "re-driven %d → %s (link %s)\n", s, d.Subject, d.LinkID)
		}
		fmt.Fprintf(stdout, "%d re-driven, %d failed\n", len(seqs)-failed, failed)
		if failed > 0 {
			return 1
		}
	case "purge":
		var n int
		if all {
			n, err = a.Purge(ctx)
		} else {
			n, err = a.Purge(ctx, seqs...)
		}
		if err != nil {
			fmt.Fprintf(stderr, "cosell dlq purge: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "purged %d dead letter(s)\n", n)
	}
	return 0
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
