package decide

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
)

// TestOptOut: outbound sync happens only while Sync with Partner Center is on (issue 13, defect 1).
func TestOptOut(t *testing.T) {
	m := def()

	t.Run("a referral id without the flag does not link", func(t *testing.T) {
		o := opp("006A", map[string]any{sf.FieldSyncWithPartnerCenter: false, sf.FieldReferralIdentifier: "r-9"})
		res := m.Observe(nil, m.ObserveOpportunity("e1", o, ver("1", 0)), t0)
		if res.Link != nil || res.Referral != nil || len(res.Decisions) != 1 || res.Decisions[0].Kind != contracts.DecisionIgnored {
			t.Fatalf("want ignored and no link, got link %+v decisions %+v", res.Link, res.Decisions)
		}
		if !strings.Contains(res.Decisions[0].Detail, "Sync with Partner Center is off") {
			t.Errorf("detail = %q", res.Decisions[0].Detail)
		}
	})

	t.Run("unticking pauses, ticking resumes with a three-way diff", func(t *testing.T) {
		l, r := activeLink(t, m)
		// The seller unticks the flag and changes the amount: nothing goes to Partner Center.
		off := mirror(r, "Qualification", map[string]any{sf.FieldSyncWithPartnerCenter: false, sf.FieldAmount: 61000.0})
		res := m.Observe(&l, m.ObserveOpportunity("sf-off", off, ver("s2", 3)), t0)
		if res.Referral != nil {
			t.Fatalf("a paused link must not patch Partner Center: %+v", res.Referral.Data.Patch)
		}
		if res.Link == nil || !res.Link.Paused {
			t.Fatalf("the link must be paused: %+v", res.Link)
		}
		if k := kinds(res.Decisions); len(k) != 1 || k[0] != contracts.DecisionHeld || !strings.Contains(res.Decisions[0].Detail, "paused") {
			t.Fatalf("pausing must be audited once as held: %+v", res.Decisions)
		}
		if res.LinkBack == nil || !strings.HasPrefix(text(res.LinkBack.Data.Fields[sf.FieldSyncStatus]), "⏸") {
			t.Fatalf("the status must show the pause: %+v", res.LinkBack)
		}
		l = *res.Link
		// Another edit while paused: still nothing to Partner Center.
		off2 := mirror(r, "Qualification", map[string]any{sf.FieldSyncWithPartnerCenter: false, sf.FieldAmount: 61000.0, sf.FieldDescription: "paused note"})
		res = m.Observe(&l, m.ObserveOpportunity("sf-off2", off2, ver("s3", 4)), t0)
		if res.Referral != nil {
			t.Fatalf("a paused link must not patch Partner Center: %+v", res.Referral.Data.Patch)
		}
		l = *res.Link
		// Microsoft changes the close date: shown on the Opportunity while paused.
		r.Details.ClosingDateTime = "2027-05-31T00:00:00Z"
		res = m.Observe(&l, m.ObserveReferral("pc-5", r, ver("a5", 5)), t0)
		if res.Opp == nil || res.Opp.Data.Fields[sf.FieldCloseDate] != "2027-05-31" || res.Referral != nil {
			t.Fatalf("Microsoft's change must reach the paused Opportunity: %+v", res.Decisions)
		}
		l = *res.Link
		l = *m.Outcome(l, contracts.Outcome{CommandID: res.Opp.ID, LinkID: l.ID, System: contracts.Salesforce, Op: contracts.OpUpdate, Status: contracts.OutcomeWritten}, t0).Link
		// The seller ticks the flag again: exactly what changed in Salesforce since the last sync goes.
		on := mirror(r, "Qualification", map[string]any{sf.FieldAmount: 61000.0, sf.FieldDescription: "paused note"})
		res = m.Observe(&l, m.ObserveOpportunity("sf-on", on, ver("s6", 6)), t0)
		if res.Link == nil || res.Link.Paused {
			t.Fatalf("ticking must resume the link: %+v", res.Link)
		}
		got := patchPaths(res.Referral)
		if len(got) != 2 || got["/details/dealValue"] != 61000.0 || got["/details/notes"] != "paused note" {
			t.Fatalf("resume patch = %v, want the two fields the seller changed while paused", got)
		}
		found := false
		for _, d := range res.Decisions {
			found = found || strings.Contains(d.Detail, "resumed")
		}
		if !found {
			t.Errorf("resuming must be audited: %+v", res.Decisions)
		}
	})
}

