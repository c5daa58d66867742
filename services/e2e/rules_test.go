package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// pcWrites counts Partner Center writes (creates and patches) so far.
func pcWrites(s *stack.Stack) int {
	n := 0
	for k, v := range s.PC.Counts() {
		if strings.HasPrefix(k, "referrals.") && (strings.Contains(k, "create") || strings.Contains(k, "patch")) {
			n += v
		}
	}
	return n
}

// linkedOpportunity creates a flagged Opportunity and waits until its referral exists and is linked back.
func linkedOpportunity(t *testing.T, s *stack.Stack, name string, amount float64) (string, pc.Referral) {
	t.Helper()
	oppID := newOpportunity(t, s, name, amount)
	var ref pc.Referral
	testkit.Eventually(t, 20*time.Second, "referral created and linked back", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		if len(refs) != 1 {
			return false, fmt.Sprintf("%d referrals", len(refs))
		}
		ref = refs[0]
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldReferralIdentifier] == ref.ID, fmt.Sprint(o[sf.FieldReferralIdentifier])
	})
	return oppID, ref
}

// TestOptOutPausesTheLink (issue 13, defect 1): an Opportunity with the flag off that names a referral is
// not linked; unticking the flag on a linked pair pauses it (Microsoft's changes still reach the
// Opportunity), ticking it again sends what the seller changed meanwhile.
func TestOptOutPausesTheLink(t *testing.T) {
	s := start(t, nil)
	ctx := context.Background()

	// Flag off, Referral Identifier set (what an upsert by that External ID produces): not linked, not patched.
	const strayReferral = "3b1c9e2a-5d4f-4c1b-9a8e-7f6d5c4b3a21"
	acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": "Opted out GmbH", "BillingCountry": "DE"})
	if err != nil {
		t.Fatal(err)
	}
	optedOut, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{
		"Name": "Opted out", "AccountId": acc, "Amount": 9.0, "CloseDate": "2027-03-31", "StageName": "Qualification",
		sf.FieldSyncWithPartnerCenter: false, sf.FieldReferralIdentifier: strayReferral,
	})
	if err != nil {
		t.Fatal(err)
	}
	stacktest.Quiet(t, s)

	oppID, ref := linkedOpportunity(t, s, "Paused deal", 20000)
	stacktest.Quiet(t, s)
	if _, err := s.Auditor.Link(ctx, optedOut); !errors.Is(err, auditor.ErrNoLink) {
		t.Errorf("an Opportunity with Sync with Partner Center off must not be linked: %v", err)
	}
	if err := s.SF.Update(sf.ObjectOpportunity, optedOut, map[string]any{"Amount": 99.0}); err != nil {
		t.Fatal(err)
	}
	// The seller unticks the flag and changes the amount.
	s.PC.ResetCounts()
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldSyncWithPartnerCenter: false, "Amount": 25000.0}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the link paused", func() (bool, string) {
		l, err := s.Auditor.Link(ctx, oppID)
		if err != nil {
			return false, err.Error()
		}
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return l.Paused && strings.HasPrefix(fmt.Sprint(o[sf.FieldSyncStatus]), "⏸"), fmt.Sprint(l.Paused, o[sf.FieldSyncStatus])
	})
	stacktest.Quiet(t, s)
	if n := pcWrites(s); n != 0 {
		t.Fatalf("Partner Center written while the flag is off: %v", s.PC.Counts())
	}
	if _, err := s.Auditor.Link(ctx, optedOut); !errors.Is(err, auditor.ErrNoLink) {
		t.Errorf("an Opportunity with the flag off that names a referral must not be linked: %v", err)
	}

	// Microsoft changes the close date: it reaches the paused Opportunity.
	if _, err := s.PC.SellerUpdate(ref.ID, pc.Referral{Details: &pc.Details{ClosingDateTime: "2027-07-31T00:00:00Z"}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "Microsoft's change shown on the paused Opportunity", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldCloseDate] == "2027-07-31", fmt.Sprint(o[sf.FieldCloseDate])
	})
	stacktest.Quiet(t, s)
	if got, _ := s.PC.Get(ref.ID); *got.Details.DealValue != 20000 {
		t.Fatalf("the paused amount reached Partner Center: %v", *got.Details.DealValue)
	}

	// Ticking again resumes: the amount changed while paused goes, once.
	s.PC.ResetCounts()
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldSyncWithPartnerCenter: true}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "resumed", func() (bool, string) {
		got, _ := s.PC.Get(ref.ID)
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return *got.Details.DealValue == 25000 && o[sf.FieldSyncStatus] == "✔", fmt.Sprint(*got.Details.DealValue, o[sf.FieldSyncStatus])
	})
	stacktest.Quiet(t, s)
	if n := s.PC.Counts()["referrals.patch"]; n != 1 {
		t.Errorf("referral patches on resume = %d, want 1", n)
	}
	if got, _ := s.PC.Get(ref.ID); !strings.HasPrefix(got.Details.ClosingDateTime, "2027-07-31") {
		t.Errorf("Microsoft's close date was overwritten: %s", got.Details.ClosingDateTime)
	}
}

