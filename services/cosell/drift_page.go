package main

import (
	"context"
	"time"

	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// saveDrift keeps rep where the status page reads it (auditor.DriftKey): drift needs both systems' APIs,
// which the auditor does not call, so the page shows what the last run found and when.
func saveDrift(ctx context.Context, bus *platform.Bus, rep *driftReport, fixed bool) error {
	a, err := auditorOn(ctx, bus)
	if err != nil {
		return err
	}
	out := auditor.DriftReport{At: time.Now().UTC(), Links: rep.Links, Referrals: rep.Referrals, Opportunities: rep.Opportunites,
		Fixed: fixed, Findings: []auditor.DriftFinding{}}
	for _, it := range rep.Items {
		f := auditor.DriftFinding{Kind: it.Kind, LinkID: it.LinkID, ReferralID: it.ReferralID, OpportunityID: it.OpportunityID, Detail: it.Detail}
		for _, d := range it.Fields {
			f.Fields = append(f.Fields, d.Field)
		}
		if it.Fixed != "" {
			f.Detail += "; --fix: " + it.Fixed
		}
		out.Findings = append(out.Findings, f)
	}
	return a.SaveDrift(ctx, out)
}
