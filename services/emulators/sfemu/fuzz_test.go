package sfemu

import "testing"

// FuzzSOQL feeds arbitrary text to the SOQL lexer, parser, compiler and evaluator: a query is either refused
// with a Salesforce error or answered, never a panic.
func FuzzSOQL(f *testing.F) {
	for _, q := range []string{
		"SELECT Id, Name, Account.Name FROM Opportunity WHERE Amount > 100 AND (StageName = 'Closed Won' OR IsWon = true) ORDER BY SystemModstamp, Id LIMIT 200",
		"SELECT Id, (SELECT Id, UserId FROM OpportunityTeamMembers) FROM Opportunity WHERE SystemModstamp >= 2026-11-24T15:04:05.000Z",
		"SELECT Name FROM Opportunity WHERE Name LIKE 'A\\'%' AND CloseDate < 2027-01-01 OFFSET 1",
		"SELECT COUNT() FROM Account WHERE Name IN ('a','b') AND NOT BillingCountry = null",
		"SELECT Id FROM Opportunity WHERE Id > '0065g0000000001AAA' ORDER BY Amount DESC NULLS LAST",
		"select id from opportunity where (", "SELECT FROM", "'", "SELECT Id FROM Opportunity WHERE Amount = 1e999",
	} {
		f.Add(q)
	}
	e, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	acc, err := e.Insert("Account", map[string]any{"Name": "Contoso", "BillingCountry": "US"})
	if err != nil {
		f.Fatal(err)
	}
	for i, stage := range []string{"Prospecting", "Closed Won", "Closed Lost"} {
		if _, err := e.Insert("Opportunity", map[string]any{"Name": stage, "StageName": stage, "CloseDate": "2026-01-15",
			"Amount": float64(100 * i), "AccountId": acc}); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, q string) {
		_, _, _ = runQuery(e, q)
	})
}
