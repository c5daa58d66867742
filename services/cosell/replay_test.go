package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
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
	if n := s.SF.Counts()["collections.upsert"] + s.SF.Counts()["upsert"]; n != 1 {
		t.Errorf("Opportunity upserts during the replay = %d, want exactly the one parked create (counts %v)", n, s.SF.Counts())
	}

	// --from-seq works too, and a second replay finds everything converged.
	code, out, errOut = admin(t, conn, "replay", "--stream", contracts.StreamRequested, "--stage", contracts.StageSFWriter, "--from-seq", "1")
	t.Log(out)
	if code != 0 || !strings.Contains(out, "applied 0,") || !strings.Contains(out, "failed 0") {
		t.Errorf("second replay: code %d\n%s\n%s", code, out, errOut)
	}
}
