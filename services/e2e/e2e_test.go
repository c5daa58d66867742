// Package e2e proves the walking skeleton end to end: the real embedded nats-server, both emulators over
// real HTTP on loopback, the real clients (go-salesforce, the Partner Center client), and the six stages.
package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// The suite runs against a multi-currency org with client credentials on its My Domain by default;
// COSELL_E2E_ORG=single-currency and COSELL_E2E_SF_LOGIN=jwt change that for every test, and
// TestSingleCurrencyOrg and TestJWTLogin run the representative flows in those shapes either way.
//
// singleCurrency runs the whole suite against a single-currency org (no CurrencyIsoCode field; amounts in
// USD) when COSELL_E2E_ORG=single-currency; by default the org is multi-currency. TestSingleCurrencyOrg runs
// the representative flows against a single-currency org either way.
var singleCurrency = os.Getenv("COSELL_E2E_ORG") == "single-currency"

// oppCurrency is the currency of the Opportunities newOpportunity creates: EUR, or a single-currency org's USD.
func oppCurrency(s *stack.Stack) string {
	if s.SingleCurrency() {
		return "USD"
	}
	return "EUR"
}

func start(t *testing.T, mod func(*stack.Options)) *stack.Stack {
	t.Helper()
	opts := stacktest.Options(t)
	opts.SFOrg.SingleCurrency = singleCurrency
	opts.SFLogin = os.Getenv("COSELL_E2E_SF_LOGIN") // jwt: the whole suite logs in with the JWT bearer flow
	if mod != nil {
		mod(&opts)
	}
	return stacktest.Start(t, opts)
}

func newOpportunity(t *testing.T, s *stack.Stack, name string, amount float64) string {
	t.Helper()
	acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": name + " GmbH", "BillingCountry": "DE", "BillingPostalCode": "10115", "BillingCity": "Berlin"})
	if err != nil {
		t.Fatalf("insert account: %v", err)
	}
	fields := map[string]any{
		"Name": name, "AccountId": acc, "Amount": amount, "CloseDate": "2027-03-31",
		"StageName": "Qualification", "Description": "Needs Azure landing zone", sf.FieldSyncWithPartnerCenter: true,
	}
	if !s.SingleCurrency() {
		fields[sf.FieldCurrencyIsoCode] = "EUR"
	}
	id, err := s.SF.Insert(sf.ObjectOpportunity, fields)
	if err != nil {
		t.Fatalf("insert opportunity: %v", err)
	}
	return id
}

func TestReferralFromMicrosoftBecomesOpportunity(t *testing.T) {
	s := start(t, nil)
	r, err := s.PC.SellerCreate(stacktest.SellerReferral("Contoso data platform", 125000))
	if err != nil {
		t.Fatal(err)
	}
	var opp map[string]any
	testkit.Eventually(t, 20*time.Second, "opportunity created from referral", func() (bool, string) {
		opps := stacktest.OpportunitiesFor(s, r.ID)
		if len(opps) != 1 {
			return false, fmt.Sprintf("%d opportunities", len(opps))
		}
		opp = opps[0]
		return true, ""
	})
	want := map[string]any{
		sf.FieldName:   "Contoso data platform ✔", // the sync mark (nameMark, on by default)
		sf.FieldAmount: 125000.0, sf.FieldCurrencyIsoCode: "USD",
		sf.FieldCloseDate: "2027-02-15", sf.FieldStageName: "Prospecting", sf.FieldSyncWithPartnerCenter: true,
	}
	if s.SingleCurrency() {
		want[sf.FieldCurrencyIsoCode] = nil // the field does not exist; the org's currency is USD
	}
	for k, v := range want {
		if opp[k] != v {
			t.Errorf("opportunity %s = %v, want %v", k, opp[k], v)
		}
	}
	acc, ok := s.SF.Get(sf.ObjectAccount, fmt.Sprint(opp[sf.FieldAccountID]))
	if !ok || acc["Name"] != "Contoso data platform Customer" || acc["BillingPostalCode"] != "98052" {
		t.Errorf("account = %v", acc)
	}
	stacktest.Quiet(t, s)
	if n := len(stacktest.OpportunitiesFor(s, r.ID)); n != 1 {
		t.Fatalf("%d opportunities for one referral", n)
	}
}