// TestHeldPausedFailedClosedGoQuietForAMinute (issue 13, defect 3 and the done-when check): records with
// a change held back (hold stage, a referral Partner Center closed, a paused link), a failed one (a patch
// Partner Center refused) and a refused create (no Account) are decided once; with the Audit write-back
// running, the system then goes quiet: over a whole minute the emulators count zero Salesforce and zero
// Partner Center writes.
func TestHeldPausedFailedClosedGoQuietForAMinute(t *testing.T) {
	t.Parallel()
	s := start(t, func(o *stack.Options) {
		o.Vars["COSELL_AUDIT_SUMMARY_INTERVAL"] = "200ms"
		o.Vars["COSELL_AUDIT_SAMPLE_INTERVAL"] = "200ms"
	})
	// Hold stage: a Microsoft referral waits in Prospecting; the seller edits the amount there.
	held, err := s.PC.SellerCreate(stacktest.SellerReferral("Held in hold stage", 11000))
	if err != nil {
		t.Fatal(err)
	}
	// Closed: a Microsoft referral, accepted, then won by Microsoft; the seller edits the amount after.
	closed, err := s.PC.SellerCreate(stacktest.SellerReferral("Closed by Microsoft", 12000))
	if err != nil {
		t.Fatal(err)
	}
	// Paused: a seller's Opportunity whose flag is then unticked with an edit.
	pausedID, _ := linkedOpportunity(t, s, "Paused and edited", 13000)
	// Failed: a seller's Opportunity whose edit Partner Center refuses (a negative deal value).
	failedID, _ := linkedOpportunity(t, s, "Refused edit", 14000)
	// Refused create: a flagged Opportunity without an Account.
	noAccountID, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{"Name": "No customer", "Amount": 15000.0,
		"CloseDate": "2027-03-31", "StageName": "Qualification", sf.FieldSyncWithPartnerCenter: true})
	if err != nil {
		t.Fatal(err)
	}
	var heldOpp, closedOpp string
	testkit.Eventually(t, 20*time.Second, "both Opportunities created", func() (bool, string) {
		a, b := stacktest.OpportunitiesFor(s, held.ID), stacktest.OpportunitiesFor(s, closed.ID)
		if len(a) != 1 || len(b) != 1 {
			return false, fmt.Sprint(len(a), len(b))
		}
		heldOpp, closedOpp = fmt.Sprint(a[0][sf.FieldID]), fmt.Sprint(b[0][sf.FieldID])
		return true, ""
	})
	stacktest.Quiet(t, s)
	if err := s.SF.Update(sf.ObjectOpportunity, closedOpp, map[string]any{"StageName": "Qualification"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "accepted", func() (bool, string) {
		r, _ := s.PC.Get(closed.ID)
		return r.Status == pc.StatusActive, r.Status
	})
	if _, err := s.PC.SellerClose(closed.ID, pc.SubstatusWon); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "Opportunity won", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, closedOpp)
		return o[sf.FieldStageName] == "Closed Won", fmt.Sprint(o[sf.FieldStageName])
	})
	for id, f := range map[string]map[string]any{
		heldOpp:   {"Amount": 11500.0},
		closedOpp: {"Amount": 12500.0},
		pausedID:  {"Amount": 13500.0, sf.FieldSyncWithPartnerCenter: false},
		failedID:  {"Amount": -1.0},
	} {
		if err := s.SF.Update(sf.ObjectOpportunity, id, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{heldOpp, closedOpp, pausedID} {
		testkit.Eventually(t, 20*time.Second, "held shown on "+id, func() (bool, string) {
			o, _ := s.SF.Get(sf.ObjectOpportunity, id)
			return strings.HasPrefix(fmt.Sprint(o[sf.FieldSyncStatus]), "⏸") && strings.Contains(fmt.Sprint(o[sf.FieldAudit]), " held"),
				fmt.Sprint(o[sf.FieldSyncStatus], o[sf.FieldAudit])
		})
	}
	for _, id := range []string{failedID, noAccountID} {
		testkit.Eventually(t, 20*time.Second, "failure shown on "+id, func() (bool, string) {
			o, _ := s.SF.Get(sf.ObjectOpportunity, id)
			return strings.HasPrefix(fmt.Sprint(o[sf.FieldSyncStatus]), "✖") && strings.Contains(fmt.Sprint(o[sf.FieldAudit]), " failed"),
				fmt.Sprint(o[sf.FieldSyncStatus], o[sf.FieldAudit])
		})
	}
	// Poll the counters until a poll cycle passes without a write (the first decisions' Audit and status
	// write-backs land), then require zero writes for a minute.
	testkit.Eventually(t, 30*time.Second, "quiet after the first decisions", func() (bool, string) {
		s.SF.ResetCounts()
		s.PC.ResetCounts()
		stacktest.Quiet(t, s)
		return sfWrites(s) == 0 && pcWrites(s) == 0, fmt.Sprint(s.SF.Counts(), s.PC.Counts())
	})
	s.SF.ResetCounts()
	s.PC.ResetCounts()
	polls := stacktest.Polls(s)
	end := time.Now().Add(time.Minute)
	testkit.Eventually(t, 2*time.Minute, "a minute without a write", func() (bool, string) {
		if n, m := sfWrites(s), pcWrites(s); n+m != 0 {
			t.Fatalf("held, paused, failed and closed records keep writing: Salesforce %d, Partner Center %d (%v %v)", n, m, s.SF.Counts(), s.PC.Counts())
		}
		return time.Now().After(end), fmt.Sprintf("%s to go", time.Until(end).Round(time.Second))
	})
	stacktest.Quiet(t, s)
	if n, m := sfWrites(s), pcWrites(s); n+m != 0 || stacktest.Polls(s) == polls {
		t.Fatalf("after a minute: Salesforce %d, Partner Center %d writes (%v %v); sf-ingest polled %d times", n, m, s.SF.Counts(), s.PC.Counts(), stacktest.Polls(s)-polls)
	}
	for id, kind := range map[string]string{heldOpp: "held", closedOpp: "held", pausedID: "held", failedID: "failed", noAccountID: "failed"} {
		rec, err := s.Auditor.Lookup(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range rec.Timeline {
			if d.Kind == kind {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d %s entries on the timeline, want 1: %s", id, n, kind, kindsOf(rec.Timeline))
		}
	}
}

// TestSellersStageIsTheSellers (issue 13, defect 2): a flagged Opportunity a seller created in the hold
// stage keeps its stage when its referral becomes Active/Accepted, and when Microsoft closes the referral;
// the status then says the two are out of step.
func TestSellersStageIsTheSellers(t *testing.T) {
	s := start(t, nil)
	acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": "Seller stage GmbH", "BillingCountry": "DE"})
	if err != nil {
		t.Fatal(err)
	}
	oppID, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{
		"Name": "Seller's own deal", "AccountId": acc, "Amount": 5000.0, "CurrencyIsoCode": "EUR", "CloseDate": "2027-03-31",
		"StageName": "Prospecting", sf.FieldSyncWithPartnerCenter: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var ref pc.Referral
	testkit.Eventually(t, 20*time.Second, "referral created and linked back", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		if len(refs) != 1 {
			return false, "no referral"
		}
		ref = refs[0]
		return o[sf.FieldReferralIdentifier] == ref.ID, ""
	})
	stacktest.Quiet(t, s)
	if r, _ := s.PC.Get(ref.ID); r.Status != pc.StatusActive {
		t.Fatalf("the partner's referral is %s/%s, want Active", r.Status, r.Substatus)
	}
	o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
	if o[sf.FieldStageName] != "Prospecting" {
		t.Fatalf("the seller's stage was changed to %v", o[sf.FieldStageName])
	}

	if _, err := s.PC.SellerClose(ref.ID, pc.SubstatusWon); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "out of step shown", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return strings.HasPrefix(fmt.Sprint(o[sf.FieldSyncStatus]), "⏸"), fmt.Sprint(o[sf.FieldSyncStatus])
	})
	stacktest.Quiet(t, s)
	o, _ = s.SF.Get(sf.ObjectOpportunity, oppID)
	if o[sf.FieldStageName] != "Prospecting" {
		t.Fatalf("Microsoft's close changed the seller's stage to %v", o[sf.FieldStageName])
	}
	// The seller closes it as won too: in step again.
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{"StageName": "Closed Won"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "in step again", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldSyncStatus] == "✔", fmt.Sprint(o[sf.FieldSyncStatus])
	})
}

