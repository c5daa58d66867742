package mapping

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
)

// documentedReferral is the documented Get-by-id sample (partner-center.md §2) with the fields the
// co-sell connector maps filled in: a closing date, a solution, the partner team and the help asked for.
func documentedReferral(t *testing.T) partnercenter.Referral {
	t.Helper()
	const doc = `{
	  "id": "61c65491-2f2c-461a-84b4-3654499bc1d9", "engagementId": "b1c40bb4-6d36-4eca-baa3-e1460cf2a454",
	  "name": "Contoso supply chain", "updatedDateTime": "2018-10-29T21:24:52.040469Z",
	  "status": "Active", "substatus": "Accepted", "qualification": "SalesQualified", "type": "Independent",
	  "customerProfile": {"name": "Contoso Customer Inc",
	    "address": {"addressLine1": "One Microsoft Way", "addressLine2": "34", "city": "Redmond", "state": "WA", "postalCode": "98052", "country": "us", "region": "Washington"},
	    "size": "10to50employees",
	    "team": [
	      {"contactPreference": {"locale": "en-us", "disableNotifications": false}, "firstName": "Sue", "lastName": "Smith", "phoneNumber": "1234567890", "email": "sue.smith@contoso.com"},
	      {"contactPreference": {"locale": "en-us", "disableNotifications": false}, "firstName": "Joe", "lastName": "Hansen", "phoneNumber": "4035698759", "email": "joe.hansen@contoso.com"}]},
	  "consent": {"consentToToShareInfoWithOthers": true, "consentToContact": true, "consentToShareReferralWithMicrosoftSellers": true},
	  "trackingInfo": {"microsoftMsxId": "7-ABCDEF123"},
	  "details": {"notes": "Customer is looking to leverage Dynamics 365.", "dealValue": 50000.004, "currency": "usd",
	    "closingDateTime": "2027-01-31T00:00:00Z",
	    "requirements": {"solutions": [{"name": "Dynamics 365 for Field Service", "type": "Category", "id": "Dynamics365forFieldService"}]}},
	  "team": [{"firstName": "John", "lastName": "Doe", "phoneNumber": "1231231234", "email": "John.Doe@microsoft.com"}],
	  "inviteContext": {"notes": "Hi ABC Partner", "assistanceRequestCode": "ProofOfConceptOrDemo", "invitedBy": {"organizationId": "msft"}},
	  "eTag": "\"2500ec5a-0000-0000-0000-5bf4967d0000\""}`
	var r partnercenter.Referral
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// documentedOpportunity is an Opportunity as sf-ingest reads it, with its Account, team and solutions.
func documentedOpportunity() contracts.Opportunity {
	return contracts.Opportunity{ID: "006000000000001AAA", Fields: map[string]any{
		sf.FieldName: "Fabrikam rollout", sf.FieldAmount: 1200.5, sf.FieldCurrencyIsoCode: "EUR",
		sf.FieldCloseDate: "2027-03-01", sf.FieldStageName: "Qualification", sf.FieldDescription: "notes",
		sf.FieldIsWon: false, sf.FieldIsClosed: false, sf.FieldSyncWithPartnerCenter: true,
		sf.FieldHowCanMicrosoftHelp: "Quotes or licensing", sf.FieldReferralVisibility: true, sf.FieldMicrosoftCRMIdentifier: "typed by a seller",
		"Account.Name": "Fabrikam", "Account.BillingStreet": "Unter den Linden 1", "Account.BillingCity": "Berlin",
		"Account.BillingState": "BE", "Account.BillingPostalCode": "10117", "Account.BillingCountry": "de",
	},
		TeamMembers: []contracts.TeamMember{{UserID: "005A", FirstName: "Ann", LastName: "Seller", Email: "ann@partner.example", Phone: "+49 30 1"}},
		Contacts:    []contracts.ContactRole{{ContactID: "003A", Role: "Decision Maker", FirstName: "Kim", LastName: "Buyer", Email: "Kim@Fabrikam.example", Phone: "+49 30 2"}},
		Solutions:   []contracts.Solution{{SolutionID: "SOL-34104-EBB", Name: "Fabrikam on Azure"}},
	}
}

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func TestDefaultMappingFileIsTheDefault(t *testing.T) {
	m := Default()
	if m.Stages != (Stages{Hold: "Prospecting", Active: "Qualification", Won: "Closed Won", Lost: "Closed Lost"}) ||
		m.DefaultCurrency != "USD" || !strings.Contains(m.ReferralLinkFormat, "%s") {
		t.Fatalf("settings = %+v", m)
	}
	var names []string
	for _, f := range m.Fields {
		names = append(names, f.Name)
	}
	want := []string{FieldName, FieldCustomerName, FieldStreet, FieldCity, FieldState, FieldPostalCode, FieldCountry,
		FieldDealValue, FieldCurrency, FieldCloseDate, FieldNotes, FieldHelp, FieldSolutions, FieldTeam, FieldContacts, FieldVisibility, FieldCRMID, FieldStatus}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("fields = %v, want %v", names, want)
	}
	// Mutating a copy does not change the next caller's default.
	m.Fields[0].ToSF = Never
	if Default().Fields[0].ToSF != Always {
		t.Fatal("Default shares its rules between callers")
	}
}

