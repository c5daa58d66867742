package decide

import (
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/mapping"
)

func leadReferral(typ, qualification string) pc.Referral {
	v := 1000.0
	return pc.Referral{ID: "ref-1", Name: "Deal", Status: pc.StatusNew, Substatus: pc.SubstatusPending, Type: typ,
		Direction: pc.DirectionIncoming, Qualification: qualification,
		CustomerProfile: &pc.CustomerProfile{Name: "Contoso", Address: &pc.Address{PostalCode: "98052", Country: "US"},
			Team: []pc.Member{{FirstName: "Sue", LastName: "Smith", Email: "sue@contoso.example"}}},
		Details: &pc.Details{DealValue: &v, Currency: "USD", ClosingDateTime: "2027-01-31T00:00:00Z", Notes: "pilot"}}
}

// TestLeadRows: the coSellOnly rows of docs/mapping.md ("Leads"): which referral comes in as what.
func TestLeadRows(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name         string
		coSellOnly   bool
		typ, qual    string
		wantObject   string
		wantLinkLead bool
	}{
		{"co-sell only on: a lead is an Opportunity", true, pc.TypeIndependent, pc.QualificationMarketingQualified, "", false},
		{"co-sell only off: a marketing lead is a Lead", false, pc.TypeIndependent, pc.QualificationMarketingQualified, sf.ObjectLead, true},
		{"co-sell only off: a customer's direct lead is a Lead", false, pc.TypeIndependent, pc.QualificationDirect, sf.ObjectLead, true},
		{"co-sell only off: a co-sell referral is an Opportunity", false, pc.TypeShared, pc.QualificationSalesQualified, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := def()
			m.CoSellOnly = c.coSellOnly
			r := leadReferral(c.typ, c.qual)
			res := m.Observe(nil, m.ObserveReferral("pc/ref-1/1", r, contracts.Version{Tag: "1", At: now}), now)
			if res.Opp == nil || res.Link == nil {
				t.Fatalf("no create: %+v", res)
			}
			if res.Opp.Data.Object != c.wantObject || (res.Link.SFObject == sf.ObjectLead) != c.wantLinkLead {
				t.Fatalf("object %q, link %q", res.Opp.Data.Object, res.Link.SFObject)
			}
			f := res.Opp.Data.Fields
			if c.wantObject != sf.ObjectLead {
				if f[sf.FieldStageName] == nil {
					t.Errorf("opportunity create without a stage: %v", f)
				}
				return
			}
			for k, v := range map[string]any{sf.LeadCompany: "Contoso", sf.LeadLastName: "Smith", sf.LeadFirstName: "Sue",
				sf.LeadEmail: "sue@contoso.example", sf.LeadStatus: sf.LeadStatusOpen, sf.LeadPostalCode: "98052",
				sf.LeadDescription: "pilot", sf.FieldReferralIdentifier: "ref-1"} {
				if f[k] != v {
					t.Errorf("lead %s = %v, want %v", k, f[k], v)
				}
			}
			for _, k := range []string{sf.FieldName, sf.FieldAmount, sf.FieldCloseDate, sf.FieldStageName} {
				if _, ok := f[k]; ok {
					t.Errorf("the Lead create carries Opportunity field %s", k)
				}
			}
			if res.Opp.Data.Account != nil || res.Opp.Data.SetContacts || res.Opp.Data.SetSolutions {
				t.Errorf("a Lead create with Account/contacts/solutions: %+v", res.Opp.Data)
			}
		})
	}
}

// TestLeadStatusRows: Lead Status ↔ referral status, both ways (docs/mapping.md, "Leads").
func TestLeadStatusRows(t *testing.T) {
	for _, c := range []struct{ status, lead string }{
		{mapping.StatusNew, sf.LeadStatusOpen}, {mapping.StatusActive, sf.LeadStatusWorking},
		{mapping.StatusLost, sf.LeadStatusClosed}, {mapping.StatusDeclined, sf.LeadStatusClosed}, {mapping.StatusWon, ""},
	} {
		if got := mapping.LeadStatusFor(c.status); got != c.lead {
			t.Errorf("%s → %q, want %q", c.status, got, c.lead)
		}
	}
	m := def()
	for _, c := range []struct{ lead, status string }{
		{sf.LeadStatusOpen, mapping.StatusNew}, {sf.LeadStatusWorking, mapping.StatusActive}, {sf.LeadStatusClosed, mapping.StatusLost},
	} {
		v := m.FromOpportunity(m.LeadAsOpportunity(contracts.Opportunity{ID: "00Q1", Object: sf.ObjectLead,
			Fields: map[string]any{sf.LeadStatus: c.lead, sf.LeadLastName: "Smith", sf.LeadCompany: "Contoso"}}))
		if v[mapping.FieldStatus] != c.status {
			t.Errorf("Lead %q reads as %v, want %s", c.lead, v[mapping.FieldStatus], c.status)
		}
	}
}

// linkedLead is a lead referral m (co-sell only off) created as a Lead, its link as the Lead's create left
// it (linked to 00Q000000000001), and that Lead's snapshot.
func linkedLead(m Decider, now time.Time) (pc.Referral, contracts.Link, contracts.Opportunity) {
	r := leadReferral(pc.TypeIndependent, pc.QualificationMarketingQualified)
	res := m.Observe(nil, m.ObserveReferral("pc/ref-1/1", r, contracts.Version{Tag: "1", At: now}), now)
	l := *res.Link
	l.OpportunityID, l.State, l.SF.Pending = "00Q000000000001", contracts.LinkLinked, ""
	lead := contracts.Opportunity{ID: l.OpportunityID, Object: sf.ObjectLead, Fields: map[string]any{
		sf.FieldID: l.OpportunityID, sf.LeadCompany: "Contoso", sf.LeadLastName: "Smith", sf.LeadFirstName: "Sue",
		sf.LeadEmail: "sue@contoso.example", sf.LeadPostalCode: "98052", sf.LeadCountry: "US", sf.LeadStatus: sf.LeadStatusOpen,
		sf.LeadDescription: "pilot", sf.FieldReferralIdentifier: "ref-1", sf.FieldSyncWithPartnerCenter: true}}
	return r, l, lead
}

