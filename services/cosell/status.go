package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/spf13/cobra"
)

const statusSummary = "one screen: services, lag per consumer, dead-letter depth, links, API budget left on each side"

func newStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: statusSummary,
		Long: statusSummary + `

Reads consumer state from NATS. The API budget needs the Partner Center and Salesforce settings (env or
--config); it costs one call on each side (Salesforce /limits, Partner Center webhook registration read).`,
		Args: noArgs,
	}
	af := addAdminFlags(cmd.Flags())
	noAPI := cmd.Flags().Bool("no-api", false, "skip the API budget (no calls to Partner Center or Salesforce)")
	out := addOutput(cmd)
	cmd.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		return runStatus(ctx, af, *noAPI, out, stdout, stderr)
	})
	return cmd
}

func runStatus(ctx context.Context, af *adminFlags, noAPI bool, out *output, stdout, stderr io.Writer) int {
	bus, err := af.bus(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "cosell status: %v\n", err)
		return 1
	}
	defer bus.Close()
	a, err := auditorOn(ctx, bus)
	if err != nil {
		fmt.Fprintf(stderr, "cosell status: %v\n", err)
		return 1
	}
	st := a.Status(ctx)
	ingest := ingestActivity(ctx, bus)
	budget := []apiBudget{}
	if !noAPI {
		budget = budgets(ctx, af)
	}
	if out.structured() {
		out.print(stdout, statusReport{Status: st, Ingest: ingest, APIBudget: budget}, nil)
		return 0
	}
	fmt.Fprintf(stdout, "cosell status at %s\n\n", time.Now().UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tDETAIL")
	byStage := map[string][]auditor.StageLag{}
	for _, l := range st.Lag {
		byStage[l.Stage] = append(byStage[l.Stage], l)
	}
	for _, stage := range contracts.Stages() {
		if ls, ok := byStage[stage]; ok {
			pulling, last := 0, time.Time{}
			for _, l := range ls {
				pulling += l.Waiting
				if l.LastActive != nil && l.LastActive.After(last) {
					last = *l.LastActive
				}
			}
			state := "up"
			if pulling == 0 {
				state = "DOWN?"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d pull request(s) waiting; last delivery %s\n", stage, state, pulling, ago(last))
			continue
		}
		if t, ok := ingest[stage]; ok {
			fmt.Fprintf(tw, "%s\t%s\tlast observed event %s\n", stage, "—", ago(t))
		}
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONSUMER\tSTAGE\tPENDING\tIN FLIGHT\tRETRYING\tPER MIN")
	for _, l := range st.Lag {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\n", l.Consumer, l.Stage, l.Pending, l.AckPending, l.Redelivered, l.PerMinute)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nDEAD LETTERS  %d", st.DeadLetters)
	if st.DeadLetters > 0 {
		fmt.Fprint(stdout, "  (cosell dlq ls)")
	}
	var states []string
	for s, n := range st.LinkStates {
		states = append(states, fmt.Sprintf("%s %d", s, n))
	}
	sort.Strings(states)
	fmt.Fprintf(stdout, "\nLINKS         %d  (%s)\n", st.Links, strings.Join(states, ", "))
	if !noAPI {
		fmt.Fprintln(stdout, "\nAPI BUDGET")
		for _, b := range budget {
			fmt.Fprintf(stdout, "  %-15s %s\n", b.System, b.Detail)
		}
	}
	return 0
}

// ingestActivity is when each ingest stage last published an observed event.
func ingestActivity(ctx context.Context, bus *platform.Bus) map[string]time.Time {
	out := map[string]time.Time{}
	for stage, subj := range map[string]string{
		contracts.StagePCIngest: contracts.SubjectReferralObserved + ".>",
		contracts.StageSFIngest: contracts.SubjectOpportunityObserved + ".>",
	} {
		if m, err := bus.LastMsg(ctx, contracts.StreamObserved, subj); err == nil {
			out[stage] = m.Time
		}
	}
	return out
}

// statusReport is cosell status as data (-o json|yaml).
type statusReport struct {
	Status    auditor.Status       `json:"status"`
	Ingest    map[string]time.Time `json:"ingest"`
	APIBudget []apiBudget          `json:"apiBudget"`
}

type apiBudget struct {
	System    string `json:"system"`
	Remaining *int   `json:"remaining,omitempty"`
	Limit     *int   `json:"limit,omitempty"`
	Detail    string `json:"detail"`
}

func budgets(ctx context.Context, af *adminFlags) []apiBudget {
	sfB := apiBudget{System: "salesforce"}
	if c, err := af.sf(ctx); err != nil {
		sfB.Detail = "unknown: " + firstLine(err)
	} else if u, err := c.Limits(ctx); err != nil {
		sfB.Detail = "unknown: " + firstLine(err)
	} else {
		rem, lim := u.Remaining(), u.Max
		sfB.Remaining, sfB.Limit = &rem, &lim
		sfB.Detail = fmt.Sprintf("%d of %d daily API calls left (%.1f%% used)", rem, lim, 100*float64(u.Used)/float64(max(lim, 1)))
	}
	pcB := apiBudget{System: "partner center"}
	if c, err := af.pc(ctx); err != nil {
		pcB.Detail = "unknown: " + firstLine(err)
	} else if _, err := c.GetWebhook(ctx); err != nil && !pcapi.IsNotFound(err) {
		if d, ok := pcapi.IsThrottled(err); ok {
			pcB.Detail = fmt.Sprintf("THROTTLED: Partner Center asks to retry after %s", d)
		} else {
			pcB.Detail = "unknown: " + firstLine(err)
		}
	} else {
		pcB.Detail = "not throttled (Partner Center publishes no quota; it answers 429 + Retry-After when one is spent)"
	}
	return []apiBudget{sfB, pcB}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