// TestEveryFieldBothWays reads the documented samples of both sides and writes every mapped field to the
// other side.
func TestEveryFieldBothWays(t *testing.T) {
	m := Default()
	r := documentedReferral(t)
	o := documentedOpportunity()
	pcVals, sfVals := m.FromReferral(r), m.FromOpportunity(o)
	oppFields := m.OpportunityFields(pcVals, true, t0)
	account := m.Account(pcVals, nil)
	sols, setSols := m.OpportunitySolutions(pcVals, true)
	created := m.ReferralCreate(o.ID, sfVals)
	team := []any{map[string]any{"email": "john.doe@microsoft.com", "firstName": "John", "lastName": "Doe", "phone": "1231231234"}}
	cases := []struct {
		field          string
		fromPC, fromSF any
		pcToSF         func() any // where the PC value lands in Salesforce
		sfToPC         func() any // where the SF value lands in the created referral
	}{
		{FieldName, "Contoso supply chain", "Fabrikam rollout", func() any { return oppFields[sf.FieldName] }, func() any { return created.Name }},
		{FieldCustomerName, "Contoso Customer Inc", "Fabrikam", func() any { return account.Name }, func() any { return created.CustomerProfile.Name }},
		{FieldStreet, "One Microsoft Way", "Unter den Linden 1", func() any { return account.Street }, func() any { return created.CustomerProfile.Address.AddressLine1 }},
		{FieldCity, "Redmond", "Berlin", func() any { return account.City }, func() any { return created.CustomerProfile.Address.City }},
		{FieldState, "WA", "BE", func() any { return account.State }, func() any { return created.CustomerProfile.Address.State }},
		{FieldPostalCode, "98052", "10117", func() any { return account.PostalCode }, func() any { return created.CustomerProfile.Address.PostalCode }},
		{FieldCountry, "US", "DE", func() any { return account.Country }, func() any { return created.CustomerProfile.Address.Country }},
		{FieldDealValue, 50000.0, 1200.5, func() any { return oppFields[sf.FieldAmount] }, func() any { return *created.Details.DealValue }},
		{FieldCurrency, "USD", "EUR", func() any { return oppFields[sf.FieldCurrencyIsoCode] }, func() any { return created.Details.Currency }},
		{FieldCloseDate, "2027-01-31", "2027-03-01", func() any { return oppFields[sf.FieldCloseDate] }, func() any { return created.Details.ClosingDateTime }},
		{FieldNotes, "Customer is looking to leverage Dynamics 365.", "notes", func() any { return oppFields[sf.FieldDescription] }, func() any { return created.Details.Notes }},
		{FieldHelp, "ProofOfConceptOrDemo", "QuotesOrLicensing", func() any { return oppFields[sf.FieldHowCanMicrosoftHelp] }, func() any { return created.InviteContext.AssistanceRequestCode }},
		{FieldSolutions, []any{map[string]any{"id": "Dynamics365forFieldService", "name": "Dynamics 365 for Field Service"}},
			[]any{map[string]any{"id": "SOL-34104-EBB", "name": "Fabrikam on Azure"}},
			func() any { return fmt.Sprint(setSols, sols) }, func() any { return fmt.Sprint(created.Details.Requirements.Solutions) }},
		{FieldTeam, team, []any{map[string]any{"email": "ann@partner.example", "firstName": "Ann", "lastName": "Seller", "phone": "+49 30 1"}},
			func() any { return nil }, func() any { return fmt.Sprint(created.Team) }},
		{FieldContacts, []any{
			map[string]any{"email": "joe.hansen@contoso.com", "firstName": "Joe", "lastName": "Hansen", "phone": "4035698759"},
			map[string]any{"email": "sue.smith@contoso.com", "firstName": "Sue", "lastName": "Smith", "phone": "1234567890"}},
			[]any{map[string]any{"email": "kim@fabrikam.example", "firstName": "Kim", "lastName": "Buyer", "phone": "+49 30 2"}},
			func() any { c, set := m.OpportunityContacts(pcVals, true); return fmt.Sprint(set, c) }, func() any { return fmt.Sprint(created.CustomerProfile.Team) }},
		{FieldVisibility, true, true, func() any { return oppFields[sf.FieldReferralVisibility] }, func() any { return *created.Consent.ConsentToShareReferralWithMicrosoftSellers }},
		{FieldCRMID, "7-ABCDEF123", "typed by a seller", func() any { return oppFields[sf.FieldMicrosoftCRMIdentifier] }, func() any { return created.TrackingInfo }},
		{FieldStatus, StatusActive, StatusActive, func() any { return oppFields[sf.FieldStageName] }, func() any { return created.Status + "/" + created.Substatus }},
	}
	wantSF := map[string]any{
		FieldName: "Contoso supply chain", FieldCustomerName: "Contoso Customer Inc", FieldStreet: "One Microsoft Way",
		FieldCity: "Redmond", FieldState: "WA", FieldPostalCode: "98052", FieldCountry: "US", FieldDealValue: 50000.0,
		FieldCurrency: "USD", FieldCloseDate: "2027-01-31", FieldNotes: "Customer is looking to leverage Dynamics 365.",
		FieldHelp:       "Proof of concept or demo",
		FieldSolutions:  "true [{ Dynamics365forFieldService Dynamics 365 for Field Service}]",
		FieldTeam:       nil, // toSF: never — Salesforce users are not created from Partner Center
		FieldContacts:   "true [{  false Joe Hansen joe.hansen@contoso.com 4035698759} {  false Sue Smith sue.smith@contoso.com 1234567890}]",
		FieldStatus:     "Qualification",
		FieldVisibility: true, FieldCRMID: "7-ABCDEF123",
	}
	wantPC := map[string]any{
		FieldName: "Fabrikam rollout", FieldCustomerName: "Fabrikam", FieldStreet: "Unter den Linden 1", FieldCity: "Berlin",
		FieldState: "BE", FieldPostalCode: "10117", FieldCountry: "DE", FieldDealValue: 1200.5, FieldCurrency: "EUR",
		FieldCloseDate: "2027-03-01T00:00:00Z", FieldNotes: "notes", FieldHelp: "QuotesOrLicensing",
		FieldSolutions:  "[{SOL-34104-EBB Fabrikam on Azure  <nil> <nil>   }]",
		FieldTeam:       "[{Ann Seller +49 30 1 ann@partner.example  <nil>}]",
		FieldContacts:   "[{Kim Buyer +49 30 2 kim@fabrikam.example  <nil>}]",
		FieldVisibility: true,
		FieldCRMID:      (*partnercenter.TrackingInfo)(nil), // toPC: never — Microsoft's id, read-only on the Opportunity
		FieldStatus:     "New/Pending",                      // a referral is created New; Partner Center makes a partner's own referral Active
	}
	if len(cases) != len(m.Fields) {
		t.Fatalf("%d cases for %d mapped fields", len(cases), len(m.Fields))
	}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
			if !reflect.DeepEqual(pcVals[c.field], c.fromPC) {
				t.Errorf("from the referral: %#v, want %#v", pcVals[c.field], c.fromPC)
			}
			if !reflect.DeepEqual(sfVals[c.field], c.fromSF) {
				t.Errorf("from the Opportunity: %#v, want %#v", sfVals[c.field], c.fromSF)
			}
			if got := c.pcToSF(); !reflect.DeepEqual(got, wantSF[c.field]) {
				t.Errorf("written to Salesforce: %#v, want %#v", got, wantSF[c.field])
			}
			if got := c.sfToPC(); !reflect.DeepEqual(got, wantPC[c.field]) {
				t.Errorf("written to Partner Center: %#v, want %#v", got, wantPC[c.field])
			}
		})
	}
}

