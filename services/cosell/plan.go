package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/mapper/decide"
)

const planSummary = "dry run: print the field changes each side would receive, writing nothing"

func newPlanCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan (--referral ID | --opportunity ID | --since T [--until T] | --all)",
		Short: planSummary,
		Long: planSummary + `.
Reads the newest observed snapshot of each record from the observed stream and the links from KV
(NATS at COSELL_NATS_URL or --nats), decides on each with the mapping as if it had just been observed, and
prints what would be sent. Pick one record (--referral / --opportunity), a time range (--since / --until, by
the snapshot's source version time), or everything (--all, a backfill preview).`,
		Example: "  cosell plan --opportunity 006000000000001AAA\n  cosell plan --all --mapping new-mapping.yaml -o json",
		Args:    noArgs,
	}
	fl := cmd.Flags()
	af := addAdminFlags(fl)
	var sel planSelection
	var since, until string
	fl.StringVar(&sel.ReferralID, "referral", "", "plan for this referral id")
	fl.StringVar(&sel.OpportunityID, "opportunity", "", "plan for this Opportunity id")
	fl.StringVar(&since, "since", "", "plan for records changed at or after this RFC 3339 time")
	fl.StringVar(&until, "until", "", "plan for records changed before this RFC 3339 time")
	fl.BoolVar(&sel.All, "all", false, "plan for every record observed (backfill preview)")
	mc := addMappingFlags(fl, "decide with this mapping file (preview a mapping change)")
	out := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		for _, t := range []struct {
			in  string
			out *time.Time
		}{{since, &sel.Since}, {until, &sel.Until}} {
			if t.in == "" {
				continue
			}
			v, err := time.Parse(time.RFC3339, t.in)
			if err != nil {
				return usagef("%q is not an RFC 3339 time: %v", t.in, err)
			}
			*t.out = v
		}
		if sel.ReferralID == "" && sel.OpportunityID == "" && sel.Since.IsZero() && sel.Until.IsZero() && !sel.All {
			return usagef("say what to plan for: --referral ID, --opportunity ID, --since/--until, or --all")
		}
		return runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
			m, err := mapping.Load(*mc)
			if err != nil {
				fmt.Fprintf(stderr, "cosell plan: invalid mapping:\n%v\n", err)
				return exitFailure
			}
			bus, err := af.bus(ctx)
			if err != nil {
				fmt.Fprintf(stderr, "cosell plan: %v\n", err)
				return exitFailure
			}
			defer bus.Close()
			plans, err := Plan(ctx, bus, m, sel, time.Now().UTC())
			if err != nil {
				fmt.Fprintf(stderr, "cosell plan: %v\n", err)
				return exitFailure
			}
			out.print(stdout, plans, func(w io.Writer) { printPlans(w, plans) })
			return exitOK
		})(cmd, nil)
	}
	return cmd
}

// planSelection says which records to plan for.
type planSelection struct {
	ReferralID, OpportunityID string
	Since, Until              time.Time
	All                       bool
}

func (s planSelection) match(sys contracts.System, id string, v contracts.Version) bool {
	if s.All {
		return true
	}
	if s.ReferralID != "" || s.OpportunityID != "" {
		return (sys == contracts.PartnerCenter && id == s.ReferralID) || (sys == contracts.Salesforce && id == s.OpportunityID)
	}
	return (s.Since.IsZero() || !v.At.Before(s.Since)) && (s.Until.IsZero() || v.At.Before(s.Until))
}

// RecordPlan is what one record's newest snapshot would cause.
type RecordPlan struct {
	System    contracts.System     `json:"system"`
	ID        string               `json:"id"`
	Version   contracts.Version    `json:"version"`
	LinkID    string               `json:"linkId,omitempty"`
	Linked    bool                 `json:"linked"`
	Decisions []contracts.Decision `json:"decisions"`
	// ToPC and ToSF are the writes each side would receive (nil: none).
	ToPC *contracts.ReferralCommand     `json:"toPC,omitempty"`
	ToSF []contracts.OpportunityCommand `json:"toSF,omitempty"`
}

