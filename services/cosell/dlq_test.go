package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

type dlqEntry struct {
	Seq    uint64 `json:"seq"`
	LinkID string `json:"linkId"`
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
}

func dlqList(t *testing.T, conn []string) []dlqEntry {
	t.Helper()
	code, out, errOut := admin(t, conn, "dlq", "ls", "-o", "json")
	if code != 0 {
		t.Fatalf("dlq ls: code %d: %s", code, errOut)
	}
	var l []dlqEntry
	if err := json.Unmarshal([]byte(out), &l); err != nil || l == nil {
		t.Fatalf("dlq ls -o json is not a list (an empty one is []): %v\n%s", err, out)
	}
	return l
}

// hintIn finds the command a timeline entry suggests.
var hintIn = regexp.MustCompile(`\(cosell ([a-z]+ [a-z]+(?: [0-9]+)?)\)`)

// byOf is who the last decision of kind on tl was made by.
func byOf(tl []contracts.Decision, kind string) string {
	by := ""
	for _, d := range tl {
		if d.Kind == kind {
			by = d.By
		}
	}
	return by
}

func kinds(tl []contracts.Decision) string {
	var k []string
	for _, d := range tl {
		k = append(k, d.Kind)
	}
	return strings.Join(k, ",")
}

// TestPoisonIsParkedThenRedriven: Salesforce fails every call for longer than the retry budget, so the
// create command is dead-lettered (and shows on the link's timeline); once Salesforce is back, `cosell dlq
// retry` re-drives it and the Opportunity is created once. A second parked command is purged.
func TestPoisonIsParkedThenRedriven(t *testing.T) {
	t.Parallel()
	s, conn := opsStack(t, nil)
	s.SF.FailNextCalls(1 << 20)
	r1, err := s.PC.SellerCreate(stacktest.SellerReferral("Poisoned one", 1000))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.PC.SellerCreate(stacktest.SellerReferral("Poisoned two", 2000))
	if err != nil {
		t.Fatal(err)
	}
	var parked []dlqEntry
	testkit.Eventually(t, 30*time.Second, "two create commands dead-lettered", func() (bool, string) {
		parked = dlqList(t, conn)
		return len(parked) == 2, fmt.Sprintf("%d parked", len(parked))
	})
	byLink := map[string]dlqEntry{}
	for _, d := range parked {
		if d.Stage != contracts.StageSFWriter || !strings.Contains(d.Reason, "UNKNOWN_EXCEPTION") {
			t.Errorf("dead letter %+v: want sf-writer with the upstream error", d)
		}
		byLink[d.LinkID] = d
	}
	ctx := context.Background()
	link1, err := s.Auditor.Link(ctx, r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	link2, err := s.Auditor.Link(ctx, r2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := byLink[link1.ID]; !ok {
		t.Fatalf("no dead letter names link %s: %+v", link1.ID, parked)
	}
	var hint []string
	testkit.Eventually(t, 10*time.Second, "dead letter on the timeline", func() (bool, string) {
		rec, err := s.Auditor.Lookup(ctx, r1.ID)
		if err != nil {
			return false, err.Error()
		}
		for _, d := range rec.Timeline {
			if d.Kind == contracts.DecisionDeadLetter && strings.Contains(d.Detail, "UNKNOWN_EXCEPTION") {
				m := hintIn.FindStringSubmatch(d.Detail)
				if m == nil {
					t.Fatalf("the dead-letter entry has no cosell command to run: %s", d.Detail)
				}
				hint = strings.Fields(m[1])
				return true, ""
			}
		}
		return false, kinds(rec.Timeline)
	})

	// The hint the timeline (and so the status page and Audit__c) gives is a command that works.
	code, out, errOut := admin(t, conn, hint[0], hint[1:]...)
	if code != 0 || !strings.Contains(out, "subject cosell.sf.opportunity.requested.") || !strings.Contains(out, `"op": "create"`) {
		t.Errorf("dlq show: code %d %s\n%s", code, errOut, out)
	}
	code, out, errOut = admin(t, conn, hint[0], append(hint[1:], "-o", "json")...)
	if code != 0 || !strings.Contains(out, `"subject": "cosell.sf.opportunity.requested.`) || !strings.Contains(out, `"op": "create"`) {
		t.Errorf("dlq show -o json: code %d %s\n%s", code, errOut, out)
	}
	code, out, _ = admin(t, conn, "dlq", "ls")
	if code != 0 || !strings.Contains(out, "SEQ") || !strings.Contains(out, link1.ID) {
		t.Errorf("dlq ls:\n%s", out)
	}
	if len(stacktest.OpportunitiesFor(s, r1.ID)) != 0 {
		t.Fatal("an opportunity exists although Salesforce refused every call")
	}

	// The cause is fixed: Salesforce answers again. Re-drive the first, purge the second.
	s.SF.ResetFaults()
	code, out, errOut = admin(t, conn, "dlq", "retry", fmt.Sprint(byLink[link1.ID].Seq))
	if code != 0 || !strings.Contains(out, "1 re-driven, 0 failed") {
		t.Fatalf("dlq retry: code %d %s\n%s", code, errOut, out)
	}
	testkit.Eventually(t, 20*time.Second, "re-driven create carried out", func() (bool, string) {
		n := len(stacktest.OpportunitiesFor(s, r1.ID))
		return n == 1, fmt.Sprintf("%d opportunities", n)
	})
	code, out, _ = admin(t, conn, "dlq", "purge", fmt.Sprint(byLink[link2.ID].Seq), "-o", "json")
	if code != 0 || !strings.Contains(out, `"purged": 1`) {
		t.Errorf("dlq purge -o json: code %d\n%s", code, out)
	}
	if left := dlqList(t, conn); len(left) != 0 {
		t.Errorf("dead letters left: %+v", left)
	}
	stacktest.Quiet(t, s)
	if n := len(stacktest.OpportunitiesFor(s, r1.ID)); n != 1 {
		t.Errorf("%d opportunities for the re-driven referral", n)
	}
	rec, err := s.Auditor.Lookup(ctx, r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	k := kinds(rec.Timeline)
	if !strings.Contains(k, contracts.DecisionDeadLetter) || !strings.Contains(k, contracts.DecisionRedriven) || !strings.Contains(k, contracts.DecisionWritten) {
		t.Errorf("timeline of %s = %s; want dead-letter, re-driven and written", r1.ID, k)
	}
	if rec.Link == nil || rec.Link.State != contracts.LinkLinked {
		t.Errorf("link after re-drive: %+v", rec.Link)
	}
	// Both operator actions are on their link's timeline with who did them (the CLI's user).
	me := auditor.CLIOperator().String()
	if by := byOf(rec.Timeline, contracts.DecisionRedriven); by != me {
		t.Errorf("the re-drive is audited as by %q, want %q", by, me)
	}
	purged, err := s.Auditor.Timeline(ctx, link2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if by := byOf(purged, contracts.DecisionPurged); by != me {
		t.Errorf("the purge is audited as by %q, want %q; timeline %s", by, me, kinds(purged))
	}
	if code, out, errOut := admin(t, conn, "dlq", "retry", "99999", "-o", "json"); code != 1 || !strings.Contains(errOut, auditor.ErrNoDeadLetter.Error()) ||
		!strings.Contains(out, `"redriven": []`) || !strings.Contains(out, `"seq": 99999`) {
		t.Errorf("retry of an unknown sequence: code %d %s\n%s", code, errOut, out)
	}
}
