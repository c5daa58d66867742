package sfemu

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

const validOpp = `"Name":"Deal","StageName":"Prospecting","CloseDate":"2026-11-24"`

func TestStrictErrors(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	token := login(t, srv)
	accID := mustInsert(t, e, "Account", map[string]any{"Name": "Contoso"})
	oppID := mustInsert(t, e, "Opportunity", map[string]any{"Name": "Existing", "StageName": "Prospecting",
		"CloseDate": "2026-11-24", "Referral_Identifier__c": "dup"})
	deleted := mustInsert(t, e, "Opportunity", map[string]any{"Name": "Gone", "StageName": "Prospecting", "CloseDate": "2026-11-24"})
	if r := do(t, srv, token, "DELETE", "/sobjects/Opportunity/"+deleted, ""); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	long := strings.Repeat("x", 121)
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"missing required", "POST", "/sobjects/Opportunity", `{"Name":"x"}`, 400, "REQUIRED_FIELD_MISSING"},
		{"restricted picklist", "POST", "/sobjects/Opportunity", `{"Name":"x","StageName":"Won-ish","CloseDate":"2026-11-24"}`, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"},
		{"custom restricted picklist", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"How_can_Microsoft_help__c":"Free money"}`, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"},
		{"currency", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"CurrencyIsoCode":"XYZ"}`, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"},
		{"string too long", "POST", "/sobjects/Opportunity", `{"Name":"` + long + `","StageName":"Prospecting","CloseDate":"2026-11-24"}`, 400, "STRING_TOO_LONG"},
		{"bad json", "POST", "/sobjects/Opportunity", `{"Name":`, 400, "JSON_PARSER_ERROR"},
		{"string for currency", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"Amount":"lots"}`, 400, "JSON_PARSER_ERROR"},
		{"hex string for currency", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"Amount":"0x10"}`, 400, "JSON_PARSER_ERROR"},
		{"fraction for an int", "POST", "/sobjects/Account", `{"Name":"a","NumberOfEmployees":"1.5"}`, 400, "JSON_PARSER_ERROR"},
		{"derived forecast category", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"ForecastCategory":"Closed"}`, 400, "INVALID_FIELD_FOR_INSERT_UPDATE"},
		{"forecast category name", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"ForecastCategoryName":"Maybe"}`, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"},
		{"not a date", "POST", "/sobjects/Opportunity", `{"Name":"x","StageName":"Prospecting","CloseDate":"tomorrow"}`, 400, "JSON_PARSER_ERROR"},
		{"unknown field", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"Nope__c":1}`, 400, "INVALID_FIELD"},
		{"read-only field", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"IsWon":true}`, 400, "INVALID_FIELD_FOR_INSERT_UPDATE"},
		{"system field on update", "PATCH", "/sobjects/Opportunity/" + oppID, `{"SystemModstamp":"2026-01-01T00:00:00Z"}`, 400, "INVALID_FIELD_FOR_INSERT_UPDATE"},
		{"duplicate external id", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"Referral_Identifier__c":"DUP"}`, 400, "DUPLICATE_VALUE"},
		{"malformed id in path", "GET", "/sobjects/Opportunity/abc", "", 400, "MALFORMED_ID"},
		{"id of another object", "PATCH", "/sobjects/Opportunity/" + accID, `{"Name":"x"}`, 400, "MALFORMED_ID"},
		{"malformed reference", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"AccountId":"nope"}`, 400, "MALFORMED_ID"},
		{"reference of another object", "POST", "/sobjects/Opportunity", `{` + validOpp + `,"AccountId":"` + oppID + `"}`, 400, "FIELD_INTEGRITY_EXCEPTION"},
		{"unknown record", "GET", "/sobjects/Opportunity/" + newID("006", 999999), "", 404, "NOT_FOUND"},
		{"unknown object", "POST", "/sobjects/Nope__c", `{}`, 404, "NOT_FOUND"},
		{"deleted record", "PATCH", "/sobjects/Opportunity/" + deleted, `{"Name":"x"}`, 400, "ENTITY_IS_DELETED"},
		{"upsert on a non external id", "PATCH", "/sobjects/Opportunity/Name/x", `{}`, 404, "NOT_FOUND"},
		{"get unknown field", "GET", "/sobjects/Opportunity/" + oppID + "?fields=Nope", "", 400, "INVALID_FIELD"},
		{"bad soql", "GET", "/query?q=" + url.QueryEscape("SELECT FROM"), "", 400, "MALFORMED_QUERY"},
		{"bad locator", "GET", "/query/01gXXX-2000", "", 400, "INVALID_QUERY_LOCATOR"},
		{"unknown resource", "GET", "/nope", "", 404, "NOT_FOUND"},
		{"retired version", "GET", "/services/data/v30.0/limits", "", 410, "GONE"},
		{"version newer than the org", "GET", "/services/data/v63.0/limits", "", 404, "NOT_FOUND"},
		{"not a version", "GET", "/services/data/v62.1/limits", "", 404, "NOT_FOUND"},
		{"method not allowed", "PUT", "/sobjects/Opportunity/" + oppID, `{}`, 405, "METHOD_NOT_ALLOWED"},
		{"collection too big", "POST", "/composite/sobjects", `{"records":[` + strings.TrimSuffix(strings.Repeat(`{"attributes":{"type":"Account"},"Name":"a"},`, 201), ",") + `]}`, 400, "EXCEEDED_ID_LIMIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, srv, token, tt.method, tt.path, tt.body)
			if r.status != tt.status || errorCode(t, r) != tt.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tt.status, tt.code)
			}
		})
	}
	if n := len(e.All("Opportunity")); n != 1 {
		t.Fatalf("refused writes left records behind: %d opportunities", n)
	}
}

