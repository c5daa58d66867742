package sfemu

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestLead: the emulator has the standard Lead as Salesforce's Object Reference describes it: key prefix
// 00Q, LastName and Company required, Status defaulting to "Open - Not Contacted" and restricted to the
// org's statuses, the Converted* fields refused to API writes, and the cosell fields of the SFDX project
// (Referral_Identifier__c an External ID usable for upserts).
func TestLead(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, Options{})
	tok := login(t, srv)
	if r := do(t, srv, tok, "POST", "/sobjects/Lead", `{"LastName":"Smith"}`); r.status != 400 || !strings.Contains(r.body, "REQUIRED_FIELD_MISSING") || !strings.Contains(r.body, "Company") {
		t.Errorf("a Lead without Company: %d %s", r.status, r.body)
	}
	if r := do(t, srv, tok, "POST", "/sobjects/Lead", `{"Company":"Contoso"}`); r.status != 400 || !strings.Contains(r.body, "LastName") {
		t.Errorf("a Lead without LastName: %d %s", r.status, r.body)
	}
	if r := do(t, srv, tok, "POST", "/sobjects/Lead", `{"LastName":"Smith","Company":"Contoso","IsConverted":true}`); r.status != 400 || !strings.Contains(r.body, "INVALID_FIELD_FOR_INSERT_UPDATE") {
		t.Errorf("a Lead created converted: %d %s", r.status, r.body)
	}
	if r := do(t, srv, tok, "POST", "/sobjects/Lead", `{"LastName":"Smith","Company":"Contoso","Status":"Hot"}`); r.status != 400 || !strings.Contains(r.body, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST") {
		t.Errorf("a Lead with an unknown status: %d %s", r.status, r.body)
	}
	r := do(t, srv, tok, "PATCH", "/sobjects/Lead/Referral_Identifier__c/ref-1",
		`{"FirstName":"Sue","LastName":"Smith","Company":"Contoso","Email":"sue@contoso.com","Sync_with_Partner_Center__c":true}`)
	if r.status != 201 {
		t.Fatalf("upsert a Lead by Referral_Identifier__c: %d %s", r.status, r.body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(r.body), &created)
	if !strings.HasPrefix(created.ID, "00Q") {
		t.Errorf("lead id %q: want the 00Q key prefix", created.ID)
	}
	q := "SELECT Id, Name, Status, IsConverted, ConvertedOpportunityId, Referral_Identifier__c FROM Lead WHERE Referral_Identifier__c = 'ref-1'"
	r = do(t, srv, tok, "GET", "/query/?q="+url.QueryEscape(q), "")
	for _, want := range []string{`"Name":"Sue Smith"`, `"Status":"Open - Not Contacted"`, `"IsConverted":false`, `"ConvertedOpportunityId":null`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("query %d lacks %s: %s", r.status, want, r.body)
		}
	}
	for _, f := range []string{"IsConverted", "ConvertedOpportunityId", "ConvertedAccountId", "ConvertedContactId", "ConvertedDate"} {
		val := `"` + created.ID + `"`
		switch f {
		case "IsConverted":
			val = "true"
		case "ConvertedDate":
			val = `"2026-12-01"`
		}
		if r := do(t, srv, tok, "PATCH", "/sobjects/Lead/"+created.ID, `{"`+f+`":`+val+`}`); r.status != 400 || !strings.Contains(r.body, "INVALID_FIELD_FOR_INSERT_UPDATE") {
			t.Errorf("PATCH %s: %d %s", f, r.status, r.body)
		}
	}
}