// TestLeadConversionMovesTheLink: a converted Lead's snapshot moves the link to the Opportunity (one
// update carrying the referral id, the flag and the synced fields; no referral command), and the Lead's
// later snapshots are ignored; a Lead's snapshot keeps the agreed values of fields a Lead does not carry;
// a Lead without a link starts nothing.
func TestLeadConversionMovesTheLink(t *testing.T) {
	now := time.Now()
	m := def()
	m.CoSellOnly = false
	_, l, lead := linkedLead(m, now)
	obs := m.ObserveOpportunity("sf/lead/2", lead, contracts.Version{Tag: "2", At: now.Add(time.Second)})
	edit := m.Observe(&l, obs, now)
	if edit.Referral != nil {
		for _, op := range edit.Referral.Data.Patch {
			if op.Path == "/details/dealValue" || op.Path == "/name" || op.Path == "/details/closingDateTime" {
				t.Errorf("a Lead's snapshot clears %s on the referral", op.Path)
			}
		}
	}
	if edit.Link != nil {
		l = *edit.Link
	}

	converted := lead
	converted.ConvertedOpportunityID = "006000000000009"
	res := m.Observe(&l, m.ObserveOpportunity("sf/lead/3", converted, contracts.Version{Tag: "3", At: now.Add(2 * time.Second)}), now)
	if res.Link == nil || res.Link.OpportunityID != "006000000000009" || res.Link.SFObject != "" {
		t.Fatalf("link after conversion: %+v", res.Link)
	}
	if res.NewIndexes[contracts.Salesforce] != "006000000000009" || res.Referral != nil {
		t.Errorf("indexes %v, referral command %v", res.NewIndexes, res.Referral)
	}
	if res.Opp == nil || res.Opp.Data.Object != "" || res.Opp.Data.OpportunityID != "006000000000009" ||
		res.Opp.Data.Fields[sf.FieldReferralIdentifier] != "ref-1" || res.Opp.Data.Fields[sf.FieldSyncWithPartnerCenter] != true ||
		res.Opp.Data.Fields[sf.FieldAmount] == nil {
		t.Fatalf("update of the converted Opportunity: %+v", res.Opp)
	}
	if len(res.Decisions) != 1 || res.Decisions[0].Kind != contracts.DecisionLinked {
		t.Errorf("decisions: %+v", res.Decisions)
	}
	moved := *res.Link
	again := m.Observe(&moved, m.ObserveOpportunity("sf/lead/4", converted, contracts.Version{Tag: "4", At: now.Add(3 * time.Second)}), now)
	if again.Link != nil || again.Opp != nil || again.Referral != nil || len(again.Decisions) != 1 || again.Decisions[0].Kind != contracts.DecisionIgnored {
		t.Errorf("the converted Lead seen again: %+v", again)
	}
	alone := m.Observe(nil, m.ObserveOpportunity("sf/lead/5", lead, contracts.Version{Tag: "5", At: now}), now)
	if alone.Link != nil || alone.Referral != nil {
		t.Errorf("a Lead without a link started %+v", alone)
	}
}

// TestLeadDeclineAndExpiry: a linked Lead whose referral Microsoft declines, lets expire or closes as lost
// is closed as "Closed - Not Converted", as an Opportunity is moved to its closed stage; a won referral
// leaves the Lead's status to the seller (docs/mapping.md, "Leads").
func TestLeadDeclineAndExpiry(t *testing.T) {
	for _, c := range []struct {
		name, substatus, want string // want "" = Lead Status not written
	}{
		{"declined", pc.SubstatusDeclined, sf.LeadStatusClosed},
		{"expired", pc.SubstatusExpired, sf.LeadStatusClosed},
		{"lost", pc.SubstatusLost, sf.LeadStatusClosed},
		{"won", pc.SubstatusWon, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := time.Now()
			m := def()
			m.CoSellOnly = false
			r, l, lead := linkedLead(m, now)
			if seen := m.Observe(&l, m.ObserveOpportunity("sf/lead/2", lead, contracts.Version{Tag: "2", At: now.Add(time.Second)}), now); seen.Link != nil {
				l = *seen.Link
			}
			r.Status, r.Substatus = pc.StatusClosed, c.substatus
			closed := m.Observe(&l, m.ObserveReferral("pc/ref-1/3", r, contracts.Version{Tag: "3", At: now.Add(2 * time.Second)}), now)
			got := ""
			if closed.Opp != nil {
				if closed.Opp.Data.Object != sf.ObjectLead {
					t.Fatalf("the command is for %q, not the Lead: %+v", closed.Opp.Data.Object, closed.Opp.Data)
				}
				got = text(closed.Opp.Data.Fields[sf.LeadStatus])
				if _, ok := closed.Opp.Data.Fields[sf.FieldStageName]; ok {
					t.Errorf("a Lead update carries StageName: %v", closed.Opp.Data.Fields)
				}
			}
			if got != c.want {
				t.Fatalf("Lead Status written = %q, want %q (%v)", got, c.want, kinds(closed.Decisions))
			}
		})
	}
}