// TestVisibilityOnceVisibleAndCRMIdentifier (issue 13): the seller makes the referral visible to Microsoft
// sellers; Microsoft's CRM id reaches the Opportunity once Microsoft accepts; an untick is refused with
// the reason and the tick comes back, and Partner Center keeps the referral visible.
func TestVisibilityOnceVisibleAndCRMIdentifier(t *testing.T) {
	s := start(t, nil)
	oppID, ref := linkedOpportunity(t, s, "Visible deal", 31000)
	stacktest.Quiet(t, s)
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldReferralVisibility: true}); err != nil {
		t.Fatal(err)
	}
	visible := func() bool {
		r, _ := s.PC.Get(ref.ID)
		return r.Consent != nil && r.Consent.ConsentToShareReferralWithMicrosoftSellers != nil && *r.Consent.ConsentToShareReferralWithMicrosoftSellers
	}
	testkit.Eventually(t, 20*time.Second, "visible to Microsoft sellers", func() (bool, string) { return visible(), "" })
	if _, err := s.PC.SellerUpdate(ref.ID, pc.Referral{TrackingInfo: &pc.TrackingInfo{MicrosoftMsxID: "7-MSX42"}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "CRM id on the Opportunity", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldMicrosoftCRMIdentifier] == "7-MSX42", fmt.Sprint(o[sf.FieldMicrosoftCRMIdentifier])
	})
	stacktest.Quiet(t, s)
	s.PC.ResetCounts()
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldReferralVisibility: false, sf.FieldMicrosoftCRMIdentifier: "typed over"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the tick written back", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldReferralVisibility] == true, fmt.Sprint(o[sf.FieldReferralVisibility])
	})
	stacktest.Quiet(t, s)
	if !visible() || s.PC.Counts()["referrals.patch"] != 0 {
		t.Fatalf("Partner Center must keep the referral visible and get no patch: visible %v, counts %v", visible(), s.PC.Counts())
	}
	rec, err := s.Auditor.Lookup(context.Background(), oppID)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range rec.Timeline {
		found = found || (d.Kind == "failed" && strings.Contains(d.Detail, "never makes a visible referral invisible"))
	}
	if !found {
		t.Errorf("the refusal must be on the timeline: %s", kindsOf(rec.Timeline))
	}
}

