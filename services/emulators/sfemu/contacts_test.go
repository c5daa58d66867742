package sfemu

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestOpportunityContactRole: the emulator has OpportunityContactRole as Salesforce's Object Reference
// describes it: OpportunityId and ContactId required, OpportunityId set on create only, Role a picklist
// (not restricted), IsPrimary false by default, the Opportunity's and the Contact's child relationship
// OpportunityContactRoles readable with the Contact's fields in a subquery, and the roles deleted with
// either parent.
func TestOpportunityContactRole(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	tok := login(t, srv)
	acc, _ := e.Insert("Account", map[string]any{"Name": "Contoso"})
	opp, _ := e.Insert("Opportunity", map[string]any{"Name": "Deal", "AccountId": acc, "StageName": "Prospecting", "CloseDate": "2027-01-31"})
	other, _ := e.Insert("Opportunity", map[string]any{"Name": "Other", "StageName": "Prospecting", "CloseDate": "2027-01-31"})
	contact, err := e.Insert("Contact", map[string]any{"AccountId": acc, "FirstName": "Sue", "LastName": "Smith", "Email": "sue@contoso.com", "Phone": "1234567890"})
	if err != nil {
		t.Fatal(err)
	}
	if r := do(t, srv, tok, "POST", "/sobjects/OpportunityContactRole", `{"OpportunityId":"`+opp+`"}`); r.status != 400 || !strings.Contains(r.body, "REQUIRED_FIELD_MISSING") || !strings.Contains(r.body, "ContactId") {
		t.Errorf("a role without ContactId: %d %s", r.status, r.body)
	}
	r := do(t, srv, tok, "POST", "/sobjects/OpportunityContactRole", `{"OpportunityId":"`+opp+`","ContactId":"`+contact+`","Role":"Decision Maker"}`)
	if r.status != 201 {
		t.Fatalf("create role: %d %s", r.status, r.body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(r.body), &created)
	if !strings.HasPrefix(created.ID, "00K") {
		t.Errorf("role id %q: want the 00K key prefix", created.ID)
	}
	if r := do(t, srv, tok, "PATCH", "/sobjects/OpportunityContactRole/"+created.ID, `{"OpportunityId":"`+other+`"}`); r.status != 400 || !strings.Contains(r.body, "INVALID_FIELD_FOR_INSERT_UPDATE") {
		t.Errorf("moving a role to another Opportunity: %d %s", r.status, r.body)
	}
	q := "SELECT Id, (SELECT Id, Role, IsPrimary, ContactId, Contact.FirstName, Contact.LastName, Contact.Email, Contact.Phone FROM OpportunityContactRoles) FROM Opportunity WHERE Id = '" + opp + "'"
	r = do(t, srv, tok, "GET", "/query/?q="+url.QueryEscape(q), "")
	for _, want := range []string{`"Role":"Decision Maker"`, `"IsPrimary":false`, `"FirstName":"Sue"`, `"Email":"sue@contoso.com"`, `"Phone":"1234567890"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("query %d lacks %s: %s", r.status, want, r.body)
		}
	}
	if r := do(t, srv, tok, "DELETE", "/sobjects/Contact/"+contact, ""); r.status != 204 {
		t.Fatalf("delete contact: %d %s", r.status, r.body)
	}
	if role, ok := e.Get("OpportunityContactRole", created.ID); ok && role["IsDeleted"] != true {
		t.Error("the role outlived its Contact")
	}
}