// TestHeldDecidedOnce: a held change is audited once and decided again only when something changes; a
// snapshot that changes no mapped field (our own Audit write coming back) is no change (issue 13, defect 3).
func TestHeldDecidedOnce(t *testing.T) {
	m := def()
	cases := []struct {
		name   string
		setup  func(t *testing.T) (contracts.Link, partnercenter.Referral)
		edit   func(r partnercenter.Referral, amount float64) contracts.Opportunity
		reason string
	}{
		{"hold stage", func(t *testing.T) (contracts.Link, partnercenter.Referral) { return linked(t, m) },
			func(r partnercenter.Referral, a float64) contracts.Opportunity {
				return mirror(r, "Prospecting", map[string]any{sf.FieldAmount: a})
			}, "hold stage"},
		{"closed referral", func(t *testing.T) (contracts.Link, partnercenter.Referral) {
			l, r := activeLink(t, m)
			r.Status, r.Substatus = partnercenter.StatusClosed, partnercenter.SubstatusWon
			res := m.Observe(&l, m.ObserveReferral("pc-won", r, ver("a9", 3)), t0)
			l = *res.Link
			if res.Opp != nil {
				l = *m.Outcome(l, contracts.Outcome{CommandID: res.Opp.ID, LinkID: l.ID, System: contracts.Salesforce, Op: contracts.OpUpdate, Status: contracts.OutcomeWritten}, t0).Link
			}
			return l, r
		}, func(r partnercenter.Referral, a float64) contracts.Opportunity {
			return mirror(r, "Closed Won", map[string]any{sf.FieldAmount: a, sf.FieldIsWon: true, sf.FieldIsClosed: true})
		}, "closed"},
		{"paused", func(t *testing.T) (contracts.Link, partnercenter.Referral) { return activeLink(t, m) },
			func(r partnercenter.Referral, a float64) contracts.Opportunity {
				return mirror(r, "Qualification", map[string]any{sf.FieldAmount: a, sf.FieldSyncWithPartnerCenter: false})
			}, "paused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, r := c.setup(t)
			res := m.Observe(&l, m.ObserveOpportunity("sf-1", c.edit(r, 777), ver("h1", 10)), t0)
			if res.Referral != nil || kinds(res.Decisions)[len(res.Decisions)-1] != contracts.DecisionHeld {
				t.Fatalf("first sight of the held change must be held: %v", kinds(res.Decisions))
			}
			if d := res.Decisions[len(res.Decisions)-1]; !strings.Contains(d.Detail, c.reason) {
				t.Errorf("held detail %q does not name %q", d.Detail, c.reason)
			}
			if res.Link.Held == nil || !strings.Contains(res.Link.Held.Reason, c.reason) {
				t.Errorf("link must record what is held: %+v", res.Link.Held)
			}
			status := res.LinkBack
			l = *res.Link
			// The same values again under a new version (our Audit write came back): no new held entry, no write.
			for i, v := range []string{"h2", "h3", "h4"} {
				res = m.Observe(&l, m.ObserveOpportunity("sf-again-"+v, c.edit(r, 777), ver(v, 11+i)), t0)
				if res.Referral != nil || res.Opp != nil || res.LinkBack != nil {
					t.Fatalf("an unchanged held snapshot must write nothing: %+v", res)
				}
				for _, d := range res.Decisions {
					if d.Kind == contracts.DecisionHeld {
						t.Fatalf("held audited again for an unchanged snapshot: %+v", res.Decisions)
					}
				}
				l = *res.Link
			}
			// A real change while held is decided (and audited) again.
			res = m.Observe(&l, m.ObserveOpportunity("sf-5", c.edit(r, 888), ver("h5", 20)), t0)
			if res.Referral != nil || kinds(res.Decisions)[len(res.Decisions)-1] != contracts.DecisionHeld {
				t.Fatalf("a new held change must be held and audited: %v", kinds(res.Decisions))
			}
			if res.LinkBack != nil && status != nil && res.LinkBack.Data.Fields[sf.FieldSyncStatus] == status.Data.Fields[sf.FieldSyncStatus] {
				t.Errorf("the same status must not be written twice")
			}
		})
	}
}