func TestSessionAndLimits(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{DailyAPILimit: 3})
	if r := do(t, srv, "", "GET", "/limits", ""); r.status != 401 || errorCode(t, r) != "INVALID_SESSION_ID" {
		t.Fatalf("no token: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "bogus", "GET", "/limits", ""); r.status != 401 {
		t.Fatalf("bad token: %d", r.status)
	}
	token := login(t, srv)
	r := do(t, srv, token, "GET", "/limits", "")
	var limits struct{ DailyApiRequests struct{ Max, Remaining int } }
	if r.status != 200 || json.Unmarshal([]byte(r.body), &limits) != nil || limits.DailyApiRequests.Max != 3 ||
		limits.DailyApiRequests.Remaining != 2 {
		t.Fatalf("limits: %d %s", r.status, r.body)
	}
	if got := r.header.Get("Sforce-Limit-Info"); got != "api-usage=1/3" {
		t.Fatalf("Sforce-Limit-Info = %q", got)
	}
	do(t, srv, token, "GET", "/query?q=SELECT+Id+FROM+Account", "")
	r = do(t, srv, token, "GET", "/query/?q=SELECT+Id+FROM+Account", "")
	if r.status != 200 || r.header.Get("Sforce-Limit-Info") != "api-usage=3/3" {
		t.Fatalf("third call: %d %v", r.status, r.header)
	}
	r = do(t, srv, token, "GET", "/limits", "")
	if r.status != 403 || errorCode(t, r) != "REQUEST_LIMIT_EXCEEDED" || r.header.Get("Sforce-Limit-Info") != "api-usage=3/3" {
		t.Fatalf("over limit: %d %s %v", r.status, r.body, r.header)
	}
	// Emulator-side calls still work and are not counted against the API.
	if r := do(t, srv, "", "POST", "/_emulator/sobjects/Account", `{"Name":"From the UI"}`); r.status != 201 {
		t.Fatalf("emulator insert: %d %s", r.status, r.body)
	}
	e.ResetFaults()
	if r := do(t, srv, token, "GET", "/limits", ""); r.status != 200 {
		t.Fatalf("after reset: %d", r.status)
	}
	e.ExpireSessions()
	if r := do(t, srv, token, "GET", "/limits", ""); r.status != 401 {
		t.Fatalf("after expiry: %d", r.status)
	}
}

func TestTokenTTL(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	token := login(t, srv)
	e.mu.Lock()
	base := e.now()
	e.now = func() time.Time { return base.Add(3 * time.Hour) }
	e.mu.Unlock()
	if r := do(t, srv, token, "GET", "/limits", ""); r.status != 401 {
		t.Fatalf("token older than its TTL accepted: %d", r.status)
	}
}

