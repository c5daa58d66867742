package sfemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

type compositeOut struct {
	CompositeResponse []struct {
		Body           json.RawMessage   `json:"body"`
		HTTPHeaders    map[string]string `json:"httpHeaders"`
		HTTPStatusCode int               `json:"httpStatusCode"`
		ReferenceID    string            `json:"referenceId"`
	} `json:"compositeResponse"`
}

func composite(t *testing.T, r response) compositeOut {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("composite: status %d: %s", r.status, r.body)
	}
	var out compositeOut
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatalf("composite body: %v: %s", err, r.body)
	}
	return out
}

func TestCompositeReferencesAndAllOrNone(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	tok := login(t, srv)
	used0, _ := e.APIUsage()

	ok := do(t, srv, tok, http.MethodPost, "/composite", `{"allOrNone":true,"compositeRequest":[
	 {"method":"POST","url":"/services/data/v62.0/sobjects/Account","referenceId":"acc","body":{"Name":"Contoso"}},
	 {"method":"POST","url":"/services/data/v62.0/sobjects/Opportunity","referenceId":"opp",
	  "body":{"Name":"Deal","StageName":"Prospecting","CloseDate":"2027-01-31","AccountId":"@{acc.id}"}},
	 {"method":"GET","url":"/services/data/v62.0/query/?q=SELECT+Id,Account.Name+FROM+Opportunity+WHERE+Id='@{opp.id}'","referenceId":"q"},
	 {"method":"PATCH","url":"/services/data/v62.0/sobjects/Opportunity/@{q.records[0].Id}","referenceId":"upd","body":{"Amount":5}}]}`)
	out := composite(t, ok)
	if used, _ := e.APIUsage(); used != used0+1 {
		t.Fatalf("a composite call used %d API calls, want 1", used-used0)
	}
	var codes []int
	for _, r := range out.CompositeResponse {
		codes = append(codes, r.HTTPStatusCode)
	}
	if fmt.Sprint(codes) != "[201 201 200 204]" {
		t.Fatalf("status codes %v: %s", codes, ok.body)
	}
	if !strings.Contains(string(out.CompositeResponse[2].Body), `"Name":"Contoso"`) || out.CompositeResponse[0].HTTPHeaders["Location"] == "" {
		t.Fatalf("query did not see the account created before it, or no Location: %s", ok.body)
	}
	opps := e.All("Opportunity")
	if len(opps) != 1 || opps[0]["Amount"] != 5.0 {
		t.Fatalf("opportunities %v", opps)
	}

	// allOrNone: the second subrequest fails, so the first is rolled back and the third is not run.
	bad := composite(t, do(t, srv, tok, http.MethodPost, "/composite", `{"allOrNone":true,"compositeRequest":[
	 {"method":"POST","url":"/services/data/v62.0/sobjects/Account","referenceId":"a1","body":{"Name":"Fabrikam"}},
	 {"method":"POST","url":"/services/data/v62.0/sobjects/Opportunity","referenceId":"o1","body":{"Name":"No stage"}},
	 {"method":"POST","url":"/services/data/v62.0/composite/sobjects","referenceId":"c1",
	  "body":{"allOrNone":false,"records":[{"attributes":{"type":"Account"},"Name":"Later"}]}}]}`))
	got := []string{}
	for _, r := range bad.CompositeResponse {
		got = append(got, fmt.Sprintf("%d %s", r.HTTPStatusCode, jsonCode(r.Body)))
	}
	want := "[400 PROCESSING_HALTED 400 REQUIRED_FIELD_MISSING 400 PROCESSING_HALTED]"
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	if n := len(e.All("Account")); n != 1 {
		t.Fatalf("%d accounts after a rolled-back composite, want 1", n)
	}

	// Without allOrNone the others stand; a reference to a failed subrequest fails.
	partial := composite(t, do(t, srv, tok, http.MethodPost, "/composite", `{"compositeRequest":[
	 {"method":"POST","url":"/services/data/v62.0/sobjects/Opportunity","referenceId":"o1","body":{"Name":"No stage"}},
	 {"method":"PATCH","url":"/services/data/v62.0/sobjects/Opportunity/@{o1.id}","referenceId":"u1","body":{"Amount":1}},
	 {"method":"POST","url":"/services/data/v62.0/sobjects/Account","referenceId":"a1","body":{"Name":"Northwind"}}]}`))
	if c := jsonCode(partial.CompositeResponse[1].Body); c != "PROCESSING_HALTED" || partial.CompositeResponse[2].HTTPStatusCode != 201 {
		t.Fatalf("partial: %+v", partial)
	}
}

