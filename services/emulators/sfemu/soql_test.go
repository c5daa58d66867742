package sfemu

import (
	"encoding/json"
	"strings"
	"testing"
)

// seedQueryData creates accounts and opportunities with known values for the SOQL table tests.
func seedQueryData(t *testing.T) (*Emulator, map[string]string) {
	t.Helper()
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	ids["contoso"] = mustInsert(t, e, "Account", map[string]any{"Name": "Contoso", "BillingCountry": "US"})
	ids["fabrikam"] = mustInsert(t, e, "Account", map[string]any{"Name": "Fabrikam"})
	ids["a"] = mustInsert(t, e, "Opportunity", map[string]any{"Name": "Alpha", "StageName": "Prospecting",
		"CloseDate": "2026-01-15", "Amount": 100, "AccountId": ids["contoso"], "Referral_Identifier__c": "R-1",
		"Sync_with_Partner_Center__c": true})
	ids["b"] = mustInsert(t, e, "Opportunity", map[string]any{"Name": "Beta's deal", "StageName": "Closed Won",
		"CloseDate": "2026-03-01", "Amount": 2500.5, "AccountId": ids["fabrikam"]})
	ids["c"] = mustInsert(t, e, "Opportunity", map[string]any{"Name": "gamma 100%", "StageName": "Closed Lost",
		"CloseDate": "2026-06-30"})
	return e, ids
}

func runQuery(e *Emulator, q string) ([]*orderedMap, int, *APIError) {
	pq, err := parseSOQL(q)
	if err != nil {
		return nil, 0, err
	}
	c, err := e.st.compile(q, pq, nil)
	if err != nil {
		return nil, 0, err
	}
	rows, total := e.st.run(c, false, "v62.0")
	return rows, total, nil
}

func names(rows []*orderedMap) string {
	var out []string
	for _, r := range rows {
		out = append(out, r.vals["Name"].(string))
	}
	return strings.Join(out, ",")
}

