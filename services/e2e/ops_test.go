package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// get reads u as the stack's generated viewer (a bearer token).
func get(t *testing.T, s *stack.Stack, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Viewer.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func getJSON(t *testing.T, s *stack.Stack, u string, v any) {
	t.Helper()
	code, body := get(t, s, u)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v\n%s", u, err, body)
	}
}

// signIn logs in on the status page's form as l and returns a browser-like client (cookie jar, no redirects).
func signIn(t *testing.T, s *stack.Stack, l stack.Login) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(s.Status+"/login", url.Values{"user": {l.Name}, "password": {l.Secret}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in as %s: %d", l.Name, resp.StatusCode)
	}
	return c
}

func pageOf(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the page has no form with a CSRF token")
	}
	return m[1]
}

// postForm submits a form as the browser would (same-origin) and returns the status.
func postForm(t *testing.T, c *http.Client, u, csrf string) int {
	t.Helper()
	resp, err := c.PostForm(u, url.Values{"csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sfWrites counts Salesforce writes so far.
func sfWrites(s *stack.Stack) int {
	n := 0
	for k, v := range s.SF.Counts() {
		if strings.Contains(k, "update") || strings.Contains(k, "upsert") || strings.Contains(k, "create") || strings.Contains(k, "insert") {
			n += v
		}
	}
	return n
}

// TestAuditSummaryWrittenBackWithoutLoop: the auditor writes the timeline's summary into the Opportunity's
// Audit field through sf-writer; that write, observed again, changes no mapped field, so nothing is sent to
// Partner Center and no further summary is written: the system goes quiet. An Audit edit by a user is not
// synced either (Audit__c is not a mapped field).
func TestAuditSummaryWrittenBackWithoutLoop(t *testing.T) {
	s := start(t, func(o *stack.Options) {
		o.Vars["COSELL_AUDIT_SUMMARY_INTERVAL"] = "200ms"
		o.Vars["COSELL_AUDIT_SAMPLE_INTERVAL"] = "200ms"
	})
	r, err := s.PC.SellerCreate(stacktest.SellerReferral("Audited deal", 64000))
	if err != nil {
		t.Fatal(err)
	}
	var oppID string
	testkit.Eventually(t, 20*time.Second, "Audit field written", func() (bool, string) {
		opps := stacktest.OpportunitiesFor(s, r.ID)
		if len(opps) != 1 {
			return false, "no opportunity"
		}
		oppID = fmt.Sprint(opps[0][sf.FieldID])
		a := fmt.Sprint(opps[0][sf.FieldAudit])
		return strings.Contains(a, "cosell audit") && strings.Contains(a, contracts.DecisionCreated), a
	})
	stacktest.Quiet(t, s)
	testkit.Eventually(t, 20*time.Second, "no more writes", func() (bool, string) {
		s.SF.ResetCounts()
		s.PC.ResetCounts()
		stacktest.Quiet(t, s)
		return sfWrites(s) == 0 && s.PC.Counts()["referrals.patch"] == 0, fmt.Sprint(s.SF.Counts(), s.PC.Counts())
	})
	// The Audit write's outcome costs the mapper nothing: no decision on the timeline is caused by it.
	tl, err := s.Auditor.Timeline(t.Context(), contracts.LinkIDFor(contracts.PartnerCenter, r.ID))
	if err != nil || len(tl) == 0 {
		t.Fatalf("timeline: %d entries, %v", len(tl), err)
	}
	for _, d := range tl {
		if auditor.IsAuditCommand(d.Cause) {
			t.Errorf("a decision was made on the Audit write %s: %s %s", d.Cause, d.Kind, d.Detail)
		}
	}
	o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
	summary := fmt.Sprint(o[sf.FieldAudit])
	for _, line := range strings.Split(summary, "\n")[1:] {
		for _, k := range []string{" echo", " stale", " no-change"} {
			if strings.Contains(line, "Z"+k) {
				t.Errorf("summary shows a %s entry: %q", k, line)
			}
		}
	}

	// A user edits the Audit field: not mapped, so nothing goes to Partner Center.
	s.PC.ResetCounts()
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldAudit: "edited by a user"}); err != nil {
		t.Fatal(err)
	}
	stacktest.Quiet(t, s)
	for k, n := range s.PC.Counts() {
		if strings.Contains(k, "patch") || strings.Contains(k, "create") {
			t.Errorf("an Audit edit reached Partner Center: %s = %d", k, n)
		}
	}
}

// TestStatusAPIAndPage exercises every endpoint of the status API and the page against a running system,
// including a dead letter re-driven with the page's button.
func TestStatusAPIAndPage(t *testing.T) {
	s := start(t, func(o *stack.Options) {
		o.Vars["COSELL_MAX_DELIVER"] = "3"
		o.Vars["COSELL_AUDIT_SAMPLE_INTERVAL"] = "100ms"
	})
	r, err := s.PC.SellerCreate(stacktest.SellerReferral("API deal", 12000))
	if err != nil {
		t.Fatal(err)
	}
	var oppID string
	testkit.Eventually(t, 20*time.Second, "opportunity", func() (bool, string) {
		opps := stacktest.OpportunitiesFor(s, r.ID)
		if len(opps) == 1 {
			oppID = fmt.Sprint(opps[0][sf.FieldID])
		}
		return len(opps) == 1, ""
	})
	stacktest.Quiet(t, s)

	var st auditor.Status
	getJSON(t, s, s.Status+"/api/status", &st)
	if len(st.Lag) != len(contracts.Consumers()) || st.Links != 1 || st.LinkStates[contracts.LinkLinked] != 1 || st.DeadLetters != 0 {
		t.Errorf("/api/status = %+v", st)
	}
	// Every durable has a stage pulling from it. A pull request is renewed every fetch wait, so look until
	// one reading shows all of them waiting at once.
	testkit.Eventually(t, 10*time.Second, "every consumer has a replica pulling", func() (bool, string) {
		var now auditor.Status
		getJSON(t, s, s.Status+"/api/status", &now)
		for _, l := range now.Lag {
			if l.Waiting == 0 {
				return false, fmt.Sprintf("consumer %s has no pull request waiting: %+v", l.Consumer, l)
			}
		}
		return len(now.Lag) == len(contracts.Consumers()), ""
	})
	var links []auditor.LinkRecord
	getJSON(t, s, s.Status+"/api/links", &links)
	if len(links) != 1 || links[0].ReferralID != r.ID || links[0].OpportunityID != oppID {
		t.Errorf("/api/links = %+v", links)
	}
	for _, id := range []string{r.ID, oppID} {
		var rec auditor.Record
		getJSON(t, s, s.Status+"/api/links?id="+url.QueryEscape(id), &rec)
		if rec.Link == nil || rec.Link.ID != links[0].ID || !strings.Contains(kindsOf(rec.Timeline), contracts.DecisionWritten) {
			t.Errorf("/api/links?id=%s = %+v", id, rec)
		}
		getJSON(t, s, s.Status+"/api/timeline?id="+url.QueryEscape(id), &rec)
		if len(rec.Timeline) == 0 {
			t.Errorf("/api/timeline?id=%s is empty", id)
		}
	}
	if code, _ := get(t, s, s.Status+"/api/links?id=nope"); code != http.StatusNotFound {
		t.Errorf("/api/links?id=nope: %d", code)
	}
	var recent []contracts.Decision
	getJSON(t, s, s.Status+"/api/decisions", &recent)
	if len(recent) == 0 {
		t.Error("/api/decisions is empty")
	}
	var hist []auditor.Sample
	testkit.Eventually(t, 10*time.Second, "history samples", func() (bool, string) {
		getJSON(t, s, s.Status+"/api/history", &hist)
		return len(hist) >= 2, fmt.Sprint(len(hist))
	})

	// Metrics: lag, DLQ depth, external calls, budget, sync latency.
	// The auditor observes the sync latency from the outcomes stream on its own schedule: read until it shows.
	var metrics string
	testkit.Eventually(t, 10*time.Second, "metrics", func() (bool, string) {
		_, metrics = get(t, s, s.Status+"/metrics")
		for _, want := range []string{
			`cosell_consumer_pending_messages{consumer="sf-writer",stage="sf-writer",stream="COSELL_REQUESTED"} 0`,
			"cosell_dead_letter_messages 0",
			`cosell_external_api_request_duration_seconds_bucket{endpoint="composite"`,
			`cosell_api_budget_remaining{system="sf"}`,
			`cosell_sync_latency_seconds_count{to="sf"} 1`,
			`cosell_events_handled_total{consumer="mapper-observed",outcome="ack",stage="mapper"}`,
		} {
			if !strings.Contains(metrics, want) {
				return false, fmt.Sprintf("/metrics lacks %s\n%s", want, grepLines(metrics, "cosell_external|cosell_api|cosell_sync"))
			}
		}
		return true, ""
	})

	calls := grepLines(metrics, "cosell_external_api_requests_total{")
	if !strings.Contains(calls, `status="200",system="pc"`) || !strings.Contains(calls, `status="200",system="sf"`) {
		t.Errorf("external calls not counted for both systems:\n%s", calls)
	}

	// A dead letter, shown by the API and the page, re-driven with the page's button.
	s.SF.FailNextCalls(1 << 20)
	r2, err := s.PC.SellerCreate(stacktest.SellerReferral("API poison", 3000))
	if err != nil {
		t.Fatal(err)
	}
	var dls []auditor.DeadLetterEntry
	testkit.Eventually(t, 30*time.Second, "dead letter listed", func() (bool, string) {
		getJSON(t, s, s.Status+"/api/deadletters", &dls)
		return len(dls) == 1, fmt.Sprint(len(dls))
	})
	var one auditor.DeadLetterEntry
	getJSON(t, s, fmt.Sprintf("%s/api/deadletters/%d", s.Status, dls[0].Seq), &one)
	if one.Stage != contracts.StageSFWriter || one.LinkID == "" || len(one.Data) == 0 || !strings.Contains(one.Reason, "UNKNOWN_EXCEPTION") {
		t.Errorf("/api/deadletters/%d = %+v", dls[0].Seq, one)
	}
	page := pageOf(t, signIn(t, s, s.Operator), s.Status+"/")
	for _, want := range []string{"<svg", "Backlog per consumer", "Throughput per consumer", "Dead letters", fmt.Sprintf(`action="/deadletters/%d/retry"`, one.Seq), "Re-drive", r.ID} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	// Links out (the referral in Partner Center) are fine; nothing is loaded from anywhere.
	if strings.Contains(page, "<script") || strings.Contains(page, "<link") || strings.Contains(page, `src="`) || strings.Contains(page, "url(") {
		t.Error("status page loads scripts or external assets")
	}
	code, linkPage := get(t, s, s.Status+"/link?id="+url.QueryEscape(r2.ID))
	if code != http.StatusOK || !strings.Contains(linkPage, contracts.DecisionDeadLetter) {
		t.Errorf("/link?id=%s: %d\n%s", r2.ID, code, linkPage)
	}
	s.SF.ResetFaults()
	// The viewer sees the button's place but cannot re-drive, by the form or the API.
	viewer := signIn(t, s, s.Viewer)
	vpage := pageOf(t, viewer, s.Status+"/")
	if code := postForm(t, viewer, fmt.Sprintf("%s/deadletters/%d/retry", s.Status, one.Seq), csrfOf(t, vpage)); code != http.StatusForbidden {
		t.Errorf("viewer's re-drive: %d, want 403", code)
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, fmt.Sprintf("%s/api/deadletters/%d/retry", s.Status, one.Seq), nil)
	req.Header.Set("Authorization", "Bearer "+s.Viewer.Secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer's re-drive through the API: %v %v", err, resp)
	}
	// Without the page's CSRF token even the operator's browser is refused; with it, the re-drive happens.
	op := signIn(t, s, s.Operator)
	if code := postForm(t, op, fmt.Sprintf("%s/deadletters/%d/retry", s.Status, one.Seq), ""); code != http.StatusForbidden {
		t.Errorf("operator's re-drive without the CSRF token: %d, want 403", code)
	}
	if code := postForm(t, op, fmt.Sprintf("%s/deadletters/%d/retry", s.Status, one.Seq), csrfOf(t, pageOf(t, op, s.Status+"/"))); code != http.StatusSeeOther {
		t.Errorf("operator's re-drive button: %d", code)
	}
	testkit.Eventually(t, 20*time.Second, "re-driven create carried out", func() (bool, string) {
		return len(stacktest.OpportunitiesFor(s, r2.ID)) == 1, ""
	})
	getJSON(t, s, s.Status+"/api/deadletters", &dls)
	if len(dls) != 0 {
		t.Errorf("dead letters after the re-drive: %+v", dls)
	}
	var tl auditor.Record
	getJSON(t, s, s.Status+"/api/timeline?id="+url.QueryEscape(r2.ID), &tl)
	if !slices.ContainsFunc(tl.Timeline, func(d contracts.Decision) bool {
		return d.Kind == contracts.DecisionRedriven && strings.Contains(d.Detail, "by "+s.Operator.Name)
	}) {
		t.Errorf("the timeline does not say who re-drove: %+v", tl.Timeline)
	}
	req, _ = http.NewRequestWithContext(context.Background(), http.MethodDelete, s.Status+"/api/deadletters/999", nil)
	req.Header.Set("Authorization", "Bearer "+s.Operator.Secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE of an absent dead letter: %v %v", err, resp)
	}
}

func kindsOf(tl []contracts.Decision) string {
	var k []string
	for _, d := range tl {
		k = append(k, d.Kind)
	}
	return strings.Join(k, ",")
}

func grepLines(text, any string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, w := range strings.Split(any, "|") {
			if strings.Contains(l, w) && !strings.HasPrefix(l, "#") && !strings.Contains(l, "_bucket") {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestCommandWaitingForItsWriteIsOnTheTimeline: a decision reaches the audit trail with its write's outcome,
// so while Salesforce refuses every call the change must still be visible, on the link's timeline (the
// API and the record's page) as in flight, and leave it once written.
func TestCommandWaitingForItsWriteIsOnTheTimeline(t *testing.T) {
	s := start(t, nil)
	r, oppID := linkedReferral(t, s, "Fabrikam in flight")
	s.SF.FailNextCalls(1 << 20)
	v := 31337.0
	if _, err := s.PC.SellerUpdate(r.ID, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
		t.Fatal(err)
	}
	inFlight := func(tl []contracts.Decision) int {
		n := 0
		for _, d := range tl {
			if strings.Contains(d.Detail, auditor.InFlightNote) {
				n++
			}
		}
		return n
	}
	testkit.Eventually(t, 20*time.Second, "the waiting change on the timeline", func() (bool, string) {
		rec, err := s.Auditor.Lookup(context.Background(), r.ID)
		if err != nil {
			return false, err.Error()
		}
		for _, d := range rec.Timeline {
			if strings.Contains(d.Detail, auditor.InFlightNote) && d.Kind == contracts.DecisionApplied && slices.Contains(d.Fields, "dealValue") {
				return true, ""
			}
		}
		return false, fmt.Sprint(rec.Timeline)
	})
	code, page := get(t, s, s.Status+"/link?id="+url.QueryEscape(r.ID))
	if code != http.StatusOK || !strings.Contains(page, auditor.InFlightNote) {
		t.Errorf("/link?id=%s: %d, the waiting change not shown\n%s", r.ID, code, page)
	}
	s.SF.FailNextCalls(0)
	testkit.Eventually(t, 60*time.Second, "the change written and no longer in flight", func() (bool, string) {
		o, _ := s.SF.Get(sf.ObjectOpportunity, oppID)
		rec, err := s.Auditor.Lookup(context.Background(), r.ID)
		if err != nil {
			return false, err.Error()
		}
		return o[sf.FieldAmount] == v && inFlight(rec.Timeline) == 0, fmt.Sprintf("amount %v, in flight %d: %v", o[sf.FieldAmount], inFlight(rec.Timeline), rec.Timeline)
	})
}