// A Collections create whose second record fails, and two upserts referencing its results: the one that
// references the failed record's id is halted whole (400 PROCESSING_HALTED, nothing written), the one
// that references only the created record runs; the composite is one API call and one that writes.
func TestCompositeReferenceToAFailedCollectionRecord(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	tok := login(t, srv)
	used0, _ := e.APIUsage()
	counts0 := e.Counts()
	out := composite(t, do(t, srv, tok, http.MethodPost, "/composite", `{"allOrNone":false,"compositeRequest":[
	 {"method":"POST","url":"/services/data/v62.0/composite/sobjects","referenceId":"accounts",
	  "body":{"allOrNone":false,"records":[{"attributes":{"type":"Account"},"Name":"Contoso"},{"attributes":{"type":"Account"},"Phone":"1"}]}},
	 {"method":"PATCH","url":"/services/data/v62.0/composite/sobjects/Opportunity/Referral_Identifier__c","referenceId":"bad",
	  "body":{"allOrNone":false,"records":[
	   {"attributes":{"type":"Opportunity"},"Referral_Identifier__c":"r1","Name":"One","StageName":"Prospecting","CloseDate":"2027-01-31","AccountId":"@{accounts[0].id}"},
	   {"attributes":{"type":"Opportunity"},"Referral_Identifier__c":"r2","Name":"Two","StageName":"Prospecting","CloseDate":"2027-01-31","AccountId":"@{accounts[1].id}"}]}},
	 {"method":"PATCH","url":"/services/data/v62.0/composite/sobjects/Opportunity/Referral_Identifier__c","referenceId":"good",
	  "body":{"allOrNone":false,"records":[
	   {"attributes":{"type":"Opportunity"},"Referral_Identifier__c":"r3","Name":"Three","StageName":"Prospecting","CloseDate":"2027-01-31","AccountId":"@{accounts[0].id}"}]}}]}`))
	if used, _ := e.APIUsage(); used != used0+1 {
		t.Fatalf("the composite used %d API calls, want 1", used-used0)
	}
	if got := e.Counts()[CompositeWritesCount] - counts0[CompositeWritesCount]; got != 1 {
		t.Fatalf("%s moved by %d, want 1", CompositeWritesCount, got)
	}
	var accounts []saveResult
	if err := json.Unmarshal(out.CompositeResponse[0].Body, &accounts); err != nil || len(accounts) != 2 || !accounts[0].Success || accounts[1].Success || accounts[1].ID != "" {
		t.Fatalf("accounts: %v %s", err, out.CompositeResponse[0].Body)
	}
	bad := out.CompositeResponse[1]
	if bad.HTTPStatusCode != http.StatusBadRequest || jsonCode(bad.Body) != "PROCESSING_HALTED" ||
		!strings.Contains(string(bad.Body), "No value for accounts[1].id found in accounts") {
		t.Fatalf("the upsert referencing the failed account: %d %s", bad.HTTPStatusCode, bad.Body)
	}
	if out.CompositeResponse[2].HTTPStatusCode != http.StatusOK {
		t.Fatalf("the independent upsert: %d %s", out.CompositeResponse[2].HTTPStatusCode, out.CompositeResponse[2].Body)
	}
	var refs []string
	for _, o := range e.All("Opportunity") {
		refs = append(refs, fmt.Sprint(o["Referral_Identifier__c"], " ", o["AccountId"] == accounts[0].ID))
	}
	if fmt.Sprint(refs) != "[r3 true]" {
		t.Fatalf("opportunities written: %v, want only r3 under the created account", refs)
	}
	// A composite of reads only is no write.
	composite(t, do(t, srv, tok, http.MethodPost, "/composite", `{"compositeRequest":[
	 {"method":"GET","url":"/services/data/v62.0/limits","referenceId":"l"}]}`))
	if got := e.Counts()[CompositeWritesCount] - counts0[CompositeWritesCount]; got != 1 {
		t.Fatalf("%s moved by %d after a read-only composite, want 1", CompositeWritesCount, got)
	}
}