// TestNoAccountIsRefusedNotNamedAfterTheDeal (issue 13, account rule): a flagged Opportunity without an
// Account is not shared with Microsoft under a customer named after the deal; the refusal is on the
// Opportunity (✖ with the reason and the command) and its timeline, costs no Partner Center call, and is
// not written again; once the seller sets the Account, the referral is created under the Account's name.
func TestNoAccountIsRefusedNotNamedAfterTheDeal(t *testing.T) {
	s := start(t, nil)
	s.PC.ResetCounts()
	oppID, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{"Name": "Deal without a customer", "Amount": 7000.0,
		"CloseDate": "2027-03-31", "StageName": "Qualification", sf.FieldSyncWithPartnerCenter: true})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the refusal on the Opportunity", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		st := fmt.Sprint(o[sf.FieldSyncStatus])
		return strings.HasPrefix(st, "✖ refused: the Opportunity has no customer Account") && strings.HasSuffix(st, "(cosell links get "+oppID+")"), st
	})
	stacktest.Quiet(t, s)
	if n := pcWrites(s); n != 0 || len(stacktest.ReferralsFor(s, oppID)) != 0 {
		t.Fatalf("a referral was created without a customer (%d Partner Center writes)", n)
	}
	rec, err := s.Auditor.Lookup(context.Background(), oppID)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, d := range rec.Timeline {
		if d.Kind == contracts.DecisionFailed && strings.Contains(d.Detail, "no customer Account") {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d failed entries with the reason on the timeline, want 1", failed)
	}
	s.SF.ResetCounts()
	stacktest.Quiet(t, s)
	if n := sfWrites(s); n != 0 {
		t.Errorf("the refusal keeps writing: %d Salesforce writes (%v)", n, s.SF.Counts())
	}

	acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": "Tailspin Toys", "BillingCountry": "US", "BillingPostalCode": "98052"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{"AccountId": acc}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "referral created once the Account is set", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return len(refs) == 1 && o[sf.FieldSyncStatus] == "✔", fmt.Sprint(len(refs), o[sf.FieldSyncStatus])
	})
	if ref := stacktest.ReferralsFor(s, oppID)[0]; ref.CustomerProfile == nil || ref.CustomerProfile.Name != "Tailspin Toys" {
		t.Errorf("referral customer = %+v, want the Account's name", ref.CustomerProfile)
	}
}