// TestConvertLead: POST /_emulator/leads/{id}/convert does what Database.convertLead does: a new Account
// (named after Company), Contact and Opportunity, the Lead marked converted with their ids, and the Lead
// refusing updates from then on; a second conversion is refused; given records are used instead.
func TestConvertLead(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	tok := login(t, srv)
	lead := mustInsert(t, e, "Lead", map[string]any{"FirstName": "Sue", "LastName": "Smith", "Company": "Contoso",
		"Email": "sue@contoso.com", "PostalCode": "98052", "LeadSource": "Partner Referral"})
	r := do(t, srv, "", "POST", "/_emulator/leads/"+lead+"/convert", "")
	if r.status != 200 {
		t.Fatalf("convert: %d %s", r.status, r.body)
	}
	var res LeadConvertResult
	if err := json.Unmarshal([]byte(r.body), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Success || !strings.HasPrefix(res.AccountID, "001") || !strings.HasPrefix(res.ContactID, "003") || !strings.HasPrefix(res.OpportunityID, "006") {
		t.Fatalf("convert result: %+v", res)
	}
	got, _ := e.Get("Lead", lead)
	if got["IsConverted"] != true || got["ConvertedOpportunityId"] != res.OpportunityID || got["ConvertedAccountId"] != res.AccountID ||
		got["ConvertedContactId"] != res.ContactID || got["ConvertedDate"] == nil || got["Status"] != "Closed - Converted" {
		t.Errorf("converted lead: %v", got)
	}
	account, _ := e.Get("Account", res.AccountID)
	contact, _ := e.Get("Contact", res.ContactID)
	opp, _ := e.Get("Opportunity", res.OpportunityID)
	if account["Name"] != "Contoso" || account["BillingPostalCode"] != "98052" {
		t.Errorf("account: %v", account)
	}
	if contact["Name"] != "Sue Smith" || contact["Email"] != "sue@contoso.com" || contact["AccountId"] != res.AccountID {
		t.Errorf("contact: %v", contact)
	}
	if opp["Name"] != "Contoso" || opp["AccountId"] != res.AccountID || opp["StageName"] != "Prospecting" || opp["LeadSource"] != "Partner Referral" || opp["CloseDate"] == nil {
		t.Errorf("opportunity: %v", opp)
	}
	if r := do(t, srv, tok, "PATCH", "/sobjects/Lead/"+lead, `{"Phone":"123"}`); r.status != 400 || errorCode(t, r) != "CANNOT_UPDATE_CONVERTED_LEAD" {
		t.Errorf("update of a converted lead: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "", "POST", "/_emulator/leads/"+lead+"/convert", ""); r.status != 400 {
		t.Errorf("second conversion: %d %s", r.status, r.body)
	}

	// Into an existing Account and Opportunity, creating only the Contact.
	other := mustInsert(t, e, "Lead", map[string]any{"LastName": "Jones", "Company": "Fabrikam"})
	acc := mustInsert(t, e, "Account", map[string]any{"Name": "Fabrikam Ltd"})
	existing := mustInsert(t, e, "Opportunity", map[string]any{"Name": "Deal", "AccountId": acc, "StageName": "Qualification", "CloseDate": "2027-01-31"})
	if r := do(t, srv, "", "POST", "/_emulator/leads/"+other+"/convert", `{"opportunityId":"`+existing+`"}`); r.status != 400 || !strings.Contains(r.body, "accountId") {
		t.Errorf("an opportunity without its account: %d %s", r.status, r.body)
	}
	if lead, _ := e.Get("Lead", other); lead["IsConverted"] != false {
		t.Errorf("a refused conversion converted: %v", lead)
	}
	before := len(e.All("Account"))
	r = do(t, srv, "", "POST", "/_emulator/leads/"+other+"/convert", `{"accountId":"`+acc+`","opportunityId":"`+existing+`"}`)
	if r.status != 200 {
		t.Fatalf("convert into existing: %d %s", r.status, r.body)
	}
	_ = json.Unmarshal([]byte(r.body), &res)
	if res.AccountID != acc || res.OpportunityID != existing || len(e.All("Account")) != before {
		t.Errorf("convert into existing: %+v, accounts %d → %d", res, before, len(e.All("Account")))
	}
	if r := do(t, srv, "", "GET", "/_emulator/leads/"+other+"/convert", ""); r.status != 405 {
		t.Errorf("GET convert: %d %s", r.status, r.body)
	}
}
