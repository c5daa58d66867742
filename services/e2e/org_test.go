package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	metadata "github.com/cosell-dev/cosell/deploy/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/sforg"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// TestSingleCurrencyOrg runs the representative flows against a single-currency org, where CurrencyIsoCode
// does not exist: a referral from Microsoft becomes an Opportunity, a synced Opportunity becomes a referral
// in the org's currency, and a referral in another currency is refused with the reason and the fix instead
// of being written as if it were in the org's currency. (COSELL_E2E_ORG=single-currency runs the whole suite
// against such an org.)
func TestSingleCurrencyOrg(t *testing.T) {
	s := start(t, func(o *stack.Options) { o.SFOrg.SingleCurrency, o.SFOrg.Currency = true, "USD" })

	inUSD, err := s.PC.SellerCreate(stacktest.SellerReferral("Single-currency data platform", 90000))
	if err != nil {
		t.Fatal(err)
	}
	oppID := newOpportunity(t, s, "Single-currency landing zone", 30000)
	eurValue := 12000.0
	eur := stacktest.SellerReferral("Euro deal", eurValue)
	eur.Details.Currency = "EUR"
	inEUR, err := s.PC.SellerCreate(eur)
	if err != nil {
		t.Fatal(err)
	}

	testkit.Eventually(t, 30*time.Second, "opportunity from the USD referral", func() (bool, string) {
		opps := stacktest.OpportunitiesFor(s, inUSD.ID)
		return len(opps) == 1 && opps[0][sf.FieldAmount] == 90000.0, fmt.Sprintf("%v", opps)
	})
	if _, has := stacktest.OpportunitiesFor(s, inUSD.ID)[0][sf.FieldCurrencyIsoCode]; has {
		t.Error("a CurrencyIsoCode field appeared in a single-currency org")
	}
	testkit.Eventually(t, 30*time.Second, "referral from the opportunity, in the org's currency", func() (bool, string) {
		refs := stacktest.ReferralsFor(s, oppID)
		if len(refs) != 1 || refs[0].Details == nil {
			return false, fmt.Sprintf("%d referrals", len(refs))
		}
		return refs[0].Details.Currency == "USD", "currency " + refs[0].Details.Currency
	})
	testkit.Eventually(t, 30*time.Second, "the EUR referral refused with its reason", func() (bool, string) {
		rec, err := s.Auditor.Lookup(context.Background(), inEUR.ID)
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, d := range rec.Timeline {
			if strings.Contains(d.Detail, "single-currency (USD)") && strings.Contains(d.Detail, "enable multiple currencies") {
				return true, ""
			}
			seen = append(seen, d.Kind+": "+d.Detail)
		}
		return false, strings.Join(seen, " | ")
	})
	stacktest.Quiet(t, s)
	if n := len(stacktest.OpportunitiesFor(s, inEUR.ID)); n != 0 {
		t.Errorf("%d opportunities for the EUR referral in a USD-only org", n)
	}
}

// TestJWTLogin runs both directions with the stages logged in by the OAuth 2.0 JWT bearer flow on the
// org's login host (the server-to-server setup docs/connect.md describes), through a session expiry: every
// stage logs in again once and nothing is lost.
func TestJWTLogin(t *testing.T) {
	s := start(t, func(o *stack.Options) { o.SFLogin = sfapi.AuthJWT })
	if cfg, err := s.SFConfig(); err != nil || cfg.Flow() != sfapi.AuthJWT || cfg.Domain != s.SFLoginURL {
		t.Fatalf("stack login %s at %s (%v)", cfg.Flow(), cfg.Domain, err)
	}
	r, err := s.PC.SellerCreate(stacktest.SellerReferral("JWT data platform", 70000))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "opportunity from the referral", func() (bool, string) {
		n := len(stacktest.OpportunitiesFor(s, r.ID))
		return n == 1, fmt.Sprintf("%d opportunities", n)
	})
	s.SF.ExpireSessions()
	oppID := newOpportunity(t, s, "JWT landing zone", 20000)
	testkit.Eventually(t, 30*time.Second, "referral from the opportunity after the session expired", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return len(stacktest.ReferralsFor(s, oppID)) == 1 && o[sf.FieldSyncStatus] == "✔", fmt.Sprintf("%d referrals, status %v", len(stacktest.ReferralsFor(s, oppID)), o[sf.FieldSyncStatus])
	})
	stacktest.Quiet(t, s)
	if n := len(stacktest.OpportunitiesFor(s, r.ID)); n != 1 {
		t.Errorf("%d opportunities for one referral", n)
	}
}

// TestStartNamesWhatTheOrgLacks: sf-ingest and sf-writer read the org's shape while they start, before they
// report ready, so an org without a field one of them needs stops the start with the stage, the field and
// the fix, instead of a stage that runs and fails on every record: sf-ingest for a field the mapping reads,
// sf-writer for one it writes.
func TestStartNamesWhatTheOrgLacks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ object, field, stage, fix string }{
		{"Opportunity", sf.FieldHowCanMicrosoftHelp, "sf-ingest", sforg.FixMissingField},
		{"Opportunity", sf.FieldAudit, "sf-writer", sforg.FixDeploy},
		{sf.ObjectMicrosoftSolution, "Solution_Id__c", "sf-writer", sforg.FixDeploy},
	} {
		t.Run(c.field, func(t *testing.T) {
			t.Parallel()
			partial := t.TempDir()
			if err := os.CopyFS(partial, metadata.Metadata); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(partial, metadata.ObjectsDir, c.object, "fields", c.field+".field-meta.xml")); err != nil {
				t.Fatal(err)
			}
			opts := stacktest.Options(t)
			opts.SFMetadataDir = partial
			s, err := stack.Start(context.Background(), opts)
			if err == nil {
				s.Stop()
				t.Fatalf("the system started on an org without %s.%s", c.object, c.field)
			}
			if want := c.stage + ": the Salesforce org has no " + c.object + " field " + c.field + ": " + c.fix; err.Error() != want {
				t.Errorf("start error\n%s\nwant\n%s", err, want)
			}
		})
	}
}