// TestPatchOfEveryPatchableField sends each field that travels to Partner Center on every change.
func TestPatchOfEveryPatchableField(t *testing.T) {
	m := Default()
	o := documentedOpportunity()
	v := m.FromOpportunity(o)
	ops := m.ReferralPatch(v, StatusActive)
	got := map[string]string{}
	for _, op := range ops {
		b, _ := json.Marshal(op.Value)
		got[op.Path] = string(b)
	}
	want := map[string]string{
		"/details/dealValue": "1200.5", "/details/currency": `"EUR"`, "/details/closingDateTime": `"2027-03-01T00:00:00Z"`,
		"/details/notes": `"notes"`, "/status": `"Active"`, "/substatus": `"Accepted"`,
		"/consent/consentToShareReferralWithMicrosoftSellers": "true",
		"/details/requirements/solutions":                     `[{"id":"SOL-34104-EBB","name":"Fabrikam on Azure"}]`,
		"/team":                                               `[{"firstName":"Ann","lastName":"Seller","phoneNumber":"+49 30 1","email":"ann@partner.example"}]`,
		"/customerProfile/team":                               `[{"firstName":"Kim","lastName":"Buyer","phoneNumber":"+49 30 2","email":"kim@fabrikam.example"}]`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("patch = %v\nwant    %v", got, want)
	}
}

