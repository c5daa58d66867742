package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/sforg"
)

const driftSummary = "compare both systems: linked pairs whose mapped fields differ, opted-in records with no link; --fix heals"

func newDriftCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drift [--fix]",
		Short: driftSummary,
		Long: driftSummary + `

Reads every referral through the Partner Center API and every opted-in Opportunity (Sync with Partner
Center, or a Referral Identifier) through the Salesforce API, and compares them with the links in NATS:
  differs    a linked pair whose mapped fields (those synced after creation; team and solutions are not
             compared) read differently on the two sides
  missing    a link whose referral or Opportunity no longer exists
  unlinked   an opted-in Opportunity or an open referral no link knows
With --fix it publishes the observed snapshot of every record newer than what the mapper last saw (the
change that was missed: a lost webhook, a poll gap) and of every unlinked record, exactly as the ingest
stages would; the mapper then decides as usual. A pair where both sides were already seen at their current
versions is reported as needing a decision (see its timeline) and left alone.
The report is kept in NATS (the links bucket, key drift.last) and shown on the status page until the next
run. Exit code: 0 no drift (or all of it fixed), 3 drift found, 1 error. Costs: one Partner Center list and one
SOQL query (paged).`,
		Args: noArgs,
	}
	af := addAdminFlags(cmd.Flags())
	fix := cmd.Flags().Bool("fix", false, "publish the events that heal the drift")
	mc := addMappingFlags(cmd.Flags(), "the mapping the mapper uses")
	out := addOutput(cmd)
	cmd.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		return runDrift(ctx, af, *mc, *fix, out, stdout, stderr)
	})
	return cmd
}

func runDrift(ctx context.Context, af *adminFlags, mc mapping.Config, fix bool, out *output, stdout, stderr io.Writer) int {
	m, err := mapping.Load(mc)
	if err != nil {
		fmt.Fprintf(stderr, "cosell drift: invalid mapping:\n%v\n", err)
		return exitUsage
	}
	bus, err := af.bus(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "cosell drift: %v\n", err)
		return exitFailure
	}
	defer bus.Close()
	pcc, err := af.pc(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "cosell drift: Partner Center: %v\n", err)
		return exitFailure
	}
	sfc, err := af.sf(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "cosell drift: Salesforce: %v\n", err)
		return exitFailure
	}
	rep, err := checkDrift(ctx, bus, pcc, sfc, m)
	if err != nil {
		fmt.Fprintf(stderr, "cosell drift: %v\n", err)
		return exitFailure
	}
	if fix {
		if err := rep.heal(ctx, bus); err != nil {
			fmt.Fprintf(stderr, "cosell drift --fix: %v\n", err)
			return exitFailure
		}
	}
	if err := saveDrift(ctx, bus, rep, fix); err != nil {
		fmt.Fprintf(stderr, "cosell drift: the status page will not show this report: %v\n", err)
	}
	out.print(stdout, rep, rep.print)
	if len(rep.Items) == 0 || (fix && rep.Unhealed == 0) {
		return exitOK
	}
	return exitDrift
}

// driftItem is one finding.
type driftItem struct {
	Kind          string      `json:"kind"` // differs | missing | unlinked
	LinkID        string      `json:"linkId,omitempty"`
	ReferralID    string      `json:"referralId,omitempty"`
	OpportunityID string      `json:"opportunityId,omitempty"`
	Fields        []fieldDiff `json:"fields,omitempty"`
	Detail        string      `json:"detail,omitempty"`
	// Heal lists the snapshots --fix publishes ("pc", "sf"); empty when re-observing cannot help.
	Heal []string `json:"heal,omitempty"`
	// Fixed says what --fix did.
	Fixed string `json:"fixed,omitempty"`

	referral    *pc.Referral
	opportunity *contracts.Opportunity
	oppVersion  contracts.Version
}

type fieldDiff struct {
	Field string `json:"field"`
	PC    any    `json:"pc"`
	SF    any    `json:"sf"`
}

type driftReport struct {
	Links        int         `json:"links"`
	Referrals    int         `json:"referrals"`
	Opportunites int         `json:"opportunities"`
	Items        []driftItem `json:"items"`
	Published    int         `json:"published,omitempty"`
	Unhealed     int         `json:"unhealed,omitempty"`
}