func TestSOQLEvaluate(t *testing.T) {
	t.Parallel()
	e, ids := seedQueryData(t)
	tests := []struct{ q, want string }{
		{"SELECT Name FROM Opportunity ORDER BY Name", "Alpha,Beta's deal,gamma 100%"},
		{"select name from opportunity order by NAME desc", "gamma 100%,Beta's deal,Alpha"},
		{"SELECT Name FROM Opportunity WHERE Amount > 100", "Beta's deal"},
		{"SELECT Name FROM Opportunity WHERE Amount >= 100 ORDER BY Amount DESC", "Beta's deal,Alpha"},
		{"SELECT Name FROM Opportunity WHERE Amount = null", "gamma 100%"},
		{"SELECT Name FROM Opportunity WHERE Amount != null ORDER BY Name", "Alpha,Beta's deal"},
		{"SELECT Name FROM Opportunity ORDER BY Amount NULLS LAST, Name", "Alpha,Beta's deal,gamma 100%"},
		{"SELECT Name FROM Opportunity ORDER BY Amount DESC NULLS FIRST", "gamma 100%,Beta's deal,Alpha"},
		{"SELECT Name FROM Opportunity WHERE Name = 'beta\\'s DEAL'", "Beta's deal"},
		{"SELECT Name FROM Opportunity WHERE Name LIKE 'al%'", "Alpha"},
		{"SELECT Name FROM Opportunity WHERE Name LIKE '%100\\%'", "gamma 100%"},
		{"SELECT Name FROM Opportunity WHERE Name LIKE '_eta%'", "Beta's deal"},
		{"SELECT Name FROM Opportunity WHERE StageName IN ('Closed Won', 'Closed Lost') ORDER BY Name", "Beta's deal,gamma 100%"},
		{"SELECT Name FROM Opportunity WHERE StageName NOT IN ('Closed Won', 'Closed Lost')", "Alpha"},
		{"SELECT Name FROM Opportunity WHERE IsClosed = true AND IsWon = false", "gamma 100%"},
		{"SELECT Name FROM Opportunity WHERE NOT IsClosed = true", "Alpha"},
		{"SELECT Name FROM Opportunity WHERE (Amount > 1000 OR Amount = null) AND Name != 'x' ORDER BY Name", "Beta's deal,gamma 100%"},
		{"SELECT Name FROM Opportunity WHERE Sync_with_Partner_Center__c = true", "Alpha"},
		{"SELECT Name FROM Opportunity WHERE CloseDate > 2026-02-01 AND CloseDate <= 2026-06-30 ORDER BY CloseDate", "Beta's deal,gamma 100%"},
		{"SELECT Name FROM Opportunity WHERE SystemModstamp > 2000-01-01T00:00:00Z ORDER BY SystemModstamp, Id LIMIT 2", "Alpha,Beta's deal"},
		{"SELECT Name FROM Opportunity WHERE CreatedDate < 2100-01-01T00:00:00.000+0000 ORDER BY Name OFFSET 1", "Beta's deal,gamma 100%"},
		{"SELECT Name FROM Opportunity WHERE LastModifiedDate > 2000-01-01T01:00:00+01:00 ORDER BY Name LIMIT 1 OFFSET 1", "Beta's deal"},
		{"SELECT Name FROM Opportunity WHERE SystemModstamp > 2100-01-01T00:00:00Z", ""},
		{"SELECT Name FROM Opportunity WHERE Account.Name = 'contoso'", "Alpha"},
		{"SELECT Name FROM Opportunity WHERE Account.BillingCountry = null ORDER BY Name", "Beta's deal,gamma 100%"},
		{"SELECT Name FROM Opportunity ORDER BY Account.Name DESC NULLS LAST", "Beta's deal,Alpha,gamma 100%"},
		{"SELECT Name FROM Opportunity WHERE Id = '" + ids["b"][:15] + "'", "Beta's deal"},
		{"SELECT Name FROM Opportunity WHERE AccountId IN ('" + strings.ToLower(ids["contoso"]) + "')", "Alpha"},
		{"SELECT Name FROM Opportunity WHERE Referral_Identifier__c = 'r-1'", "Alpha"},
		{"SELECT Name FROM Opportunity WHERE Amount < -5", ""},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			rows, _, err := runQuery(e, tt.q)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if got := names(rows); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSOQLShapes(t *testing.T) {
	t.Parallel()
	e, ids := seedQueryData(t)
	mustInsert(t, e, "Microsoft_Solution__c", map[string]any{"Opportunity__c": ids["a"], "Solution_Id__c": "S-1"})

	_, total, err := runQuery(e, "SELECT COUNT() FROM Opportunity WHERE IsClosed = true")
	if err != nil || total != 2 {
		t.Fatalf("count: %d %v", total, err)
	}
	rows, _, err := runQuery(e, "SELECT Id, Account.Name, Account.BillingCountry, (SELECT Solution_Id__c, Opportunity__r.Name FROM Microsoft_Solutions__r) FROM Opportunity WHERE Name = 'Alpha'")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rows[0])
	want := `{"attributes":{"type":"Opportunity","url":"/services/data/v62.0/sobjects/Opportunity/` + ids["a"] + `"},` +
		`"Id":"` + ids["a"] + `","Account":{"attributes":{"type":"Account","url":"/services/data/v62.0/sobjects/Account/` + ids["contoso"] + `"},` +
		`"Name":"Contoso","BillingCountry":"US"},"Microsoft_Solutions__r":{"done":true,"records":[{"attributes":`
	if !strings.HasPrefix(string(b), want) || !strings.Contains(string(b), `"Solution_Id__c":"S-1","Opportunity__r":{`) {
		t.Fatalf("row JSON:\n%s\nwant prefix:\n%s", b, want)
	}
	rows, _, _ = runQuery(e, "SELECT Account.Name, (SELECT Id FROM Microsoft_Solutions__r) FROM Opportunity WHERE Name = 'gamma 100%'")
	b, _ = json.Marshal(rows[0])
	if !strings.Contains(string(b), `"Account":null`) || !strings.Contains(string(b), `"Microsoft_Solutions__r":null`) {
		t.Fatalf("null parent and empty children: %s", b)
	}
}

func TestSOQLErrors(t *testing.T) {
	t.Parallel()
	e, _ := seedQueryData(t)
	tests := []struct{ q, code, contains string }{
		{"SELECT Nope__c FROM Opportunity", "INVALID_FIELD", "No such column 'Nope__c' on entity 'Opportunity'"},
		{"SELECT Account.Nope FROM Opportunity", "INVALID_FIELD", "No such column 'Nope' on entity 'Account'"},
		{"SELECT Name FROM Opportunity WHERE Foo = 1", "INVALID_FIELD", "No such column 'Foo'"},
		{"SELECT Nope.Name FROM Opportunity", "INVALID_FIELD", "Didn't understand relationship 'Nope'"},
		{"SELECT Name FROM Nope__c", "INVALID_TYPE", "sObject type 'Nope__c' is not supported"},
		{"SELECT Name, (SELECT Id FROM Nopes) FROM Opportunity", "INVALID_TYPE", "Didn't understand relationship 'Nopes'"},
		{"SELECT FROM Opportunity", "MALFORMED_QUERY", "unexpected token: 'FROM'"},
		{"SELECT Name Opportunity", "MALFORMED_QUERY", "unexpected token"},
		{"SELECT Name FROM Opportunity WHERE", "MALFORMED_QUERY", "<EOF>"},
		{"SELECT Name FROM Opportunity WHERE Name = 'x' AND Amount = 1 OR Amount = 2", "MALFORMED_QUERY", "unexpected token: 'OR'"},
		{"SELECT Name FROM Opportunity WHERE Name = 'unterminated", "MALFORMED_QUERY", ""},
		{"SELECT Name FROM Opportunity LIMIT x", "MALFORMED_QUERY", ""},
		{"SELECT Name, Name FROM Opportunity", "MALFORMED_QUERY", "duplicate field selected: Name"},
		{"SELECT COUNT(), Name FROM Opportunity", "MALFORMED_QUERY", "COUNT()"},
		{"SELECT Name FROM Opportunity WHERE Amount = '5'", "INVALID_FIELD", "must be of type currency and should not be enclosed in quotes"},
		{"SELECT Name FROM Opportunity WHERE Name = 5", "INVALID_FIELD", "should be enclosed in quotes"},
		{"SELECT Name FROM Opportunity WHERE CloseDate > 2026-01-01T00:00:00Z", "INVALID_FIELD", "must be of type date"},
		{"SELECT Name FROM Opportunity WHERE SystemModstamp > 2026-01-01", "INVALID_FIELD", "must be of type dateTime"},
		{"SELECT Name FROM Opportunity WHERE Id = 'abc'", "MALFORMED_ID", "invalid ID field: abc"},
		{"SELECT Name FROM Opportunity WHERE Amount > null", "INVALID_QUERY_FILTER_OPERATOR", ""},
		{"SELECT Name FROM Opportunity WHERE CloseDate > 2026-13-45", "MALFORMED_QUERY", ""},
		{"SELECT Name FROM Opportunity GROUP BY Name", "MALFORMED_QUERY", "unexpected token: 'GROUP'"},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			_, _, err := runQuery(e, tt.q)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Code != tt.code || !strings.Contains(err.Message, tt.contains) || err.Status != 400 {
				t.Fatalf("got %d %s %q; want %s containing %q", err.Status, err.Code, err.Message, tt.code, tt.contains)
			}
		})
	}
}
