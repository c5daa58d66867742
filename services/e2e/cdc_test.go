package e2e

import (
	"fmt"
	"testing"
	"time"

	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// TestChangeDataCaptureCarriesSellerChanges runs the whole system with sf-ingest on the emulator's
// Pub/Sub API and its backstop poll an hour away, so only change events can carry a seller's create and
// update to Partner Center.
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
}