func checkDrift(ctx context.Context, bus *platform.Bus, pcc *pcapi.Client, sfc *sfapi.Client, m mapping.Mapping) (*driftReport, error) {
	a, err := auditorOn(ctx, bus)
	if err != nil {
		return nil, err
	}
	links, err := a.ListLinks(ctx)
	if err != nil {
		return nil, fmt.Errorf("links: %w", err)
	}
	refs := map[string]pc.Referral{}
	if err := pcc.ListReferrals(ctx, pcapi.ListOptions{}, func(r pc.Referral) error {
		refs[r.ID] = r
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list referrals: %w", err)
	}
	type oppSnap struct {
		o contracts.Opportunity
		v contracts.Version
	}
	opps := map[string]oppSnap{}
	// The snapshot sf-ingest would publish: the same fields (those the mapping names too, fitted to the
	// org), children and version.
	org, err := sforg.Discover(ctx, sfc, sf.ObjectOpportunity)
	if err != nil {
		return nil, err
	}
	fit, err := observed.Fit(ctx, org, m.SalesforceFields())
	if err != nil {
		return nil, err
	}
	sel := fit.Select()
	if err := sfc.QueryEach(ctx, "SELECT "+sel+" FROM Opportunity WHERE "+observed.Synced, false, func(rows []map[string]any) error {
		for _, row := range rows {
			o, v, err := fit.Opportunity(row)
			if err != nil {
				return err
			}
			opps[o.ID] = oppSnap{o, v}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("query opportunities: %w", err)
	}
	rep := &driftReport{Links: len(links), Referrals: len(refs), Opportunites: len(opps)}
	linkedRef, linkedOpp := map[string]bool{}, map[string]bool{}
	for _, l := range links {
		linkedRef[l.ReferralID], linkedOpp[l.OpportunityID] = true, true
		if l.ReferralID == "" || l.OpportunityID == "" {
			continue // still being created: not drift
		}
		r, rok := refs[l.ReferralID]
		o, ook := opps[l.OpportunityID]
		if !ook {
			// Not opted in any more, or deleted: read it directly before calling it missing.
			rows, err := sfc.Query(ctx, "SELECT "+sel+" FROM Opportunity WHERE Id = "+sfapi.Quote(l.OpportunityID))
			if err == nil && len(rows) == 1 {
				if so, sv, err := fit.Opportunity(rows[0]); err == nil {
					o, ook = oppSnap{so, sv}, true
				}
			}
		}
		if !rok || !ook {
			side := "referral"
			if rok {
				side = "opportunity"
			}
			rep.Items = append(rep.Items, driftItem{Kind: "missing", LinkID: l.ID, ReferralID: l.ReferralID,
				OpportunityID: l.OpportunityID, Detail: "the " + side + " no longer exists"})
			continue
		}
		diffs := compareMapped(m, m.FromReferral(r), m.FromOpportunity(o.o))
		if len(diffs) == 0 {
			continue
		}
		it := driftItem{Kind: "differs", LinkID: l.ID, ReferralID: l.ReferralID, OpportunityID: l.OpportunityID, Fields: diffs,
			referral: &r, opportunity: &o.o, oppVersion: o.v}
		if contracts.ReferralVersion(r).Newer(l.PC.Seen) {
			it.Heal = append(it.Heal, "pc")
		}
		if o.v.Newer(l.SF.Seen) {
			it.Heal = append(it.Heal, "sf")
		}
		if len(it.Heal) == 0 {
			it.Detail = "both sides were seen at these versions; needs a decision: cosell links get " + l.ID
		} else {
			it.Detail = "change not seen yet on " + strings.Join(it.Heal, " and ")
		}
		rep.Items = append(rep.Items, it)
	}
	for id, o := range opps {
		if linkedOpp[id] || o.o.Fields[sf.FieldSyncWithPartnerCenter] != true || o.o.Deleted {
			continue
		}
		o := o
		rep.Items = append(rep.Items, driftItem{Kind: "unlinked", OpportunityID: id, Heal: []string{"sf"},
			Detail: "opted in (Sync with Partner Center) but no referral is linked", opportunity: &o.o, oppVersion: o.v})
	}
	for id, r := range refs {
		if linkedRef[id] || r.Status == pc.StatusClosed {
			continue
		}
		r := r
		rep.Items = append(rep.Items, driftItem{Kind: "unlinked", ReferralID: id, Heal: []string{"pc"},
			Detail: "open referral with no Opportunity linked", referral: &r})
	}
	sort.SliceStable(rep.Items, func(i, j int) bool {
		a, b := rep.Items[i], rep.Items[j]
		return a.Kind+a.LinkID+a.ReferralID+a.OpportunityID < b.Kind+b.LinkID+b.ReferralID+b.OpportunityID
	})
	return rep, nil
}

// compareMapped lists the fields synced after creation whose canonical values differ.
func compareMapped(m mapping.Mapping, pcv, sfv mapping.Values) []fieldDiff {
	var out []fieldDiff
	for _, f := range m.Fields {
		if f.ToPC != mapping.Always && f.ToSF != mapping.Always {
			continue
		}
		if f.Kind == mapping.KindTeam || f.Kind == mapping.KindSolutions {
			continue
		}
		a, b := pcv[f.Name], sfv[f.Name]
		if !m.Same(f.Name, a, b) {
			out = append(out, fieldDiff{Field: f.Name, PC: a, SF: b})
		}
	}
	return out
}

// driftSource is the CloudEvents source of the snapshots drift --fix publishes.
const driftSource = "cosell-drift"

// heal publishes the snapshots the findings name, built and identified as the ingest stages build them
// (package observed), so a snapshot the pipeline already has is dropped by the server instead of decided
// twice, and one it lacks is complete.
func (rep *driftReport) heal(ctx context.Context, bus *platform.Bus) error {
	audit, err := auditorOn(ctx, bus)
	if err != nil {
		return err
	}
	for i := range rep.Items {
		it := &rep.Items[i]
		if len(it.Heal) == 0 {
			rep.Unhealed++
			continue
		}
		var done []string
		for _, side := range it.Heal {
			var fresh bool
			var err error
			switch side {
			case "pc":
				fresh, err = observed.PublishReferral(ctx, bus, driftSource, *it.referral, "drift")
			case "sf":
				fresh, err = observed.PublishOpportunity(ctx, bus, driftSource, *it.opportunity, it.oppVersion, "drift")
			}
			if err != nil {
				return err
			}
			if fresh {
				rep.Published++
				done = append(done, side+" snapshot published")
			} else {
				done = append(done, side+" snapshot already in the pipeline")
			}
		}
		it.Fixed = strings.Join(done, "; ")
		link := it.LinkID
		if link == "" && it.ReferralID != "" {
			link = contracts.LinkIDFor(contracts.PartnerCenter, it.ReferralID)
		} else if link == "" {
			link = contracts.LinkIDFor(contracts.Salesforce, it.OpportunityID)
		}
		if err := audit.RecordDriftFix(ctx, link, it.ReferralID, it.OpportunityID, it.Kind+": "+it.Fixed); err != nil {
			return err
		}
	}
	return nil
}

func (rep *driftReport) print(w io.Writer) {
	fmt.Fprintf(w, "checked %d link(s), %d referral(s), %d opted-in opportunit(ies)\n", rep.Links, rep.Referrals, rep.Opportunites)
	if len(rep.Items) == 0 {
		fmt.Fprintln(w, "no drift")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tLINK\tREFERRAL\tOPPORTUNITY\tFIELD\tPARTNER CENTER\tSALESFORCE")
	for _, it := range rep.Items {
		if len(it.Fields) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t%s\t\n", it.Kind, dash(it.LinkID), dash(it.ReferralID), dash(it.OpportunityID), it.Detail)
		}
		for _, f := range it.Fields {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%v\n", it.Kind, it.LinkID, it.ReferralID, it.OpportunityID, f.Field, f.PC, f.SF)
		}
	}
	tw.Flush()
	for _, it := range rep.Items {
		if it.Fixed != "" {
			fmt.Fprintf(w, "fixed %s%s%s: %s\n", it.LinkID, it.ReferralID, it.OpportunityID, it.Fixed)
		}
	}
	if rep.Published > 0 || rep.Unhealed > 0 {
		fmt.Fprintf(w, "%d snapshot(s) published; %d finding(s) need a decision\n", rep.Published, rep.Unhealed)
	} else {
		fmt.Fprintf(w, "%d finding(s); run with --fix to heal\n", len(rep.Items))
	}
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