// TestAccountMatchByExternalID (issue 13, account rule): with COSELL_ACCOUNT_MATCH=external-id a referral
// from Microsoft whose customer carries an External id lands on the Account holding that id, whatever its
// name; a customer without a matching Account gets a new one that holds the id. (The default rule, name +
// postal code, and the others: sfwriter's TestAccountMatchRule.)
func TestAccountMatchByExternalID(t *testing.T) {
	s := start(t, func(o *stack.Options) { o.Vars["COSELL_ACCOUNT_MATCH"] = "external-id" })
	existing, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": "Wide World Importers (HQ)", "BillingPostalCode": "10115",
		"Partner_Center_Customer_Id__c": "WWI-1"})
	if err != nil {
		t.Fatal(err)
	}
	known := stacktest.SellerReferral("Wide World rollout", 15000)
	known.CustomerProfile.IDs = []pc.ProfileID{{ProfileType: "External", ID: "WWI-1"}}
	fresh := stacktest.SellerReferral("Fourth Coffee pilot", 5000)
	fresh.CustomerProfile.IDs = []pc.ProfileID{{ProfileType: "External", ID: "4C-9"}}
	accountOf := map[string]string{}
	for _, r := range []pc.Referral{known, fresh} {
		got, err := s.PC.SellerCreate(r)
		if err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 20*time.Second, "opportunity for "+r.Name, func() (bool, string) {
			opps := stacktest.OpportunitiesFor(s, got.ID)
			if len(opps) != 1 {
				return false, fmt.Sprint(len(opps))
			}
			accountOf[r.Name] = fmt.Sprint(opps[0][sf.FieldAccountID])
			return true, ""
		})
	}
	if accountOf[known.Name] != existing {
		t.Errorf("the known customer's Opportunity is on Account %s, want %s (matched by its id)", accountOf[known.Name], existing)
	}
	acc, _ := s.SF.Get(sf.ObjectAccount, accountOf[fresh.Name])
	if accountOf[fresh.Name] == existing || acc["Partner_Center_Customer_Id__c"] != "4C-9" || acc["Name"] != "Fourth Coffee pilot Customer" {
		t.Errorf("the new customer's Account = %v", acc)
	}
}

