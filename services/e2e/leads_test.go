package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// TestLeadReferralBecomesLeadAndFollowsConversion: with coSellOnly off (COSELL_COSELL_ONLY=false) a lead
// referral from Microsoft's marketing comes in as a Salesforce Lead, not an Opportunity; a seller's edit of
// the Lead reaches Partner Center; converting the Lead (the emulator's convertLead) moves the link to the
// converted Opportunity, which gets the referral's id and flag, with exactly one referral and one
// Opportunity for it; an edit of that Opportunity then reaches the same referral.
func TestLeadReferralBecomesLeadAndFollowsConversion(t *testing.T) {
	leadReferralFlow(t, nil)
}

// TestLeadReferralOnChangeDataCapture is the same with sf-ingest on change events and its backstop poll an
// hour away: the Lead's edit and its conversion reach Partner Center on LeadChangeEvents alone.
func TestLeadReferralOnChangeDataCapture(t *testing.T) {
	leadReferralFlow(t, map[string]string{"COSELL_SF_CDC": "on", "COSELL_SF_BACKSTOP_INTERVAL": "1h"})
}

func leadReferralFlow(t *testing.T, vars map[string]string) {
	s := start(t, func(o *stack.Options) {
		if o.Vars == nil {
			o.Vars = map[string]string{}
		}
		o.Vars["COSELL_COSELL_ONLY"] = "false"
		for k, v := range vars {
			o.Vars[k] = v
		}
	})
	in := stacktest.SellerReferral("Tailspin web shop", 22000)
	in.CustomerProfile.Team = []pc.Member{{FirstName: "Sue", LastName: "Smith", Email: "sue@tailspin.example", PhoneNumber: "4255550100"}}
	r, err := s.PC.MarketingLead(in)
	if err != nil {
		t.Fatal(err)
	}
	var lead map[string]any
	testkit.Eventually(t, 20*time.Second, "a Lead for the lead referral", func() (bool, string) {
		var leads []map[string]any
		for _, l := range s.SF.All(sf.ObjectLead) {
			if l[sf.FieldReferralIdentifier] == r.ID {
				leads = append(leads, l)
			}
		}
		if len(leads) != 1 {
			return false, fmt.Sprintf("%d leads", len(leads))
		}
		lead = leads[0]
		return true, ""
	})
	for k, v := range map[string]any{sf.LeadCompany: "Tailspin web shop Customer", sf.LeadLastName: "Smith", sf.LeadFirstName: "Sue",
		sf.LeadEmail: "sue@tailspin.example", sf.LeadStatus: sf.LeadStatusOpen, sf.LeadPostalCode: "98052",
		sf.LeadDescription: "Wants a pilot", sf.FieldSyncWithPartnerCenter: true} {
		if lead[k] != v {
			t.Errorf("lead %s = %v, want %v", k, lead[k], v)
		}
	}
	if n := len(stacktest.OpportunitiesFor(s, r.ID)); n != 0 {
		t.Fatalf("%d opportunities for a lead referral with coSellOnly off", n)
	}
	leadID := fmt.Sprint(lead[sf.FieldID])

	// A seller's edit of the Lead reaches the referral: working the Lead accepts the referral (a Lead Open -
	// Not Contacted is in the hold stage, whose changes wait as an Opportunity's do).
	if err := s.SF.Update(sf.ObjectLead, leadID, map[string]any{sf.LeadStatus: sf.LeadStatusWorking, sf.LeadDescription: "Pilot in March"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the Lead's notes on the referral", func() (bool, string) {
		got, err := s.PC.Get(r.ID)
		if err != nil || got.Details == nil {
			return false, fmt.Sprint(err)
		}
		return got.Details.Notes == "Pilot in March" && got.Status == pc.StatusActive && got.Substatus == pc.SubstatusAccepted,
			got.Details.Notes + " " + got.Status + "/" + got.Substatus
	})

	// Converting the Lead carries the link to its Opportunity.
	resp, err := http.Post(s.SFURL+"/_emulator/leads/"+leadID+"/convert", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("convert: %s", resp.Status)
	}
	converted, _ := s.SF.Get(sf.ObjectLead, leadID)
	oppID := fmt.Sprint(converted[sf.LeadConvertedOpportunityID])
	testkit.Eventually(t, 20*time.Second, "the converted Opportunity linked to the referral", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldReferralIdentifier] == r.ID && o[sf.FieldSyncWithPartnerCenter] == true,
			fmt.Sprintf("%v %v", o[sf.FieldReferralIdentifier], o[sf.FieldSyncWithPartnerCenter])
	})
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldAmount: 31000.0}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the Opportunity's amount on the referral", func() (bool, string) {
		got, err := s.PC.Get(r.ID)
		if err != nil || got.Details == nil || got.Details.DealValue == nil {
			return false, fmt.Sprint(err)
		}
		return *got.Details.DealValue == 31000, fmt.Sprint(*got.Details.DealValue)
	})
	if vars["COSELL_SF_CDC"] == "on" { // no poll to count: every consumer caught up
		testkit.Eventually(t, 20*time.Second, "every consumer caught up", func() (bool, string) { return s.CaughtUp(t.Context()) })
	} else {
		stacktest.Quiet(t, s)
	}
	if n := len(stacktest.OpportunitiesFor(s, r.ID)); n != 1 {
		t.Errorf("%d opportunities for the referral after conversion", n)
	}
	if n := len(s.PC.Referrals()); n != 1 {
		t.Errorf("%d referrals after the conversion, want the one", n)
	}
}
