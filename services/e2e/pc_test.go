package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// streamCount returns how many messages a stream holds on subjects matching filter.
func streamCount(t *testing.T, s *stack.Stack, stream, filter string) int {
	t.Helper()
	ctx := context.Background()
	bus, err := s.Connect(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	return bustest.Count(t, bus, stream, filter)
}

func postHook(t *testing.T, url string, body []byte, h http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// linkedReferral makes a Microsoft referral, waits for its Opportunity and accepts it from Salesforce.
func linkedReferral(t *testing.T, s *stack.Stack, name string) (pc.Referral, string) {
	t.Helper()
	r, err := s.PC.SellerCreate(stacktest.SellerReferral(name, 20000))
	if err != nil {
		t.Fatal(err)
	}
	oppID := stacktest.OneOpportunityFor(t, s, r.ID, 20*time.Second)
	stacktest.Quiet(t, s)
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldStageName: "Qualification"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "referral accepted", func() (bool, string) {
		got, _ := s.PC.Get(r.ID)
		return got.Status == pc.StatusActive, got.Status
	})
	stacktest.Quiet(t, s)
	return r, oppID
}

// TestForgedAndReplayedNotifications: a notification whose body does not match its signature is refused
// with 401 and publishes nothing; genuine old notifications delivered again publish nothing new, cost no
// Partner Center read and no write on either side.
func TestForgedAndReplayedNotifications(t *testing.T) {
	s := start(t, nil)
	r, oppID := linkedReferral(t, s, "Proseware analytics")
	v := 25000.0
	if _, err := s.PC.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "amount from Partner Center", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldAmount] == 25000.0, fmt.Sprint(o[sf.FieldAmount])
	})
	stacktest.Quiet(t, s)
	observed := streamCount(t, s, contracts.StreamObserved, contracts.SubjectReferralObserved+".>")
	s.PC.ResetCounts()
	s.SF.ResetCounts()

	delivered := s.PC.Delivered()
	if len(delivered) < 3 {
		t.Fatalf("%d deliveries so far", len(delivered))
	}
	forged := bytes.Replace(delivered[0].Body, []byte(`"referral-created"`), []byte(`"referral-updated"`), 1)
	if bytes.Equal(forged, delivered[0].Body) {
		t.Fatalf("could not forge %s", delivered[0].Body)
	}
	if code := postHook(t, s.Webhook, forged, delivered[0].Header); code != http.StatusUnauthorized {
		t.Errorf("forged notification answered %d, want 401", code)
	}
	for _, d := range delivered {
		if code := postHook(t, s.Webhook, d.Body, d.Header); code != http.StatusOK {
			t.Errorf("replayed %s answered %d", d.Notification.EventName, code)
		}
	}
	stacktest.Quiet(t, s)
	if n := streamCount(t, s, contracts.StreamObserved, contracts.SubjectReferralObserved+".>"); n != observed {
		t.Errorf("snapshots %d → %d after a forged and %d replayed notifications", observed, n, len(delivered))
	}
	if c := s.PC.Counts(); c["referrals.get"] != 0 || c["referrals.patch"] != 0 {
		t.Errorf("Partner Center calls for replays: %v", c)
	}
	for k, n := range s.SF.Counts() {
		if (strings.Contains(k, "update") || strings.Contains(k, "upsert") || strings.Contains(k, "create")) && n > 0 {
			t.Errorf("a replay wrote to Salesforce: %s = %d", k, n)
		}
	}
}

// TestDroppedWebhookHealedByPoll: Partner Center never delivers a notification; the reconcile poll finds
// the change within one interval and it reaches Salesforce.
func TestDroppedWebhookHealedByPoll(t *testing.T) {
	s := start(t, func(o *stack.Options) { o.Vars["COSELL_PC_POLL_INTERVAL"] = "300ms" })
	r, oppID := linkedReferral(t, s, "Woodgrove payments")
	s.PC.SetFaults(pcemu.Faults{DropWebhooks: 1})
	v := 31000.0
	if _, err := s.PC.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the dropped change reaches Salesforce", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldAmount] == 31000.0, fmt.Sprint(o[sf.FieldAmount], s.PC.Counts())
	})
	if n := s.PC.Counts()["webhooks.dropped"]; n != 1 {
		t.Errorf("dropped = %d, want 1", n)
	}
}

// TestPatchRaceWithMicrosoftEdit: Microsoft edits the referral while our patch is in flight. The patch is
// refused (412), the mapper decides again on the fresh referral: Microsoft's edit survives and reaches
// Salesforce, and our change still lands.
func TestPatchRaceWithMicrosoftEdit(t *testing.T) {
	s := start(t, nil)
	r, oppID := linkedReferral(t, s, "Fourth Coffee stores")
	msft := 64000.0
	raced := make(chan struct{})
	s.PC.BeforeNextPatch(func(id string) {
		defer close(raced)
		if _, err := s.PC.SellerUpdate(id, pc.Referral{Details: &pc.Details{DealValue: &msft, Notes: "Microsoft: customer wants 3 regions"}}); err != nil {
			t.Error(err)
		}
	})
	s.PC.ResetCounts()
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldCloseDate: "2027-06-30"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "both changes on both sides", func() (bool, string) {
		got, err := s.PC.Get(r.ID)
		if err != nil {
			return false, err.Error()
		}
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return *got.Details.DealValue == msft && strings.HasPrefix(got.Details.ClosingDateTime, "2027-06-30") &&
				o[sf.FieldAmount] == msft && o[sf.FieldCloseDate] == "2027-06-30" &&
				o[sf.FieldDescription] == "Microsoft: customer wants 3 regions",
			fmt.Sprintf("pc %v %s; sf %v %v", *got.Details.DealValue, got.Details.ClosingDateTime, o[sf.FieldAmount], o[sf.FieldCloseDate])
	})
	<-raced
	stacktest.Quiet(t, s)
	got, _ := s.PC.Get(r.ID)
	if *got.Details.DealValue != msft || got.Details.Notes != "Microsoft: customer wants 3 regions" {
		t.Errorf("Microsoft's edit was overwritten: %+v", got.Details)
	}
	if n := s.PC.Counts()["referrals.patch"]; n != 2 {
		t.Errorf("referral patches = %d, want 2 (the refused one and the one decided again)", n)
	}
	o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
	if fmt.Sprint(o[sf.FieldSyncStatus]) != "✔" {
		t.Errorf("sync status = %v: a 412 is not a failure", o[sf.FieldSyncStatus])
	}
}