func jsonCode(b json.RawMessage) string {
	var errs []errorBody
	if json.Unmarshal(b, &errs) == nil && len(errs) > 0 {
		return errs[0].ErrorCode
	}
	return ""
}

func TestCompositeLimits(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, Options{})
	tok := login(t, srv)
	sub := func(n int, url string) string {
		var parts []string
		for i := 0; i < n; i++ {
			parts = append(parts, fmt.Sprintf(`{"method":"GET","url":"%s","referenceId":"r%d"}`, url, i))
		}
		return `{"compositeRequest":[` + strings.Join(parts, ",") + `]}`
	}
	if r := do(t, srv, tok, http.MethodPost, "/composite", sub(26, "/services/data/v62.0/limits")); r.status != 400 || errorCode(t, r) != "LIMIT_EXCEEDED" {
		t.Fatalf("26 subrequests: %d %s", r.status, r.body)
	}
	if r := do(t, srv, tok, http.MethodPost, "/composite", sub(25, "/services/data/v62.0/limits")); r.status != 200 {
		t.Fatalf("25 subrequests: %d %s", r.status, r.body)
	}
	q := "/services/data/v62.0/query/?q=" + url.QueryEscape("SELECT Id FROM Account")
	if r := do(t, srv, tok, http.MethodPost, "/composite", sub(6, q)); r.status != 400 || errorCode(t, r) != "LIMIT_EXCEEDED" {
		t.Fatalf("6 queries: %d %s", r.status, r.body)
	}
	if r := do(t, srv, tok, http.MethodGet, "/composite", ""); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET /composite: %d", r.status)
	}
}

func TestUpdatedAndDeleted(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	tok := login(t, srv)
	start := time.Now().UTC().Add(-time.Hour)
	a := mustInsert(t, e, "Account", map[string]any{"Name": "A"})
	b := mustInsert(t, e, "Account", map[string]any{"Name": "B"})
	setNow := func(d time.Duration) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.now = func() time.Time { return time.Now().Add(d) }
	}
	setNow(2 * time.Minute) // a window ends at a whole minute
	if r := do(t, srv, tok, http.MethodDelete, "/sobjects/Account/"+b, ""); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	setNow(4 * time.Minute)
	win := "?start=" + url.QueryEscape(start.Format(time.RFC3339)) + "&end=" + url.QueryEscape(time.Now().Add(4*time.Minute).Format(time.RFC3339))
	up := do(t, srv, tok, http.MethodGet, "/sobjects/Account/updated/"+win, "")
	if up.status != 200 || !strings.Contains(up.body, a) || strings.Contains(up.body, b) {
		t.Fatalf("updated: %d %s", up.status, up.body)
	}
	del := do(t, srv, tok, http.MethodGet, "/sobjects/Account/deleted/"+win, "")
	if del.status != 200 || !strings.Contains(del.body, `"id":"`+b+`"`) || strings.Contains(del.body, a) {
		t.Fatalf("deleted: %d %s", del.status, del.body)
	}
	old := "?start=" + url.QueryEscape(time.Now().Add(-20*24*time.Hour).Format(time.RFC3339)) + "&end=" + url.QueryEscape(time.Now().Format(time.RFC3339))
	if r := do(t, srv, tok, http.MethodGet, "/sobjects/Account/deleted/"+old, ""); r.status != 400 || errorCode(t, r) != "INVALID_REPLICATION_DATE" {
		t.Fatalf("deleted 20 days back: %d %s", r.status, r.body)
	}
}