// TestTransforms covers the typed transforms: money, dates, ISO codes, length limits, value tables.
func TestTransforms(t *testing.T) {
	m := Default()
	cases := []struct {
		name  string
		field string
		in    map[string]any
		want  any
	}{
		{"money rounds to cents", FieldDealValue, map[string]any{sf.FieldAmount: 10.005}, 10.01},
		{"money that is not a number is no value", FieldDealValue, map[string]any{sf.FieldAmount: "ten"}, nil},
		{"a datetime keeps its date", FieldCloseDate, map[string]any{sf.FieldCloseDate: "2027-03-01T10:00:00.000+0000"}, "2027-03-01"},
		{"a bad date is no value", FieldCloseDate, map[string]any{sf.FieldCloseDate: "31/03/2027"}, nil},
		{"currency upper-cased", FieldCurrency, map[string]any{sf.FieldCurrencyIsoCode: " eur "}, "EUR"},
		{"a currency name is not a code", FieldCurrency, map[string]any{sf.FieldCurrencyIsoCode: "Euro"}, nil},
		{"country code upper-cased", FieldCountry, map[string]any{"Account.BillingCountry": "de"}, "DE"},
		{"a country name is not an ISO code", FieldCountry, map[string]any{"Account.BillingCountry": "Germany"}, nil},
		{"text cut to the limit", FieldName, map[string]any{sf.FieldName: strings.Repeat("é", 130)}, strings.Repeat("é", 120)},
		{"blank text is no value", FieldNotes, map[string]any{sf.FieldDescription: "   "}, nil},
		{"picklist value through the table", FieldHelp, map[string]any{sf.FieldHowCanMicrosoftHelp: "General or other"}, "GeneralOrOther"},
		{"a value not in the table is no value", FieldHelp, map[string]any{sf.FieldHowCanMicrosoftHelp: "Free lunch"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := m.FromOpportunity(contracts.Opportunity{ID: "006", Fields: c.in})[c.field]
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("%s = %#v, want %#v", c.field, got, c.want)
			}
		})
	}
	// Assistance code Unknown is "no help" in Salesforce, and no help is Unknown in Partner Center.
	r := documentedReferral(t)
	r.InviteContext.AssistanceRequestCode = "Unknown"
	if v, ok := m.FromReferral(r)[FieldHelp]; ok {
		t.Errorf("Unknown reads as %v, want no value", v)
	}
	o := documentedOpportunity()
	delete(o.Fields, sf.FieldHowCanMicrosoftHelp)
	if c := m.ReferralCreate(o.ID, m.FromOpportunity(o)); c.InviteContext == nil || c.InviteContext.AssistanceRequestCode != "Unknown" {
		t.Errorf("no help creates %+v, want Unknown", c.InviteContext)
	}
}