// partnerLink is a link a seller's Opportunity (in stage) started: the referral created, Partner Center's
// answer (Active/Accepted) folded in, and the Opportunity observed again unchanged.
func partnerLink(t *testing.T, m Decider, stage string) (contracts.Link, partnercenter.Referral, contracts.Opportunity) {
	t.Helper()
	o := opp("006P", map[string]any{sf.FieldStageName: stage})
	res := m.Observe(nil, m.ObserveOpportunity("sf-0", o, ver("s0", 0)), t0)
	if res.Referral == nil {
		t.Fatalf("a flagged Opportunity creates a referral: %v", kinds(res.Decisions))
	}
	created := *res.Referral.Data.Create
	created.ID, created.ETag, created.Status, created.Substatus = "r-p", `"p1"`, partnercenter.StatusActive, partnercenter.SubstatusAccepted
	out := m.Outcome(*res.Link, contracts.Outcome{
		CommandID: res.Referral.ID, LinkID: res.Link.ID, System: contracts.PartnerCenter, Op: contracts.OpCreate, Status: contracts.OutcomeWritten,
		Created: true, ReferralID: "r-p", Referral: &created, Version: ver("p1", 1),
	}, t0)
	if out.Opp != nil {
		t.Fatalf("Partner Center accepting the partner's own referral must not change the seller's stage: %v", out.Opp.Data.Fields)
	}
	l := *out.Link
	o.Fields[sf.FieldReferralIdentifier] = "r-p"
	again := m.Observe(&l, m.ObserveOpportunity("sf-1", o, ver("s1", 2)), t0)
	if again.Referral != nil {
		t.Fatalf("the unchanged Opportunity must not patch the referral: %+v", again.Referral.Data.Patch)
	}
	return *again.Link, created, o
}

