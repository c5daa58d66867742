// Package stacktest is the fixture of the tests that run the whole system in-process (e2e, the CLI's,
// the deployment's): the stack with test timings, started and stopped with the test, and what those tests
// share to drive and read it (seller referrals, the records a referral or an Opportunity became, waiting
// for quiescence).
package stacktest

import (
	"context"
	"fmt"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// Options are the stack's options with test timings: sf-ingest polls every 200ms, a message is
// redelivered after 2s up to 8 times, consumers fetch with short waits, no periodic audit summary, and a
// data directory removed with the test.
func Options(t testing.TB) stack.Options {
	t.Helper()
	return stack.Options{
		DataDir: t.TempDir(),
		Log:     testkit.Log(),
		Vars: map[string]string{"COSELL_SF_POLL_INTERVAL": "200ms", "COSELL_ACK_WAIT": "2s", "COSELL_MAX_DELIVER": "8",
			"COSELL_AUDIT_SUMMARY_INTERVAL": "0"},
		Consume: platform.ConsumeOptions{MaxWait: 200 * time.Millisecond, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second},
	}
}

// Start starts the stack with opts and stops it when the test ends.
func Start(t testing.TB, opts stack.Options) *stack.Stack {
	t.Helper()
	s, err := stack.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Polls counts sf-ingest's polls: each is one Composite call holding its change queries.
func Polls(s *stack.Stack) int {
	return s.SF.Counts()["composite"]
}

// Quiet waits until sf-ingest has polled three more times and every consumer is caught up, so anything
// the system would still do has been done (caught up, not a zero lag: a message stored a moment ago may
// not be counted as pending yet).
func Quiet(t testing.TB, s *stack.Stack) {
	t.Helper()
	q0 := Polls(s)
	testkit.Eventually(t, 20*time.Second, "quiescence", func() (bool, string) {
		if n := Polls(s); n < q0+3 {
			return false, fmt.Sprintf("%d polls so far", n-q0)
		}
		return s.CaughtUp(context.Background())
	})
}

// SellerReferral is a referral a Microsoft seller shares: a US customer with consent, value in USD.
func SellerReferral(name string, value float64) pc.Referral {
	return pc.Referral{
		Name: name,
		CustomerProfile: &pc.CustomerProfile{Name: name + " Customer", Address: &pc.Address{
			AddressLine1: "One Microsoft Way", City: "Redmond", State: "WA", PostalCode: "98052", Country: "US"}},
		Consent: &pc.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true},
		Details: &pc.Details{DealValue: &value, Currency: "USD", ClosingDateTime: "2027-02-15T00:00:00Z", Notes: "Wants a pilot"},
	}
}

// OpportunitiesFor are the Opportunities that name the referral.
func OpportunitiesFor(s *stack.Stack, referralID string) []map[string]any {
	var out []map[string]any
	for _, o := range s.SF.All(sf.ObjectOpportunity) {
		if o[sf.FieldReferralIdentifier] == referralID {
			out = append(out, o)
		}
	}
	return out
}

// OneOpportunityFor waits (up to within) until exactly one Opportunity names the referral and returns its id.
func OneOpportunityFor(t testing.TB, s *stack.Stack, referralID string, within time.Duration) string {
	t.Helper()
	var oppID string
	testkit.Eventually(t, within, "the referral's one Opportunity", func() (bool, string) {
		opps := OpportunitiesFor(s, referralID)
		if len(opps) != 1 {
			return false, fmt.Sprintf("%d opportunities", len(opps))
		}
		oppID = fmt.Sprint(opps[0][sf.FieldID])
		return true, ""
	})
	return oppID
}

// ReferralsFor are the referrals that name the Opportunity.
func ReferralsFor(s *stack.Stack, oppID string) []pc.Referral {
	var out []pc.Referral
	for _, r := range s.PC.Referrals() {
		if r.ExternalReferenceID == oppID {
			out = append(out, r)
		}
	}
	return out
}