// TestRefusedPatchIsShownNotRetried: a change Partner Center refuses (here a negative deal value) is one
// call, a failed outcome in the audit trail and "✖ <reason>" on the Opportunity, not a retry loop.
func TestRefusedPatchIsShownNotRetried(t *testing.T) {
	s := start(t, nil)
	r, oppID := linkedReferral(t, s, "Alpine Ski House")
	s.PC.ResetCounts()
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldAmount: -500.0}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the refusal shown on the Opportunity", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		st := fmt.Sprint(o[sf.FieldSyncStatus])
		return strings.HasPrefix(st, "✖") && strings.Contains(st, "deal value"), st
	})
	stacktest.Quiet(t, s)
	if n := s.PC.Counts()["referrals.patch"]; n != 1 {
		t.Errorf("referral patches = %d, want 1: a refusal is not retried", n)
	}
	if got, _ := s.PC.Get(r.ID); *got.Details.DealValue != 20000 {
		t.Errorf("deal value = %v", *got.Details.DealValue)
	}
	if n := streamCount(t, s, contracts.StreamOutcomes, contracts.SubjectReferralFailed+".>"); n != 1 {
		t.Errorf("%d failed outcomes, want 1", n)
	}
	if n := streamCount(t, s, contracts.StreamDeadLetter, ">"); n != 1 {
		t.Errorf("%d dead letters, want the refused command parked once", n)
	}
}

// Test429StormSurvived: Partner Center throttles a burst of calls with 429 + Retry-After while work flows
// both ways; everything arrives exactly once and nothing is dead-lettered.
func Test429StormSurvived(t *testing.T) {
	s := start(t, nil)
	s.PC.SetFaults(pcemu.Faults{Throttle429: 6})
	r, err := s.PC.SellerCreate(stacktest.SellerReferral("Relecloud storm", 11000))
	if err != nil {
		t.Fatal(err)
	}
	var opps []string
	for i := range 3 {
		opps = append(opps, newOpportunity(t, s, fmt.Sprintf("Storm %d", i), float64(1000*(i+1))))
	}
	testkit.Eventually(t, 40*time.Second, "every record on the other side", func() (bool, string) {
		done := len(stacktest.OpportunitiesFor(s, r.ID))
		for _, id := range opps {
			o, _ := s.SF.Get(sf.ObjectOpportunity, id)
			if o[sf.FieldReferralIdentifier] != nil {
				done++
			}
		}
		return done == 4, fmt.Sprintf("%d of 4; counts %v", done, s.PC.Counts())
	})
	stacktest.Quiet(t, s)
	if n := s.PC.Counts()["throttled"]; n != 6 {
		t.Errorf("throttled = %d, want the whole storm of 6", n)
	}
	if n := len(stacktest.OpportunitiesFor(s, r.ID)); n != 1 {
		t.Errorf("%d opportunities for the referral", n)
	}
	for _, id := range opps {
		if n := len(stacktest.ReferralsFor(s, id)); n != 1 {
			t.Errorf("%d referrals for opportunity %s", n, id)
		}
	}
	if n := streamCount(t, s, contracts.StreamDeadLetter, ">"); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

// TestOwnCreatesCostOneCallEach: an Opportunity synced to Partner Center costs one Partner Center call,
// the create, whenever Partner Center delivers the referral-created webhook about it: before it answers
// the create, racing the answer, or after. pc-ingest holds the webhook of a create under way until
// pc-writer has published the referral the create returned, and reads nothing.
func TestOwnCreatesCostOneCallEach(t *testing.T) {
	s := start(t, nil)
	const each = 3
	for _, timing := range []pcemu.WebhookTiming{pcemu.WebhookBeforeAnswer, pcemu.WebhookWithAnswer, pcemu.WebhookAfterAnswer} {
		name := string(timing)
		if name == "" {
			name = "with"
		}
		t.Run(name+" the answer", func(t *testing.T) {
			stacktest.Quiet(t, s)
			s.PC.SetWebhookTiming(timing)
			s.PC.ResetCounts()
			var opps []string
			for i := range each {
				opps = append(opps, newOpportunity(t, s, fmt.Sprintf("Fabrikam %s %d", name, i), 1000+float64(i)))
			}
			for _, id := range opps {
				testkit.Eventually(t, 30*time.Second, "referral linked", func() (bool, string) {
					o, _ := s.SF.Get(sf.ObjectOpportunity, id)
					return o[sf.FieldReferralIdentifier] != nil, fmt.Sprint(o[sf.FieldReferralIdentifier])
				})
			}
			stacktest.Quiet(t, s)
			c := s.PC.Counts()
			if c["referrals.create"] != each || c["referrals.get"] != 0 || c["webhooks.delivered"] < each {
				t.Errorf("calls %v: %d creates, no read, the %d webhooks delivered", c, each, each)
			}
			for _, id := range opps {
				if n := len(stacktest.ReferralsFor(s, id)); n != 1 {
					t.Errorf("%d referrals for %s", n, id)
				}
			}
		})
	}
}