// TestStageTable proves every row of docs/mapping.md's status/substatus ↔ stage table, both ways and for
// both origins (issue 13, defect 2): a partner-originated Opportunity's stage is the seller's; cosell
// writes StageName only for the documented transitions of Microsoft-originated referrals.
func TestStageTable(t *testing.T) {
	withDecline := def()
	withDecline.Stages.Decline = "Closed Declined"

	t.Run("Microsoft-originated, Partner Center → Salesforce", func(t *testing.T) {
		cases := []struct {
			name, status, substatus string
			m                       Decider
			stage                   string // "" = StageName not written
		}{
			{"accepted in Partner Center", partnercenter.StatusActive, partnercenter.SubstatusAccepted, def(), "Qualification"},
			{"won", partnercenter.StatusClosed, partnercenter.SubstatusWon, def(), "Closed Won"},
			{"lost", partnercenter.StatusClosed, partnercenter.SubstatusLost, def(), "Closed Lost"},
			{"declined, no decline stage", partnercenter.StatusClosed, partnercenter.SubstatusDeclined, def(), "Closed Lost"},
			{"expired, no decline stage", partnercenter.StatusClosed, partnercenter.SubstatusExpired, def(), "Closed Lost"},
			{"declined, decline stage", partnercenter.StatusClosed, partnercenter.SubstatusDeclined, withDecline, "Closed Declined"},
			{"expired, decline stage", partnercenter.StatusClosed, partnercenter.SubstatusExpired, withDecline, "Closed Declined"},
			{"still new", partnercenter.StatusNew, partnercenter.SubstatusPending, def(), ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				l, r := linked(t, c.m)
				r.Status, r.Substatus = c.status, c.substatus
				r.Details.Notes = "touched by Microsoft" // so that "still new" is a real change too
				res := c.m.Observe(&l, c.m.ObserveReferral("pc-2", r, ver("a2", 2)), t0)
				got := ""
				if res.Opp != nil {
					got = text(res.Opp.Data.Fields[sf.FieldStageName])
				}
				if got != c.stage {
					t.Fatalf("StageName written = %q, want %q (%v)", got, c.stage, kinds(res.Decisions))
				}
			})
		}
		t.Run("new referral is created in the hold stage", func(t *testing.T) {
			r := sampleReferral()
			res := def().Observe(nil, def().ObserveReferral("e1", r, ver("a", 0)), t0)
			if res.Opp == nil || res.Opp.Data.Fields[sf.FieldStageName] != "Prospecting" {
				t.Fatalf("create = %+v", res.Opp)
			}
		})
	})

	t.Run("Microsoft-originated, Salesforce → Partner Center", func(t *testing.T) {
		cases := []struct {
			name          string
			m             Decider
			accepted      bool // the referral was accepted before the move
			stage         string
			won, closed   bool
			wantStatus    string // "" = no status patch
			wantSubstatus string
		}{
			{"stays in hold", def(), false, "Prospecting", false, false, "", ""},
			{"hold → active stage accepts", def(), false, "Qualification", false, false, partnercenter.StatusActive, partnercenter.SubstatusAccepted},
			{"hold → any open stage accepts", def(), false, "Needs Analysis", false, false, partnercenter.StatusActive, partnercenter.SubstatusAccepted},
			{"active → another open stage", def(), true, "Needs Analysis", false, false, "", ""},
			{"won", def(), true, "Closed Won", true, true, partnercenter.StatusClosed, partnercenter.SubstatusWon},
			{"lost after acceptance", def(), true, "Closed Lost", false, true, partnercenter.StatusClosed, partnercenter.SubstatusLost},
			{"lost from hold declines", def(), false, "Closed Lost", false, true, partnercenter.StatusClosed, partnercenter.SubstatusDeclined},
			{"decline stage declines", withDecline, false, "Closed Declined", false, true, partnercenter.StatusClosed, partnercenter.SubstatusDeclined},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var l contracts.Link
				var r partnercenter.Referral
				if c.accepted {
					l, r = activeLink(t, c.m)
				} else {
					l, r = linked(t, c.m)
				}
				o := mirror(r, c.stage, map[string]any{sf.FieldIsWon: c.won, sf.FieldIsClosed: c.closed})
				res := c.m.Observe(&l, c.m.ObserveOpportunity("sf-9", o, ver("s9", 9)), t0)
				got := patchPaths(res.Referral)
				if got["/status"] != nilIfEmpty(c.wantStatus) || got["/substatus"] != nilIfEmpty(c.wantSubstatus) {
					t.Fatalf("status patch = %v/%v, want %q/%q (%v)", got["/status"], got["/substatus"], c.wantStatus, c.wantSubstatus, kinds(res.Decisions))
				}
			})
		}
	})

	t.Run("partner-originated, Salesforce → Partner Center", func(t *testing.T) {
		cases := []struct {
			name, from, to string
			won, closed    bool
			wantSubstatus  string // Closed/<this>; "" = no status patch
		}{
			{"created in the hold stage, moved on", "Prospecting", "Qualification", false, false, ""},
			{"open → another open stage", "Qualification", "Needs Analysis", false, false, ""},
			{"open → hold stage", "Qualification", "Prospecting", false, false, ""},
			{"won", "Qualification", "Closed Won", true, true, partnercenter.SubstatusWon},
			{"lost", "Qualification", "Closed Lost", false, true, partnercenter.SubstatusLost},
			{"lost straight from the hold stage", "Prospecting", "Closed Lost", false, true, partnercenter.SubstatusLost},
			{"decline stage reads as lost", "Qualification", "Closed Declined", false, true, partnercenter.SubstatusLost},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				l, _, o := partnerLink(t, withDecline, c.from)
				o.Fields[sf.FieldStageName], o.Fields[sf.FieldIsWon], o.Fields[sf.FieldIsClosed] = c.to, c.won, c.closed
				res := withDecline.Observe(&l, withDecline.ObserveOpportunity("sf-9", o, ver("s9", 9)), t0)
				got := patchPaths(res.Referral)
				want := map[bool]any{true: partnercenter.StatusClosed, false: nil}[c.wantSubstatus != ""]
				if got["/status"] != want || got["/substatus"] != nilIfEmpty(c.wantSubstatus) {
					t.Fatalf("status patch = %v/%v, want Closed/%q (%v)", got["/status"], got["/substatus"], c.wantSubstatus, kinds(res.Decisions))
				}
			})
		}
	})

	t.Run("partner-originated, Partner Center → Salesforce", func(t *testing.T) {
		for _, sub := range []string{partnercenter.SubstatusWon, partnercenter.SubstatusLost, partnercenter.SubstatusDeclined, partnercenter.SubstatusExpired} {
			t.Run("closed "+sub, func(t *testing.T) {
				l, r, _ := partnerLink(t, def(), "Qualification")
				r.Status, r.Substatus, r.ETag = partnercenter.StatusClosed, sub, `"p2"`
				res := def().Observe(&l, def().ObserveReferral("pc-2", r, ver("p2", 5)), t0)
				if res.Opp != nil {
					if _, ok := res.Opp.Data.Fields[sf.FieldStageName]; ok {
						t.Fatalf("the seller's stage must not be written: %v", res.Opp.Data.Fields)
					}
				}
				if res.LinkBack == nil || !strings.HasPrefix(text(res.LinkBack.Data.Fields[sf.FieldSyncStatus]), "⏸") {
					t.Fatalf("a closed referral under an open Opportunity is out of step, the status must say so: %+v", res.LinkBack)
				}
				if k := kinds(res.Decisions); !slices.Contains(k, contracts.DecisionHeld) {
					t.Fatalf("the closed referral must be audited as held: %v", k)
				}
			})
		}
	})
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// TestVisibilityAndCRMIdentifier: referral visibility travels both ways but, once visible, an untick in
// Salesforce is refused with the reason (and the tick written back); Microsoft's CRM id reaches the
// Opportunity once Microsoft accepts and a seller's edit of it never reaches Partner Center (issue 13).
func TestVisibilityAndCRMIdentifier(t *testing.T) {
	m := def()
	l, r := activeLink(t, m)
	// The seller makes the referral visible to Microsoft sellers.
	o := mirror(r, "Qualification", map[string]any{sf.FieldReferralVisibility: true})
	res := m.Observe(&l, m.ObserveOpportunity("sf-vis", o, ver("v1", 5)), t0)
	if got := patchPaths(res.Referral); len(got) != 1 || got["/consent/consentToShareReferralWithMicrosoftSellers"] != true {
		t.Fatalf("patch = %v, want visibility only", got)
	}
	l = *res.Link
	l = *m.Outcome(l, contracts.Outcome{CommandID: res.Referral.ID, LinkID: l.ID, System: contracts.PartnerCenter, Op: contracts.OpUpdate, Status: contracts.OutcomeWritten}, t0).Link
	visible := true
	r.Consent.ConsentToShareReferralWithMicrosoftSellers = &visible
	// Microsoft accepts the co-sell: its CRM id reaches the Opportunity.
	r.TrackingInfo = &partnercenter.TrackingInfo{MicrosoftMsxID: "7-MSX0001"}
	res = m.Observe(&l, m.ObserveReferral("pc-msx", r, ver("a6", 6)), t0)
	if res.Opp == nil || res.Opp.Data.Fields[sf.FieldMicrosoftCRMIdentifier] != "7-MSX0001" {
		t.Fatalf("the CRM id must reach the Opportunity: %+v", res.Opp)
	}
	if _, ok := res.Opp.Data.Fields[sf.FieldReferralVisibility]; ok {
		t.Errorf("visibility is already agreed, must not be written: %v", res.Opp.Data.Fields)
	}
	l = *res.Link
	l = *m.Outcome(l, contracts.Outcome{CommandID: res.Opp.ID, LinkID: l.ID, System: contracts.Salesforce, Op: contracts.OpUpdate, Status: contracts.OutcomeWritten}, t0).Link
	// A seller types over the CRM id: read-only, nothing goes to Partner Center.
	o = mirror(r, "Qualification", map[string]any{sf.FieldReferralVisibility: true, sf.FieldMicrosoftCRMIdentifier: "mine"})
	res = m.Observe(&l, m.ObserveOpportunity("sf-crm", o, ver("v2", 7)), t0)
	if res.Referral != nil {
		t.Fatalf("a seller's CRM id must not reach Partner Center: %v", patchPaths(res.Referral))
	}
	l = *res.Link
	// The seller unticks visibility: refused, with the reason, and the tick written back.
	o = mirror(r, "Qualification", map[string]any{sf.FieldReferralVisibility: false, sf.FieldMicrosoftCRMIdentifier: "mine"})
	res = m.Observe(&l, m.ObserveOpportunity("sf-hide", o, ver("v3", 8)), t0)
	if res.Referral != nil {
		t.Fatalf("visibility must never be turned off in Partner Center: %v", patchPaths(res.Referral))
	}
	var refused *contracts.Decision
	for i, d := range res.Decisions {
		if d.Kind == contracts.DecisionFailed {
			refused = &res.Decisions[i]
		}
	}
	if refused == nil || !strings.Contains(refused.Detail, "never") || !slices.Contains(refused.Fields, "visibility") {
		t.Fatalf("the untick must be refused with a reason: %+v", res.Decisions)
	}
	if res.Opp == nil || res.Opp.Data.Fields[sf.FieldReferralVisibility] != true {
		t.Fatalf("the tick must be written back: %+v", res.Opp)
	}
}