func TestSyncedOpportunityBecomesReferralAndIsLinkedBack(t *testing.T) {
	s := start(t, nil)
	oppID := newOpportunity(t, s, "Fabrikam landing zone", 48000)
	var ref pc.Referral
	testkit.Eventually(t, 20*time.Second, "referral created from opportunity", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		if len(refs) != 1 {
			return false, fmt.Sprintf("%d referrals", len(refs))
		}
		ref = refs[0]
		return true, ""
	})
	if ref.Name != "Fabrikam landing zone" || ref.Details == nil || ref.Details.DealValue == nil || *ref.Details.DealValue != 48000 ||
		ref.Details.Currency != oppCurrency(s) || !strings.HasPrefix(ref.Details.ClosingDateTime, "2027-03-31") ||
		ref.CustomerProfile.Name != "Fabrikam landing zone GmbH" || ref.CustomerProfile.Address.Country != "DE" {
		t.Errorf("referral = %+v %+v %+v", ref, ref.Details, ref.CustomerProfile)
	}
	testkit.Eventually(t, 20*time.Second, "referral id written back", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldReferralIdentifier] == ref.ID && strings.Contains(fmt.Sprint(o[sf.FieldReferralLink]), ref.ID) &&
			o[sf.FieldSyncStatus] == "✔", fmt.Sprintf("%v %v %v", o[sf.FieldReferralIdentifier], o[sf.FieldReferralLink], o[sf.FieldSyncStatus])
	})
	stacktest.Quiet(t, s)
	if n := len(stacktest.ReferralsFor(s, oppID)); n != 1 {
		t.Fatalf("%d referrals for one opportunity", n)
	}
}

// TestChangesFlowBothWaysWithoutBouncing edits the same pair on both sides and checks each write reaches
// the other side once and comes back as nothing.
func TestChangesFlowBothWaysWithoutBouncing(t *testing.T) {
	s := start(t, nil)
	r, err := s.PC.SellerCreate(stacktest.SellerReferral("Northwind analytics", 30000))
	if err != nil {
		t.Fatal(err)
	}
	var oppID string
	testkit.Eventually(t, 20*time.Second, "opportunity created", func() (bool, string) {
		opps := stacktest.OpportunitiesFor(s, r.ID)
		if len(opps) == 1 {
			oppID = fmt.Sprint(opps[0]["Id"])
			return true, ""
		}
		return false, fmt.Sprintf("%d", len(opps))
	})
	stacktest.Quiet(t, s)

	// Microsoft raises the deal value: the Opportunity follows.
	v := 42000.0
	if _, err := s.PC.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "amount updated from Partner Center", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldAmount] == 42000.0, fmt.Sprint(o[sf.FieldAmount])
	})
	stacktest.Quiet(t, s)

	// The partner accepts by moving the Opportunity out of the hold stage and changes the close date.
	s.SF.ResetCounts()
	s.PC.ResetCounts()
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{"StageName": "Qualification", "CloseDate": "2027-04-30"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "referral accepted and re-dated", func() (bool, string) {
		got, err := s.PC.Get(r.ID)
		if err != nil {
			return false, err.Error()
		}
		return got.Status == pc.StatusActive && got.Substatus == pc.SubstatusAccepted &&
				strings.HasPrefix(got.Details.ClosingDateTime, "2027-04-30"),
			fmt.Sprintf("%s/%s %s", got.Status, got.Substatus, got.Details.ClosingDateTime)
	})
	stacktest.Quiet(t, s)
	// Exactly one patch went to Partner Center, and the echo of that patch wrote nothing to Salesforce.
	if n := s.PC.Counts()["referrals.patch"]; n != 1 {
		t.Errorf("referral patches = %d, want 1 (counts %v)", n, s.PC.Counts())
	}
	for k, n := range s.SF.Counts() {
		if (strings.Contains(k, "update") || strings.Contains(k, "upsert") || strings.Contains(k, "create")) && n > 0 {
			t.Errorf("the write bounced back to Salesforce: %s = %d", k, n)
		}
	}
	o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
	if o[sf.FieldStageName] != "Qualification" || o[sf.FieldCloseDate] != "2027-04-30" {
		t.Errorf("opportunity changed under the user: %v %v", o[sf.FieldStageName], o[sf.FieldCloseDate])
	}
}