// Plan decides, without writing anything, on the newest observed snapshot of each selected record against
// its link as stored now. The snapshot is decided on as if it had just arrived (the version already
// decided on is not a reason to skip), so a changed mapping shows every write it would cause.
func Plan(ctx context.Context, bus *platform.Bus, m mapping.Mapping, sel planSelection, now time.Time) ([]RecordPlan, error) {
	d := decide.Decider{Mapping: m}
	snaps, err := latestSnapshots(ctx, bus, sel)
	if err != nil {
		return nil, err
	}
	kv, err := bus.KV(ctx, contracts.BucketLinks)
	if err != nil {
		return nil, fmt.Errorf("links bucket: %w", err)
	}
	var out []RecordPlan
	for _, o := range snaps {
		obs := o.observe(d)
		link, err := findLink(ctx, kv, obs.System, obs.EntityID, obs.Counterpart)
		if err != nil {
			return nil, err
		}
		p := RecordPlan{System: obs.System, ID: obs.EntityID, Version: obs.Version, Linked: link != nil}
		if link != nil {
			p.LinkID = link.ID
			l := *link
			// Decide as if first seen at this version.
			if obs.System == contracts.PartnerCenter {
				l.PC.Seen = contracts.Version{}
			} else {
				l.SF.Seen = contracts.Version{}
			}
			link = &l
		}
		res := d.Observe(link, obs, now)
		p.Decisions = res.Decisions
		if res.Referral != nil {
			c := res.Referral.Data
			p.ToPC = &c
		}
		for _, c := range []*decide.Command[contracts.OpportunityCommand]{res.Opp, res.LinkBack} {
			if c != nil {
				p.ToSF = append(p.ToSF, c.Data)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

type snapshot struct {
	eventID  string
	referral *contracts.ReferralObserved
	opp      *contracts.OpportunityObserved
}

func (s snapshot) observe(d decide.Decider) decide.Observation {
	if s.referral != nil {
		return d.ObserveReferral(s.eventID, s.referral.Referral, s.referral.Version)
	}
	return d.ObserveOpportunity(s.eventID, s.opp.Opportunity, s.opp.Version)
}

// latestSnapshots reads the observed stream once, start to end, keeping each selected record's newest
// snapshot, in the order records were first seen.
func latestSnapshots(ctx context.Context, r platform.StreamReader, sel planSelection) ([]snapshot, error) {
	newest := map[string]snapshot{}
	at := map[string]contracts.Version{}
	var order []string
	err := r.Read(ctx, contracts.StreamObserved, func(msg platform.Stored) error {
		e, err := msg.Event()
		if err != nil {
			return nil // not an event of ours: nothing to plan for
		}
		var s snapshot
		var key string
		var v contracts.Version
		switch e.Type() {
		case contracts.TypeReferralObserved:
			d, err := platform.DataAs[contracts.ReferralObserved](e)
			if err != nil || d.Referral.ID == "" {
				return nil
			}
			s, key, v = snapshot{eventID: e.ID(), referral: &d}, "pc/"+d.Referral.ID, d.Version
		case contracts.TypeOpportunityObserved:
			d, err := platform.DataAs[contracts.OpportunityObserved](e)
			if err != nil || d.Opportunity.ID == "" {
				return nil
			}
			s, key, v = snapshot{eventID: e.ID(), opp: &d}, "sf/"+d.Opportunity.ID, d.Version
		default:
			return nil
		}
		if prev, seen := at[key]; seen && !v.Newer(prev) {
			return nil
		}
		if _, seen := at[key]; !seen {
			order = append(order, key)
		}
		at[key], newest[key] = v, s
		return nil
	}, platform.Subjects(contracts.SubjectReferralObserved+".>", contracts.SubjectOpportunityObserved+".>"))
	if err != nil {
		return nil, fmt.Errorf("read observed stream: %w", err)
	}
	var out []snapshot
	for _, key := range order {
		s := newest[key]
		sys, id := contracts.PartnerCenter, strings.TrimPrefix(key, "pc/")
		if s.opp != nil {
			sys, id = contracts.Salesforce, strings.TrimPrefix(key, "sf/")
		}
		if sel.match(sys, id, at[key]) {
			out = append(out, s)
		}
	}
	return out, nil
}

// findLink reads a record's link from KV the way the mapper finds it.
func findLink(ctx context.Context, kv jetstream.KeyValue, sys contracts.System, id, counterpart string) (*contracts.Link, error) {
	for _, k := range []struct {
		sys contracts.System
		id  string
	}{{sys, id}, {sys.Other(), counterpart}} {
		if k.id == "" {
			continue
		}
		// The side that started a link names it (the mapper keeps no index for it), the other has an index.
		if l, err := getLink(ctx, kv, contracts.LinkIDFor(k.sys, k.id)); l != nil || err != nil {
			return l, err
		}
		e, err := kv.Get(ctx, contracts.IndexKey(k.sys, k.id))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read index %s %s: %w", k.sys, k.id, err)
		}
		return getLink(ctx, kv, string(e.Value()))
	}
	return nil, nil
}

func getLink(ctx context.Context, kv jetstream.KeyValue, id string) (*contracts.Link, error) {
	e, err := kv.Get(ctx, contracts.LinkKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read link %s: %w", id, err)
	}
	var l contracts.Link
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return nil, fmt.Errorf("link %s: %w", id, err)
	}
	return &l, nil
}

func printPlans(w io.Writer, plans []RecordPlan) {
	writes := 0
	for _, p := range plans {
		what := "referral"
		if p.System == contracts.Salesforce {
			what = "opportunity"
		}
		link := "no link yet"
		if p.Linked {
			link = "link " + p.LinkID
		}
		fmt.Fprintf(w, "%s %s (version %s, %s)\n", what, p.ID, p.Version.At.Format(time.RFC3339), link)
		if c := p.ToPC; c != nil {
			writes++
			if c.Create != nil {
				b, _ := json.Marshal(c.Create)
				fmt.Fprintf(w, "  → Partner Center: create referral %s\n", b)
			}
			for _, op := range c.Patch {
				b, _ := json.Marshal(op.Value)
				fmt.Fprintf(w, "  → Partner Center: %s %s = %s\n", op.Op, op.Path, b)
			}
		}
		for _, c := range p.ToSF {
			writes++
			target := "Opportunity " + c.OpportunityID
			if c.Op == contracts.OpCreate {
				target = "new Opportunity (upsert by Referral Identifier " + c.ReferralID + ")"
			}
			keys := make([]string, 0, len(c.Fields))
			for k := range c.Fields {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				b, _ := json.Marshal(c.Fields[k])
				fmt.Fprintf(w, "  → Salesforce: %s %s = %s\n", target, k, b)
			}
			if c.Account != nil {
				b, _ := json.Marshal(c.Account)
				fmt.Fprintf(w, "  → Salesforce: account %s\n", b)
			}
			if c.SetSolutions {
				b, _ := json.Marshal(c.Solutions)
				fmt.Fprintf(w, "  → Salesforce: %s Microsoft Solutions = %s\n", target, b)
			}
		}
		for _, d := range p.Decisions {
			fields := ""
			if len(d.Fields) > 0 {
				fields = " [" + strings.Join(d.Fields, ", ") + "]"
			}
			fmt.Fprintf(w, "  %s%s: %s\n", d.Kind, fields, d.Detail)
		}
	}
	fmt.Fprintf(w, "%d record(s), %d write(s) would be sent; nothing was written\n", len(plans), writes)
}