// TestSyncMarkAndFailedHint: the sync status says ✖ with the reason and the command that shows the
// failure, and the Opportunity Name carries ✔ / ✖ (nameMark, on by default as in Microsoft's connector),
// never ✔ while something is held; the mark is not part of the deal's name when it is read back.
func TestSyncMarkAndFailedHint(t *testing.T) {
	failed := func(m Decider, l contracts.Link, msg string) Result {
		return m.Outcome(l, contracts.Outcome{CommandID: "c-fail", System: contracts.PartnerCenter, Op: contracts.OpUpdate,
			Status: contracts.OutcomeFailed, Error: &contracts.Failure{Code: "invalidRequest", Message: msg, Permanent: true}}, t0)
	}
	off := def()
	off.NameMark = false
	for _, tc := range []struct {
		name       string
		m          Decider
		run        func(m Decider) (Result, contracts.Link)
		wantStatus string // prefix of the sync status written
		wantName   any    // the Name written with it (nil: not written)
	}{
		{"create from a referral marks ✔", def(), func(m Decider) (Result, contracts.Link) {
			r := sampleReferral()
			res := m.Observe(nil, m.ObserveReferral("e1", r, ver("a", 0)), t0)
			res.LinkBack = res.Opp
			return res, contracts.Link{}
		}, "✔", "Contoso supply chain ✔"},
		{"create without the setting leaves the name", off, func(m Decider) (Result, contracts.Link) {
			r := sampleReferral()
			res := m.Observe(nil, m.ObserveReferral("e1", r, ver("a", 0)), t0)
			res.LinkBack = res.Opp
			return res, contracts.Link{}
		}, "✔", "Contoso supply chain"},
		{"failure marks ✖ with the command", def(), func(m Decider) (Result, contracts.Link) {
			l, _ := activeLink(t, m)
			return failed(m, l, "deal value must not be negative"), l
		}, "✖ invalidRequest: deal value must not be negative (cosell links get 006X)", "Contoso supply chain ✖"},
		{"failure without the setting: status only", off, func(m Decider) (Result, contracts.Link) {
			l, _ := activeLink(t, m)
			return failed(m, l, "bad"), l
		}, "✖ invalidRequest: bad (cosell links get 006X)", nil},
		{"a long reason is cut, the command kept", def(), func(m Decider) (Result, contracts.Link) {
			l, _ := activeLink(t, m)
			return failed(m, l, strings.Repeat("x", 400)), l
		}, "✖ invalidRequest: xxx", "Contoso supply chain ✖"},
		{"held drops the mark", def(), func(m Decider) (Result, contracts.Link) {
			l, r := activeLink(t, m)
			o := mirror(r, "Qualification", map[string]any{sf.FieldSyncWithPartnerCenter: false, sf.FieldName: r.Name + " ✔"})
			return m.Observe(&l, m.ObserveOpportunity("sf-off", o, ver("s2", 3)), t0), l
		}, "⏸ paused", "Contoso supply chain"},
		{"a renamed referral keeps the mark", def(), func(m Decider) (Result, contracts.Link) {
			l, r := activeLink(t, m)
			r.Name = "Contoso supply chain, phase 2"
			res := m.Observe(&l, m.ObserveReferral("pc-rename", r, ver("a3", 4)), t0)
			res.LinkBack = res.Opp
			return res, l
		}, "", "Contoso supply chain, phase 2 ✔"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := tc.run(tc.m)
			if res.LinkBack == nil {
				t.Fatalf("nothing written to the Opportunity: %+v", res.Decisions)
			}
			f := res.LinkBack.Data.Fields
			st, _ := f[sf.FieldSyncStatus].(string)
			if !strings.HasPrefix(st, tc.wantStatus) {
				t.Errorf("sync status = %q, want %q…", st, tc.wantStatus)
			}
			if strings.HasPrefix(st, "✖") && (!strings.HasSuffix(st, " (cosell links get 006X)") || len([]rune(st)) > 255) {
				t.Errorf("a failure must end with the command that shows it and fit 255 characters: %q (%d)", st, len([]rune(st)))
			}
			if got := f[sf.FieldName]; got != tc.wantName {
				t.Errorf("Name = %v, want %v", got, tc.wantName)
			}
		})
	}

	t.Run("the mark is not the deal's name", func(t *testing.T) {
		m := def()
		l, r := activeLink(t, m)
		for _, name := range []string{r.Name + " ✔", r.Name + " ✖"} {
			res := m.Observe(&l, m.ObserveOpportunity("sf-"+name, mirror(r, "Qualification", map[string]any{sf.FieldName: name}), ver(name, 5)), t0)
			if res.Referral != nil || res.Opp != nil || (res.LinkBack != nil && res.LinkBack.Data.Fields[sf.FieldName] != nil) {
				t.Errorf("%q read as a new name: %+v", name, res.Decisions)
			}
		}
	})
}