func TestUpsertCollectionsAndFaults(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	token := login(t, srv)
	body := func(records ...string) string {
		return `{"allOrNone":false,"records":[` + strings.Join(records, ",") + `]}`
	}
	rec := func(ref, name string) string {
		return fmt.Sprintf(`{"attributes":{"type":"Opportunity"},"Referral_Identifier__c":%q,"Name":%q,"StageName":"Prospecting","CloseDate":"2026-11-24"}`, ref, name)
	}
	r := do(t, srv, token, "PATCH", "/composite/sobjects/Opportunity/Referral_Identifier__c", body(rec("r1", "One"), rec("r2", "Two")))
	var results []saveResult
	if r.status != 200 || json.Unmarshal([]byte(r.body), &results) != nil || len(results) != 2 || !*results[0].Created {
		t.Fatalf("upsert collection: %d %s", r.status, r.body)
	}
	r = do(t, srv, token, "PATCH", "/composite/sobjects/Opportunity/Referral_Identifier__c", body(rec("R1", "One again"), rec("r3", "")))
	_ = json.Unmarshal([]byte(r.body), &results)
	if results[0].Created == nil || *results[0].Created || !results[0].Success || results[1].Success ||
		results[1].Errors[0].StatusCode != "REQUIRED_FIELD_MISSING" {
		t.Fatalf("second upsert: %s", r.body)
	}

	// allOrNone rolls back the valid record too.
	r = do(t, srv, token, "POST", "/composite/sobjects", `{"allOrNone":true,"records":[{"attributes":{"type":"Account"},"Name":"Kept?"},{"attributes":{"type":"Account"}}]}`)
	_ = json.Unmarshal([]byte(r.body), &results)
	if results[0].Success || results[0].Errors[0].StatusCode != "ALL_OR_NONE_OPERATION_ROLLED_BACK" ||
		results[1].Errors[0].StatusCode != "REQUIRED_FIELD_MISSING" || len(e.All("Account")) != 0 {
		t.Fatalf("allOrNone: %s, accounts %d", r.body, len(e.All("Account")))
	}

	// Several records matching one external id: 300 with their URLs. Staged with a direct store write
	// (and its value index), since the unique check (rightly) refuses it through the API.
	id := mustInsert(t, e, "Opportunity", map[string]any{"Name": "Twin", "StageName": "Prospecting", "CloseDate": "2026-11-24"})
	e.mu.Lock()
	opp := e.st.schema.object("Opportunity")
	e.st.tables[opp].rows[id]["Referral_Identifier__c"] = "r2"
	e.st.indexUnique(opp, id, e.st.tables[opp].rows[id])
	e.mu.Unlock()
	r = do(t, srv, token, "PATCH", "/sobjects/Opportunity/Referral_Identifier__c/r2", `{"Name":"which?"}`)
	var urls []string
	if r.status != 300 || json.Unmarshal([]byte(r.body), &urls) != nil || len(urls) != 2 {
		t.Fatalf("multiple matches: %d %s", r.status, r.body)
	}
	e.mu.Lock()
	e.st.tables[e.st.schema.object("Opportunity")].rows[id]["Referral_Identifier__c"] = nil
	e.mu.Unlock()

	// Faults over HTTP: a 500, then a row lock, then latency off again.
	if r := do(t, srv, "", "POST", "/_emulator/faults", `{"failNextCalls":1,"lockNextWrites":1}`); r.status != 200 {
		t.Fatalf("faults: %d %s", r.status, r.body)
	}
	if r := do(t, srv, token, "GET", "/limits", ""); r.status != 500 || errorCode(t, r) != "UNKNOWN_EXCEPTION" {
		t.Fatalf("500 fault: %d %s", r.status, r.body)
	}
	r = do(t, srv, token, "PATCH", "/sobjects/Opportunity/"+id, `{"Name":"locked"}`)
	if r.status != 400 || errorCode(t, r) != "UNABLE_TO_LOCK_ROW" {
		t.Fatalf("lock fault: %d %s", r.status, r.body)
	}
	if r := do(t, srv, token, "PATCH", "/sobjects/Opportunity/"+id, `{"Name":"unlocked"}`); r.status != 204 {
		t.Fatalf("after lock: %d %s", r.status, r.body)
	}
	r = do(t, srv, "", "GET", "/_emulator/counts", "")
	var counts map[string]int
	if json.Unmarshal([]byte(r.body), &counts) != nil || counts["collections.upsert"] != 2 || counts["sobjects.update"] != 2 {
		t.Fatalf("counts: %s", r.body)
	}
	e.ResetCounts()
	if len(e.Counts()) != 0 {
		t.Fatal("ResetCounts left counts")
	}
}

func TestSystemModstampStrictlyIncreases(t *testing.T) {
	t.Parallel()
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	fixed := e.now()
	e.now = func() time.Time { return fixed } // the clock does not move
	prev := ""
	for i := 0; i < 5; i++ {
		id := mustInsert(t, e, "Account", map[string]any{"Name": fmt.Sprint(i)})
		r, _ := e.Get("Account", id)
		stamp := r["SystemModstamp"].(string)
		if stamp <= prev || !strings.HasSuffix(stamp, "+0000") || len(stamp) != len("2026-11-24T15:04:05.000+0000") {
			t.Fatalf("stamp %q after %q", stamp, prev)
		}
		prev = stamp
	}
}

func TestBatchSizeHeader(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	for i := 0; i < 450; i++ {
		mustInsert(t, e, "Account", map[string]any{"Name": fmt.Sprintf("A%03d", i)})
	}
	token := login(t, srv)
	next := "/services/data/v62.0/query?q=" + url.QueryEscape("SELECT Name FROM Account ORDER BY Name")
	var pages []int
	for next != "" {
		req := do2(t, srv, token, next, "batchSize=100")
		var raw struct {
			TotalSize      int
			Done           bool
			NextRecordsURL string `json:"nextRecordsUrl"`
			Records        []map[string]any
		}
		if req.status != 200 || json.Unmarshal([]byte(req.body), &raw) != nil || raw.TotalSize != 450 {
			t.Fatalf("page: %d %s", req.status, req.body)
		}
		pages = append(pages, len(raw.Records))
		if !raw.Done && !strings.HasPrefix(raw.NextRecordsURL, "/services/data/v62.0/query/") {
			t.Fatalf("nextRecordsUrl %q", raw.NextRecordsURL)
		}
		next = raw.NextRecordsURL
	}
	if fmt.Sprint(pages) != "[200 200 50]" {
		t.Fatalf("pages %v, want [200 200 50] (batchSize below 200 is raised to 200)", pages)
	}
}
