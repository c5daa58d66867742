package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// statusPage reads the status page as the generated operator (bearer token).
func statusPage(t *testing.T, s *stack.Stack) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.Status+"/", nil)
	req.Header.Set("Authorization", "Bearer "+s.Operator.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status page: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// TestStatusPageShowsWhatDriftFound: the page says drift was never checked until `cosell drift` runs; an
// opted-in Opportunity no link knows (made while the stages were down) is then on the page with the
// command that heals it; once the restarted pipeline has linked it, the next clean run clears the page.
func TestStatusPageShowsWhatDriftFound(t *testing.T) {
	t.Parallel()
	s, conn := opsStack(t, nil)
	if page := statusPage(t, s); !strings.Contains(page, `id="drift-card">drift: not checked yet`) {
		t.Errorf("before any drift run the page does not say so")
	}
	s.StopPipeline()
	acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": "Drifted GmbH", "BillingCountry": "DE"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{"Name": "Drifted", "AccountId": acc, "Amount": 10.0,
		"CurrencyIsoCode": "EUR", "CloseDate": "2027-03-31", "StageName": "Qualification", sf.FieldSyncWithPartnerCenter: true})
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := admin(t, conn, "drift"); code != 3 || !strings.Contains(out, id) {
		t.Fatalf("drift: code %d\n%s\n%s", code, out, errOut)
	}
	if err := s.StartPipeline(context.Background()); err != nil {
		t.Fatal(err)
	}
	page := statusPage(t, s)
	for _, want := range []string{"drift found by <code>cosell drift</code>", `<td class="bad">unlinked</td>`, id,
		"opted in (Sync with Partner Center) but no referral is linked", "<code>cosell drift --fix</code>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the status page lacks %q after drift found the Opportunity", want)
		}
	}
	rep, err := s.Auditor.LastDrift(context.Background())
	if err != nil || rep == nil || len(rep.Findings) != 1 || rep.Findings[0].OpportunityID != id || rep.Fixed {
		t.Fatalf("last drift report: %+v, %v", rep, err)
	}
	stacktest.Quiet(t, s)
	if code, out, errOut := admin(t, conn, "drift"); code != 0 {
		t.Fatalf("drift once the pipeline linked the Opportunity: code %d\n%s\n%s", code, out, errOut)
	}
	page = statusPage(t, s)
	card, _, _ := strings.Cut(page[strings.Index(page, `id="drift-card"`)+1:], "</div>")
	if !strings.Contains(card, `<b class="ok">0</b>`) || strings.Contains(page, `<td class="bad">unlinked</td>`) {
		t.Errorf("after a clean drift run the page still shows drift: %s", card)
	}
}