// TestReplayedOutcomeChangesNothing (issue 13, defect 6): an outcome folded once, handled again (the
// outcomes stream replayed past the duplicate window), decides nothing: no link change, no write-back, no
// decision; a new outcome is still folded, and one written long before what the link had to forget is
// known as folded too.
func TestReplayedOutcomeChangesNothing(t *testing.T) {
	m := def()
	l, _ := activeLink(t, m)
	refused := contracts.Outcome{CommandID: "cmd-refused", LinkID: l.ID, System: contracts.PartnerCenter, Op: contracts.OpUpdate,
		Status: contracts.OutcomeFailed, Error: &contracts.Failure{Code: "invalidRequest", Message: "bad"}, At: t0}
	first := m.Outcome(l, refused, t0)
	if first.LinkBack == nil || first.Link.Status == StatusInStep {
		t.Fatalf("the first fold must show ✖: %+v", first.LinkBack)
	}
	l = *first.Link
	fixed := contracts.Outcome{CommandID: "cmd-fixed", LinkID: l.ID, System: contracts.PartnerCenter, Op: contracts.OpUpdate,
		Status: contracts.OutcomeWritten, Purpose: "sync", At: t0.Add(time.Second)}
	second := m.Outcome(l, fixed, t0)
	l = *second.Link
	if l.LastError != "" || l.Status != StatusInStep || second.LinkBack == nil {
		t.Fatalf("a successful write clears the error and shows ✔: %q %q", l.LastError, l.Status)
	}
	// The partner-originated create and its link-back.
	pl := contracts.Link{ID: "sf-006P", Origin: contracts.Salesforce, OpportunityID: "006P", State: contracts.LinkCreatingReferral}
	pl.PC.Pending = "cmd-create"
	created := contracts.Outcome{CommandID: "cmd-create", LinkID: pl.ID, System: contracts.PartnerCenter, Op: contracts.OpCreate,
		Status: contracts.OutcomeWritten, Created: true, ReferralID: "r-new", At: t0}
	made := m.Outcome(pl, created, t0)
	if made.LinkBack == nil || made.Link.ReferralID != "r-new" {
		t.Fatalf("the create's outcome writes the referral id back: %+v", made)
	}
	pl = *made.Link
	for _, tc := range []struct {
		name string
		link contracts.Link
		out  contracts.Outcome
	}{
		{"a failure long since cleared", l, refused},
		{"the success that cleared it", l, fixed},
		{"a referral create (its link-back)", pl, created},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := m.Outcome(tc.link, tc.out, t0.Add(time.Hour))
			if res.Link != nil || res.LinkBack != nil || res.Opp != nil || res.Referral != nil || len(res.Decisions) != 0 {
				t.Errorf("a replayed outcome must change nothing: link %v, write-back %v, decisions %v", res.Link != nil, res.LinkBack, kinds(res.Decisions))
			}
		})
	}
	t.Run("a new outcome is folded", func(t *testing.T) {
		res := m.Outcome(l, contracts.Outcome{CommandID: "cmd-new", LinkID: l.ID, System: contracts.Salesforce, Op: contracts.OpUpdate,
			Status: contracts.OutcomeWritten, Purpose: "status", At: t0.Add(2 * time.Second)}, t0)
		if res.Link == nil || len(res.Decisions) != 1 || res.Decisions[0].Kind != contracts.DecisionWritten {
			t.Errorf("want it folded and audited: %+v", res.Decisions)
		}
	})
	t.Run("older than what the link forgot", func(t *testing.T) {
		fl := l
		for i := range 2 * foldKeep {
			fl = *m.Outcome(fl, contracts.Outcome{CommandID: fmt.Sprintf("audit-%d", i), LinkID: l.ID, System: contracts.Salesforce,
				Op: contracts.OpUpdate, Status: contracts.OutcomeWritten, Purpose: "audit", At: t0.Add(time.Duration(i) * time.Minute)}, t0).Link
		}
		if len(fl.Folded.IDs) != foldKeep {
			t.Fatalf("%d ids kept, want %d", len(fl.Folded.IDs), foldKeep)
		}
		if res := m.Outcome(fl, refused, t0); res.Link != nil || len(res.Decisions) != 0 {
			t.Errorf("an outcome written long before the forgotten ones must count as folded: %v", kinds(res.Decisions))
		}
		if res := m.Outcome(fl, contracts.Outcome{CommandID: "late", LinkID: l.ID, System: contracts.Salesforce, Op: contracts.OpUpdate,
			Status: contracts.OutcomeWritten, Purpose: "audit", At: t0.Add(time.Duration(2*foldKeep) * time.Minute)}, t0); res.Link == nil {
			t.Error("a new outcome after many must still be folded")
		}
	})
}

