package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// TestFailedStatusNamesACommandThatWorks: a change Partner Center refuses shows on the Opportunity as
// "✖ <reason> (cosell <command>)" and a ✖ at the end of its Name (issue 13, defect 4); the command the
// status names, run as written, shows the failure with its reason. Not parallel: `links get` reads
// COSELL_NATS_URL from the environment, which this test sets.
func TestFailedStatusNamesACommandThatWorks(t *testing.T) {
	s, _ := opsStack(t, nil)
	r, oppID := referralSynced(t, s, "Refused by Partner Center", 9000)
	testkit.Eventually(t, 20*time.Second, "the Opportunity marked ✔", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		return o[sf.FieldName] == r.Name+" ✔", fmt.Sprint(o[sf.FieldName])
	})
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldStageName: "Qualification"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "referral accepted", func() (bool, string) {
		got, _ := s.PC.Get(r.ID)
		return got.Status == pc.StatusActive, got.Status
	})
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldAmount: -500.0}); err != nil {
		t.Fatal(err)
	}
	var status string
	testkit.Eventually(t, 20*time.Second, "the refusal shown on the Opportunity", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		status = fmt.Sprint(o[sf.FieldSyncStatus])
		return strings.HasPrefix(status, "✖") && o[sf.FieldName] == r.Name+" ✖", fmt.Sprintf("%s / %v", status, o[sf.FieldName])
	})
	m := regexp.MustCompile(`^✖ (.+) \(cosell ([^()]+)\)$`).FindStringSubmatch(status)
	if m == nil || !strings.Contains(m[1], "deal value") {
		t.Fatalf("sync status %q: want ✖, the reason and (cosell <command>)", status)
	}

	t.Setenv("COSELL_NATS_URL", s.NATS.ClientURL())
	code, out, errOut := cli(t, strings.Fields(m[2])...)
	if code != 0 || !regexp.MustCompile(`LAST ERROR +pc update: .*deal value`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^\S+ \S+ +pc-writer +failed .*deal value`).MatchString(out) {
		t.Fatalf("cosell %s: code %d, want the link's error and the failed entry\n%s%s", m[2], code, out, errOut)
	}
	code, out, errOut = cli(t, append(strings.Fields(m[2]), "-o", "json")...)
	if code != 0 {
		t.Fatalf("cosell %s -o json: code %d\n%s", m[2], code, errOut)
	}
	var got struct {
		Link     contracts.Link       `json:"link"`
		Timeline []contracts.Decision `json:"timeline"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("cosell %s: %v\n%s", m[2], err, out)
	}
	if got.Link.OpportunityID != oppID || !strings.Contains(got.Link.LastError, "deal value") {
		t.Errorf("the command shows link %+v, want the failing one with its error", got.Link)
	}
	failed := false
	for _, d := range got.Timeline {
		failed = failed || (d.Kind == contracts.DecisionFailed && strings.Contains(d.Detail, "deal value"))
	}
	if !failed {
		t.Errorf("the timeline the command shows has no failed entry with the reason: %s", kinds(got.Timeline))
	}
}