// TestStageRules covers every stage rule both ways.
func TestStageRules(t *testing.T) {
	def := Default()
	decl := Default()
	decl.Stages.Decline = "Needs Analysis"
	fromSF := []struct {
		name           string
		m              Mapping
		stage          string
		isWon, isClose any
		want           string
	}{
		{"hold stage is a received referral", def, "Prospecting", false, false, StatusNew},
		{"active stage", def, "Qualification", false, false, StatusActive},
		{"any other open stage is active", def, "Negotiation/Review", false, false, StatusActive},
		{"won stage", def, "Closed Won", true, true, StatusWon},
		{"a custom won stage by IsWon", def, "Signed", true, true, StatusWon},
		{"lost stage", def, "Closed Lost", false, true, StatusLost},
		{"a custom closed stage by IsClosed", def, "Cancelled", false, true, StatusLost},
		{"decline stage when configured", decl, "Needs Analysis", false, false, StatusDeclined},
	}
	for _, c := range fromSF {
		t.Run("from Salesforce: "+c.name, func(t *testing.T) {
			o := contracts.Opportunity{ID: "006", Fields: map[string]any{sf.FieldStageName: c.stage, sf.FieldIsWon: c.isWon, sf.FieldIsClosed: c.isClose}}
			if got := c.m.FromOpportunity(o)[FieldStatus]; got != c.want {
				t.Fatalf("status = %v, want %v", got, c.want)
			}
		})
	}
	fromPC := []struct {
		name              string
		m                 Mapping
		status, substatus string
		wantStage         string
	}{
		{"new referral waits in hold", def, "New", "Pending", "Prospecting"},
		{"accepted referral is active", def, "Active", "Accepted", "Qualification"},
		{"won", def, "Closed", "Won", "Closed Won"},
		{"lost", def, "Closed", "Lost", "Closed Lost"},
		{"declined without a decline stage is lost", def, "Closed", "Declined", "Closed Lost"},
		{"expired without a decline stage is lost", def, "Closed", "Expired", "Closed Lost"},
		{"declined goes to the decline stage", decl, "Closed", "Declined", "Needs Analysis"},
		{"expired goes to the decline stage", decl, "Closed", "Expired", "Needs Analysis"},
	}
	for _, c := range fromPC {
		t.Run("from Partner Center: "+c.name, func(t *testing.T) {
			v := c.m.FromReferral(partnercenter.Referral{Status: c.status, Substatus: c.substatus})
			if got := c.m.OpportunityFields(v, false, t0)[sf.FieldStageName]; got != c.wantStage {
				t.Fatalf("stage = %v, want %v", got, c.wantStage)
			}
		})
	}
	toPC := []struct {
		name, status, from string
		want               string
	}{
		{"leaving hold accepts", StatusActive, StatusNew, "Active/Accepted"},
		{"won", StatusWon, StatusActive, "Closed/Won"},
		{"lost after acceptance", StatusLost, StatusActive, "Closed/Lost"},
		{"lost before acceptance declines", StatusLost, StatusNew, "Closed/Declined"},
		{"decline stage declines", StatusDeclined, StatusActive, "Closed/Declined"},
		{"back to hold sends nothing", StatusNew, StatusActive, ""},
	}
	for _, c := range toPC {
		t.Run("to Partner Center: "+c.name, func(t *testing.T) {
			ops := def.ReferralPatch(Values{FieldStatus: c.status}, c.from)
			got := ""
			if len(ops) == 2 {
				got = fmt.Sprint(ops[0].Value, "/", ops[1].Value)
			}
			if got != c.want {
				t.Fatalf("status patch = %q (%v), want %q", got, ops, c.want)
			}
		})
	}
}