// TestNoAccountNoReferral (issue 13, account rule): a flagged Opportunity without a customer Account is not
// shared with Microsoft under a customer named after the deal: the create is refused with the reason on
// the Opportunity (✖ and the command that shows it) and on the timeline; our own status write coming back
// is no change; another edit without an Account is refused again without a new write; setting the Account
// creates the referral under the Account's name.
func TestNoAccountNoReferral(t *testing.T) {
	m := def()
	noAccount := func(over map[string]any) contracts.Opportunity {
		o := opp("006A", over)
		delete(o.Fields, "Account.Name")
		delete(o.Fields, "Account.BillingCountry")
		return o
	}
	res := m.Observe(nil, m.ObserveOpportunity("e1", noAccount(nil), ver("1", 0)), t0)
	if res.Referral != nil {
		t.Fatalf("a referral was created without a customer: %+v", res.Referral.Data.Create.CustomerProfile)
	}
	if res.Link == nil || res.Link.State != contracts.LinkFailed || len(res.Decisions) != 1 || res.Decisions[0].Kind != contracts.DecisionFailed ||
		!strings.Contains(res.Decisions[0].Detail, "no customer Account") {
		t.Fatalf("want a failed link and a failed decision with the reason: %+v %+v", res.Link, res.Decisions)
	}
	st, _ := res.LinkBack.Data.Fields[sf.FieldSyncStatus].(string)
	if !strings.HasPrefix(st, "✖ refused: the Opportunity has no customer Account") || !strings.HasSuffix(st, "(cosell links get 006A)") {
		t.Fatalf("sync status = %q", st)
	}
	l := *res.Link

	// Our ✖ write comes back: nothing new.
	echo := m.Observe(&l, m.ObserveOpportunity("e2", noAccount(map[string]any{sf.FieldSyncStatus: st}), ver("2", 1)), t0)
	if echo.Referral != nil || echo.LinkBack != nil || kinds(echo.Decisions)[0] != contracts.DecisionNoChange {
		t.Fatalf("our own status write must be no change: %+v", echo.Decisions)
	}
	l = *echo.Link

	// Edited, still without an Account: refused again, no second status write.
	again := m.Observe(&l, m.ObserveOpportunity("e3", noAccount(map[string]any{sf.FieldAmount: 1300.0}), ver("3", 2)), t0)
	if again.Referral != nil || again.LinkBack != nil || kinds(again.Decisions)[0] != contracts.DecisionFailed {
		t.Fatalf("want refused again without a new write: %+v %+v", again.LinkBack, again.Decisions)
	}
	l = *again.Link

	// The seller sets the Account: the referral is created under its name.
	fixed := m.Observe(&l, m.ObserveOpportunity("e4", opp("006A", map[string]any{sf.FieldAmount: 1300.0}), ver("4", 3)), t0)
	if fixed.Referral == nil || fixed.Referral.Data.Create.CustomerProfile.Name != "Fabrikam" {
		t.Fatalf("setting the Account must create the referral under it: %+v", fixed.Decisions)
	}
}

