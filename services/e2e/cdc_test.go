package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// TestChangeDataCaptureCarriesSellerChanges runs the whole system with sf-ingest on the emulator's
// Pub/Sub API and its backstop poll an hour away, so only change events can carry a seller's create,
// update, a child record, a delete and an undelete to Partner Center.
func TestChangeDataCaptureCarriesSellerChanges(t *testing.T) {
	s := start(t, func(o *stack.Options) {
		o.Vars["COSELL_SF_CDC"] = "on"
		o.Vars["COSELL_SF_BACKSTOP_INTERVAL"] = "1h"
	})
	// On start sf-ingest catches up by REST, then follows from LATEST: wait until its stream is open.
	testkit.Eventually(t, 20*time.Second, "the Pub/Sub subscription", func() (bool, string) {
		n := s.SF.Counts()["pubsub.subscribe"]
		return n > 0, fmt.Sprintf("%d subscriptions", n)
	})
	oppID := newOpportunity(t, s, "Contoso realtime", 31000)
	testkit.Eventually(t, 20*time.Second, "referral created from the change event", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		return len(refs) == 1, fmt.Sprintf("%d referrals", len(refs))
	})
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{"Amount": 32500}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the seller's new amount in Partner Center", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		if len(refs) != 1 || refs[0].Details == nil || refs[0].Details.DealValue == nil {
			return false, fmt.Sprintf("%d referrals", len(refs))
		}
		return *refs[0].Details.DealValue == 32500, fmt.Sprintf("dealValue %v", *refs[0].Details.DealValue)
	})
	// A child record: a Microsoft Solution added to the Opportunity.
	if _, err := s.SF.Insert(sf.ObjectMicrosoftSolution, map[string]any{"Opportunity__c": oppID, "Solution_Id__c": "SOL-CDC-1", "Name": "Azure landing zone"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the new Microsoft Solution in Partner Center", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		if len(refs) != 1 || refs[0].Details == nil || refs[0].Details.Requirements == nil {
			return false, fmt.Sprintf("%d referrals, no requirements", len(refs))
		}
		var ids []string
		for _, sol := range refs[0].Details.Requirements.Solutions {
			ids = append(ids, sol.ID)
		}
		return len(ids) == 1 && ids[0] == "SOL-CDC-1", fmt.Sprintf("solutions %v", ids)
	})
	// The other child records: a team member and a contact role (the customer's contact) reach the
	// referral on their change events. (The Account's fields go to Partner Center on create only.)
	user, err := s.SF.Insert("User", map[string]any{"FirstName": "Grace", "LastName": "Hopper", "Email": "grace@contoso.example",
		"Username": "grace@contoso.example"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SF.Insert(sf.ObjectOpportunityTeamMember, map[string]any{"OpportunityId": oppID, "UserId": user, "TeamMemberRole": "Sales Rep"}); err != nil {
		t.Fatal(err)
	}
	opp, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
	contact, err := s.SF.Insert("Contact", map[string]any{"AccountId": opp[sf.FieldAccountID], "FirstName": "Nancy", "LastName": "Davolio", "Email": "nancy@contoso.example"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SF.Insert(sf.ObjectOpportunityContactRole, map[string]any{"OpportunityId": oppID, "ContactId": contact, "Role": "Decision Maker"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the team member and the customer's contact in Partner Center", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		if len(refs) != 1 || refs[0].CustomerProfile == nil {
			return false, fmt.Sprintf("%d referrals", len(refs))
		}
		r := refs[0]
		var team, contacts []string
		for _, m := range r.Team {
			team = append(team, m.Email)
		}
		for _, m := range r.CustomerProfile.Team {
			contacts = append(contacts, m.Email)
		}
		return slices.Contains(team, "grace@contoso.example") && slices.Contains(contacts, "nancy@contoso.example"),
			fmt.Sprintf("team %v, contacts %v", team, contacts)
	})
	// Deleted: held on the link, nothing sent; undeleted and edited: the edit reaches Partner Center.
	if err := s.SF.Delete(sf.ObjectOpportunity, oppID); err != nil {
		t.Fatal(err)
	}
	bus, err := s.Connect(t.Context(), "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	link := contracts.LinkIDFor(contracts.Salesforce, oppID)
	testkit.Eventually(t, 20*time.Second, "the deletion held on the link", func() (bool, string) {
		held := false
		err := bus.Read(t.Context(), contracts.StreamAudit, func(m platform.Stored) error {
			var d contracts.Decision
			if json.Unmarshal(m.Data, &d) == nil && d.LinkID == link && d.Kind == contracts.DecisionHeld && strings.Contains(d.Detail, "deleted") {
				held = true
			}
			return nil
		})
		return held, fmt.Sprintf("held %v (%v)", held, err)
	})
	if err := s.SF.Undelete(sf.ObjectOpportunity, oppID); err != nil {
		t.Fatal(err)
	}
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{"Amount": 33750}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the edit after the undelete in Partner Center", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		if len(refs) != 1 || refs[0].Details == nil || refs[0].Details.DealValue == nil {
			return false, fmt.Sprintf("%d referrals", len(refs))
		}
		return *refs[0].Details.DealValue == 33750, fmt.Sprintf("dealValue %v", *refs[0].Details.DealValue)
	})
}