// TestReplayFromSequenceOneIsHarmless re-delivers every message of every stream and checks nothing is
// created twice and no external write happens for records already converged.
func TestReplayFromSequenceOneIsHarmless(t *testing.T) {
	s := start(t, nil)
	r, err := s.PC.SellerCreate(stacktest.SellerReferral("Tailspin modernisation", 70000))
	if err != nil {
		t.Fatal(err)
	}
	oppID := newOpportunity(t, s, "Wingtip security", 15000)
	testkit.Eventually(t, 30*time.Second, "both pairs linked", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return len(stacktest.OpportunitiesFor(s, r.ID)) == 1 && o[sf.FieldReferralIdentifier] != nil, ""
	})
	stacktest.Quiet(t, s)
	referrals, opps := len(s.PC.Referrals()), len(s.SF.All(sf.ObjectOpportunity))
	s.SF.ResetCounts()
	s.PC.ResetCounts()

	ctx := context.Background()
	bus, err := s.Connect(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	for _, c := range contracts.Consumers() {
		if err := bus.ResetConsumer(ctx, c.Durable, 1); err != nil {
			t.Fatalf("reset %s: %v", c.Durable, err)
		}
	}
	stacktest.Quiet(t, s)
	if got := len(s.PC.Referrals()); got != referrals {
		t.Errorf("referrals %d → %d after replay", referrals, got)
	}
	if got := len(s.SF.All(sf.ObjectOpportunity)); got != opps {
		t.Errorf("opportunities %d → %d after replay", opps, got)
	}
	for k, n := range s.PC.Counts() {
		if strings.Contains(k, "create") || strings.Contains(k, "patch") {
			t.Errorf("replay wrote to Partner Center: %s = %d", k, n)
		}
	}
	for k, n := range s.SF.Counts() {
		if strings.Contains(k, "update") || strings.Contains(k, "upsert") || strings.Contains(k, "create") {
			t.Errorf("replay wrote to Salesforce: %s = %d", k, n)
		}
	}
}

// TestCrashBetweenWriteAndAck kills the stages right after each writer's external write, before the
// outcome and the ack, then starts them again: the redelivered commands must not create duplicates.
func TestCrashBetweenWriteAndAck(t *testing.T) {
	var s *stack.Stack
	var crashed sync.WaitGroup
	crashed.Add(2)
	var sfOnce, pcOnce sync.Once
	s = start(t, func(o *stack.Options) {
		o.SFAfterWrite = func(string) { sfOnce.Do(func() { s.CrashPipeline(); crashed.Done() }) }
		o.PCAfterWrite = func(string) { pcOnce.Do(func() { s.CrashPipeline(); crashed.Done() }) }
	})
	r, err := s.PC.SellerCreate(stacktest.SellerReferral("Litware ERP", 99000))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "sf-writer wrote", func() (bool, string) { return len(stacktest.OpportunitiesFor(s, r.ID)) == 1, "" })
	s.WaitPipeline()
	if err := s.StartPipeline(context.Background()); err != nil {
		t.Fatal(err)
	}
	oppID := newOpportunity(t, s, "Adatum migration", 5000)
	testkit.Eventually(t, 20*time.Second, "pc-writer wrote", func() (bool, string) { return len(stacktest.ReferralsFor(s, oppID)) == 1, "" })
	crashed.Wait()
	s.WaitPipeline()
	if err := s.StartPipeline(context.Background()); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "both links complete after restart", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldReferralIdentifier] != nil, fmt.Sprint(o[sf.FieldReferralIdentifier])
	})
	stacktest.Quiet(t, s)
	if n := len(stacktest.OpportunitiesFor(s, r.ID)); n != 1 {
		t.Errorf("%d opportunities for referral %s", n, r.ID)
	}
	if n := len(stacktest.ReferralsFor(s, oppID)); n != 1 {
		t.Errorf("%d referrals for opportunity %s", n, oppID)
	}
}