// TestCoSellNeedsACustomerContact (issue 13, customer contacts): the Opportunity's contact roles are the
// referral customer's contacts; a co-sell referral (How can Microsoft help set) without one is refused with
// the reason, one without help needs none, and adding a contact creates the referral with it.
func TestCoSellNeedsACustomerContact(t *testing.T) {
	m := def()
	coSell := func(contacts ...contracts.ContactRole) contracts.Opportunity {
		o := opp("006C", map[string]any{sf.FieldHowCanMicrosoftHelp: "Quotes or licensing"})
		o.Contacts = contacts
		return o
	}
	res := m.Observe(nil, m.ObserveOpportunity("e1", coSell(), ver("1", 0)), t0)
	if res.Referral != nil || len(res.Decisions) != 1 || res.Decisions[0].Kind != contracts.DecisionFailed ||
		!strings.Contains(res.Decisions[0].Detail, "needs at least one customer contact") {
		t.Fatalf("a co-sell referral without a contact must be refused: %+v", res.Decisions)
	}
	if st, _ := res.LinkBack.Data.Fields[sf.FieldSyncStatus].(string); !strings.Contains(st, "customer contact") || !strings.HasSuffix(st, "(cosell links get 006C)") {
		t.Errorf("sync status = %q", st)
	}
	noHelp := m.Observe(nil, m.ObserveOpportunity("e1", opp("006D", nil), ver("1", 0)), t0)
	if noHelp.Referral == nil {
		t.Fatalf("a referral asking no help needs no contact: %+v", noHelp.Decisions)
	}
	l := *res.Link
	sue := contracts.ContactRole{ContactID: "003S", Role: "Decision Maker", FirstName: "Sue", LastName: "Smith", Email: "sue@fabrikam.example", Phone: "123"}
	fixed := m.Observe(&l, m.ObserveOpportunity("e2", coSell(sue), ver("2", 1)), t0)
	if fixed.Referral == nil {
		t.Fatalf("adding a contact must create the referral: %+v", fixed.Decisions)
	}
	team := fixed.Referral.Data.Create.CustomerProfile.Team
	if len(team) != 1 || team[0].Email != "sue@fabrikam.example" || team[0].FirstName != "Sue" || team[0].PhoneNumber != "123" {
		t.Errorf("customer contacts sent = %+v", team)
	}
}