// TestCustomerContactsReachPartnerCenter (issue 13, customer contacts): a co-sell Opportunity (How can
// Microsoft help set) without a contact role is refused with the reason; adding a Contact role creates the
// referral with that contact in customerProfile.team, and a second contact role is patched in.
func TestCustomerContactsReachPartnerCenter(t *testing.T) {
	s := start(t, nil)
	acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": "Northwind Traders", "BillingCountry": "US", "BillingPostalCode": "98052"})
	if err != nil {
		t.Fatal(err)
	}
	oppID, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{"Name": "Northwind co-sell", "AccountId": acc, "Amount": 9000.0,
		"CloseDate": "2027-03-31", "StageName": "Qualification", sf.FieldSyncWithPartnerCenter: true, sf.FieldHowCanMicrosoftHelp: "Quotes or licensing"})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the refusal on the Opportunity", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		st := fmt.Sprint(o[sf.FieldSyncStatus])
		return strings.HasPrefix(st, "✖ refused: a co-sell referral") && strings.Contains(st, "customer contact"), st
	})
	if n := len(stacktest.ReferralsFor(s, oppID)); n != 0 {
		t.Fatalf("%d referrals created without a customer contact", n)
	}
	addRole := func(first, last, email string) {
		t.Helper()
		c, err := s.SF.Insert("Contact", map[string]any{"AccountId": acc, "FirstName": first, "LastName": last, "Email": email, "Phone": "+1 425 555 0100"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.SF.Insert(sf.ObjectOpportunityContactRole, map[string]any{"OpportunityId": oppID, "ContactId": c, "Role": "Decision Maker"}); err != nil {
			t.Fatal(err)
		}
	}
	addRole("Nancy", "Davolio", "nancy@northwind.example")
	var ref pc.Referral
	testkit.Eventually(t, 30*time.Second, "referral created with the customer contact", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		if len(refs) != 1 || refs[0].CustomerProfile == nil {
			return false, fmt.Sprint(len(refs))
		}
		ref = refs[0]
		return len(ref.CustomerProfile.Team) == 1 && ref.CustomerProfile.Team[0].Email == "nancy@northwind.example", fmt.Sprint(ref.CustomerProfile.Team)
	})
	if m := ref.CustomerProfile.Team[0]; m.FirstName != "Nancy" || m.LastName != "Davolio" || m.PhoneNumber != "+1 425 555 0100" {
		t.Errorf("customer contact = %+v", m)
	}
	stacktest.Quiet(t, s)
	addRole("Andrew", "Fuller", "andrew@northwind.example")
	testkit.Eventually(t, 30*time.Second, "second contact patched in", func() (bool, string) {
		got, _ := s.PC.Get(ref.ID)
		return got.CustomerProfile != nil && len(got.CustomerProfile.Team) == 2, fmt.Sprint(got.CustomerProfile.Team)
	})
}

