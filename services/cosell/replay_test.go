package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// TestReplayAfterOutageConverges: Salesforce is down longer than the retry budget, so a create command is
// parked; after the outage `cosell replay` re-drives sf-writer from before it all. The parked create is
// carried out once, and the records already converged cost no Salesforce write at all.
func TestReplayAfterOutageConverges(t *testing.T) {
	t.Parallel()
	s, conn := opsStack(t, nil)
	since := time.Now().Add(-time.Second).UTC()
	_, convergedOpp := referralSynced(t, s, "Converged before the outage", 5000)
	stacktest.Quiet(t, s)
	before, _ := s.SF.Get(sf.ObjectOpportunity, convergedOpp)

	// The outage.
	s.SF.FailNextCalls(1 << 20)
	lost, err := s.PC.SellerCreate(stacktest.SellerReferral("Created during the outage", 7000))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "create parked by the outage", func() (bool, string) {
		n := len(dlqList(t, conn))
		return n == 1, fmt.Sprintf("%d parked", n)
	})
	s.SF.ResetFaults()
	s.SF.ResetCounts()

	code, out, errOut := admin(t, conn, "replay", "--stream", contracts.StreamRequested, "--stage", contracts.StageSFWriter,
		"--since", since.Format(time.RFC3339Nano))
	if code != 0 {
		t.Fatalf("replay: code %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "[##############################]") {
		t.Errorf("no finished progress bar on stderr: %q", errOut)
	}
	m := regexp.MustCompile(`replayed (\d+) message\(s\) of COSELL_REQUESTED through sf-writer \(from seq \d+\): applied (\d+), skipped as already converged (\d+), failed (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("replay summary not found:\n%s", out)
	}
	replayed, _ := strconv.Atoi(m[1])
	applied, _ := strconv.Atoi(m[2])
	skipped, _ := strconv.Atoi(m[3])
	failed, _ := strconv.Atoi(m[4])
	if applied < 1 || skipped < 1 || failed != 0 || replayed != applied+skipped {
		t.Errorf("summary replayed %d applied %d skipped %d failed %d; want the parked create applied, the converged skipped", replayed, applied, skipped, failed)
	}
	testkit.Eventually(t, 20*time.Second, "parked create carried out by the replay", func() (bool, string) {
		n := len(stacktest.OpportunitiesFor(s, lost.ID))
		return n == 1, fmt.Sprintf("%d opportunities", n)
	})
	stacktest.Quiet(t, s)
	if n := len(stacktest.OpportunitiesFor(s, lost.ID)); n != 1 {
		t.Errorf("%d opportunities for the referral created during the outage", n)
	}
	after, _ := s.SF.Get(sf.ObjectOpportunity, convergedOpp)
	if before[sf.FieldSystemModstamp] != after[sf.FieldSystemModstamp] {
		t.Errorf("the converged Opportunity was written by the replay: SystemModstamp %v → %v", before[sf.FieldSystemModstamp], after[sf.FieldSystemModstamp])
	}
	c := s.SF.Counts() // sf-writer sends a create's upsert on its own or in a Composite with its new Account
	if n := c["collections.upsert"] + c["composite.collections.upsert"] + c["upsert"]; n != 1 {
		t.Errorf("Opportunity upserts during the replay = %d, want exactly the one parked create (counts %v)", n, s.SF.Counts())
	}

	// --from-seq works too, and a second replay finds everything converged.
	code, out, errOut = admin(t, conn, "replay", "--stream", contracts.StreamRequested, "--stage", contracts.StageSFWriter, "--from-seq", "1")
	t.Log(out)
	if code != 0 || !strings.Contains(out, "applied 0,") || !strings.Contains(out, "failed 0") {
		t.Errorf("second replay: code %d\n%s\n%s", code, out, errOut)
	}
}

// TestReplayOfOutcomesPastTheDuplicateWindowChangesNothing (issue 13, defect 6): once the duplicate window
// has passed, the server no longer drops a command published again, so replaying the outcomes stream
// through the mapper must decide nothing new: no write-back commands (a referral's link-back, a ✖ status
// long since cleared), no Salesforce or Partner Center write, no new timeline entry, the link as it was,
// and a summary that counts nothing as applied.
func TestReplayOfOutcomesPastTheDuplicateWindowChangesNothing(t *testing.T) {
	t.Parallel()
	const window = 500 * time.Millisecond
	s, conn := opsStack(t, func(o *stack.Options) { o.Vars["COSELL_DUPLICATE_WINDOW"] = window.String() })
	ctx := context.Background()
	// Microsoft-originated: an Opportunity create; accepted; a refused patch (✖), then fixed (✔ again).
	r, fromPC := referralSynced(t, s, "Replayed from Microsoft", 4000)
	stacktest.Quiet(t, s)
	if err := s.SF.Update(sf.ObjectOpportunity, fromPC, map[string]any{sf.FieldStageName: "Qualification"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "referral accepted", func() (bool, string) {
		got, _ := s.PC.Get(r.ID)
		return got.Status == pc.StatusActive, got.Status
	})
	stacktest.Quiet(t, s)
	if err := s.SF.Update(sf.ObjectOpportunity, fromPC, map[string]any{sf.FieldAmount: -1.0}); err != nil {
		t.Fatal(err)
	}
	status := func(id string) string {
		o, _ := s.SF.Get(sf.ObjectOpportunity, id)
		return fmt.Sprint(o[sf.FieldSyncStatus])
	}
	testkit.Eventually(t, 20*time.Second, "refusal shown", func() (bool, string) { return strings.HasPrefix(status(fromPC), "✖"), status(fromPC) })
	stacktest.Quiet(t, s)
	if err := s.SF.Update(sf.ObjectOpportunity, fromPC, map[string]any{sf.FieldAmount: 4500.0}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "in step again", func() (bool, string) { return status(fromPC) == "✔", status(fromPC) })
	// Partner-originated: a referral create and its link-back.
	acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": "Replayed seller GmbH", "BillingCountry": "DE", "BillingPostalCode": "10115"})
	if err != nil {
		t.Fatal(err)
	}
	fromSF, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{"Name": "Replayed seller deal", "AccountId": acc, "Amount": 3000.0,
		"CloseDate": "2027-03-31", "StageName": "Qualification", sf.FieldSyncWithPartnerCenter: true})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "referral linked back", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, fromSF)
		return o[sf.FieldReferralIdentifier] != nil && status(fromSF) == "✔", fmt.Sprint(o[sf.FieldReferralIdentifier])
	})
	stacktest.Quiet(t, s)

	before := map[string]int{}
	links := map[string]contracts.Link{}
	for _, id := range []string{fromPC, fromSF} {
		rec, err := s.Auditor.Lookup(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		before[id] = len(rec.Timeline)
		links[id] = rec.Link.Link
	}
	passed := time.Now().Add(2 * window)
	testkit.Eventually(t, 10*time.Second, "the duplicate window passed", func() (bool, string) { return time.Now().After(passed), "" })
	s.SF.ResetCounts()
	s.PC.ResetCounts()

	code, out, errOut := admin(t, conn, "replay", "--stream", contracts.StreamOutcomes, "--from-seq", "1")
	if code != 0 {
		t.Fatalf("replay: code %d\n%s\n%s", code, out, errOut)
	}
	m := regexp.MustCompile(`replayed (\d+) message\(s\) of COSELL_OUTCOMES through mapper-outcomes \(from seq 1\), auditor-outcomes \(from seq 1\): applied (\d+), skipped as already converged (\d+), failed (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("replay summary not found:\n%s", out)
	}
	if m[1] == "0" || m[2] != "0" || m[4] != "0" || m[1] != m[3] {
		t.Errorf("summary %q: want every replayed outcome skipped, nothing applied", m[0])
	}
	stacktest.Quiet(t, s)
	if sf, p := s.SF.Counts(), s.PC.Counts(); writesIn(sf) != 0 || p["referrals.patch"]+p["referrals.create"] != 0 {
		t.Errorf("the replay wrote: Salesforce %v, Partner Center %v", sf, p)
	}
	for _, id := range []string{fromPC, fromSF} {
		rec, err := s.Auditor.Lookup(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Timeline) != before[id] {
			t.Errorf("%s: the replay added %d timeline entries: %s", id, len(rec.Timeline)-before[id], kinds(rec.Timeline[before[id]:]))
		}
		if rec.Link.Status != links[id].Status || rec.Link.LastError != links[id].LastError || rec.Link.State != links[id].State {
			t.Errorf("%s: the replay changed the link: status %q → %q, error %q → %q", id, links[id].Status, rec.Link.Status, links[id].LastError, rec.Link.LastError)
		}
	}
	if status(fromPC) != "✔" {
		t.Errorf("sync status after the replay = %q", status(fromPC))
	}
}

// writesIn counts the Salesforce emulator's write calls among its call counts.
func writesIn(counts map[string]int) int {
	n := 0
	for k, v := range counts {
		if strings.Contains(k, "update") || strings.Contains(k, "upsert") || strings.Contains(k, "create") || strings.Contains(k, "insert") {
			n += v
		}
	}
	return n
}
