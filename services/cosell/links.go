package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
)

func newLinksCmd() *cobra.Command {
	cmd := group("links", "a link: both ids, its state, both sides' versions and its audit timeline", "")
	af := addAdminFlags(cmd.PersistentFlags())
	get := &cobra.Command{
		Use:   "get ID",
		Short: "show one link and its timeline, by referral id, Opportunity id or link id",
		Long: `Show one link (the referral id ↔ Opportunity id pair, its state, the agreed values of every mapped
field, each side's newest version, its outbox) and its audit timeline (every decision, oldest first).
ID is a Partner Center referral id, a Salesforce Opportunity id or a link id (pc-<referralId>, sf-<opportunityId>).`,
		Example: "  cosell links get 0a9d1c7e-4f1b-4c3a-9a67-1f2e3d4c5b6a\n  cosell links get 006000000000001AAA -o json",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("give one referral id, Opportunity id or link id, got %d argument(s)", len(args))
			}
			return nil
		},
	}
	out := addOutput(get)
	get.RunE = runE(func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		bus, err := af.bus(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "cosell links get: %v\n", err)
			return exitFailure
		}
		defer bus.Close()
		a, err := auditorOn(ctx, bus)
		if err != nil {
			fmt.Fprintf(stderr, "cosell links get: %v\n", err)
			return exitFailure
		}
		l, err := a.Link(ctx, args[0])
		if err != nil {
			fmt.Fprintf(stderr, "cosell links get: %v\n", err)
			return exitFailure
		}
		tl, err := a.Timeline(ctx, l.ID)
		if err != nil {
			fmt.Fprintf(stderr, "cosell links get: timeline: %v\n", err)
			return exitFailure
		}
		tl = auditor.InFlight(tl, l)
		out.print(stdout, linkView{Link: l, Timeline: tl}, func(w io.Writer) { printLink(w, l, tl) })
		return exitOK
	})
	cmd.AddCommand(get)
	return cmd
}

// linkView is cosell links get as data.
type linkView struct {
	Link     *auditor.LinkRecord  `json:"link"`
	Timeline []contracts.Decision `json:"timeline"`
}

func printLink(w io.Writer, l *auditor.LinkRecord, tl []contracts.Decision) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	status := l.Status
	if status == "" {
		status = "✔"
	}
	for _, kv := range [][2]string{
		{"LINK", l.ID}, {"STATE", l.State + "  " + status}, {"ORIGIN", string(l.Origin)},
		{"REFERRAL", dash(l.ReferralID) + "  " + versionText(l.PC)},
		{"OPPORTUNITY", dash(l.OpportunityID) + "  " + versionText(l.SF)},
		{"UPDATED", l.UpdatedAt.UTC().Format(time.RFC3339)},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
	}
	if l.LastError != "" {
		fmt.Fprintf(tw, "LAST ERROR\t%s\n", l.LastError)
	}
	if l.Held != nil {
		fmt.Fprintf(tw, "HELD\t%s [%s]\n", l.Held.Reason, strings.Join(l.Held.Fields, ", "))
	}
	if l.Paused {
		fmt.Fprintf(tw, "PAUSED\tSync with Partner Center is off on the Opportunity\n")
	}
	if len(l.Outbox) > 0 {
		fmt.Fprintf(tw, "OUTBOX\t%d message(s) of the last decision, kept until the next one (published again only if the mapper stopped before publishing them)\n", len(l.Outbox))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nTIMELINE (%d)\n", len(tl))
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tSTAGE\tKIND\tTARGET\tFIELDS\tDETAIL")
	for _, d := range tl {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.At.UTC().Format("2006-01-02 15:04:05"), d.Stage, d.Kind,
			dash(string(d.Target)), dash(strings.Join(d.Fields, ",")), d.Detail)
	}
	tw.Flush()
	fmt.Fprintln(w, "\n(-o json or -o yaml for the agreed values and every version)")
}

func versionText(s contracts.Side) string {
	if s.Seen.At.IsZero() {
		return "(not seen yet)"
	}
	return "seen at " + s.Seen.At.UTC().Format(time.RFC3339)
}