// TestCustomerContactsReachSalesforce (issue 13, customer contacts): a referral's customer contacts become
// the Opportunity's contact roles: an existing Contact with the e-mail is used, a new one is created under
// the Opportunity's Account; a contact Microsoft adds later gets its role, one it removes loses it (the
// Contact stays); cosell's own role writes coming back send nothing to Partner Center.
func TestCustomerContactsReachSalesforce(t *testing.T) {
	s := start(t, nil)
	known, err := s.SF.Insert("Contact", map[string]any{"FirstName": "Sue", "LastName": "Smith", "Email": "sue.smith@contoso.example"})
	if err != nil {
		t.Fatal(err)
	}
	in := stacktest.SellerReferral("Contoso contacts", 30000)
	in.CustomerProfile.Team = []pc.Member{{FirstName: "Sue", LastName: "Smith", Email: "Sue.Smith@contoso.example"},
		{FirstName: "Joe", LastName: "Hansen", Email: "joe.hansen@contoso.example", PhoneNumber: "4035698759"}}
	r, err := s.PC.SellerCreate(in)
	if err != nil {
		t.Fatal(err)
	}
	roles := func(oppID string) map[string]string { // e-mail -> contact id
		out := map[string]string{}
		for _, role := range s.SF.All(sf.ObjectOpportunityContactRole) {
			if role["OpportunityId"] == oppID && role["IsDeleted"] != true {
				c, _ := s.SF.Get("Contact", fmt.Sprint(role["ContactId"]))
				out[strings.ToLower(fmt.Sprint(c["Email"]))] = fmt.Sprint(role["ContactId"])
			}
		}
		return out
	}
	var oppID string
	testkit.Eventually(t, 30*time.Second, "contact roles on the new Opportunity", func() (bool, string) {
		opps := stacktest.OpportunitiesFor(s, r.ID)
		if len(opps) != 1 {
			return false, "no opportunity"
		}
		oppID = fmt.Sprint(opps[0][sf.FieldID])
		got := roles(oppID)
		return len(got) == 2, fmt.Sprint(got)
	})
	got := roles(oppID)
	if got["sue.smith@contoso.example"] != known {
		t.Errorf("the existing Contact was not used: %v (known %s)", got, known)
	}
	opp, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
	joe, _ := s.SF.Get("Contact", got["joe.hansen@contoso.example"])
	if joe["LastName"] != "Hansen" || joe["Phone"] != "4035698759" || joe["AccountId"] != opp[sf.FieldAccountID] {
		t.Errorf("created Contact = %v, want Joe Hansen under the Opportunity's Account %v", joe, opp[sf.FieldAccountID])
	}
	stacktest.Quiet(t, s)
	s.PC.ResetCounts()
	if _, err := s.PC.SellerUpdate(r.ID, pc.Referral{CustomerProfile: &pc.CustomerProfile{Team: []pc.Member{
		{FirstName: "Joe", LastName: "Hansen", Email: "joe.hansen@contoso.example", PhoneNumber: "4035698759"},
		{FirstName: "Ann", LastName: "Lee", Email: "ann.lee@contoso.example"}}}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "roles follow Microsoft's edit", func() (bool, string) {
		got := roles(oppID)
		_, ann := got["ann.lee@contoso.example"]
		_, sue := got["sue.smith@contoso.example"]
		return len(got) == 2 && ann && !sue, fmt.Sprint(got)
	})
	if c, ok := s.SF.Get("Contact", known); !ok || c["IsDeleted"] == true {
		t.Error("a removed customer contact's Contact was deleted; only its role goes")
	}
	stacktest.Quiet(t, s)
	if n := pcWrites(s); n != 0 {
		t.Errorf("cosell's own contact role writes went back to Partner Center: %d writes (%v)", n, s.PC.Counts())
	}
}
