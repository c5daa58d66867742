package sfemu

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	"github.com/k-capehart/go-salesforce/v2"
)

// The tests in this file drive the emulator with the client cosell uses, go-salesforce v2.5.2, so the
// emulator is proven to speak exactly what it sends and expects.

func clientFor(t *testing.T, srv string) *salesforce.Salesforce {
	t.Helper()
	sf, err := salesforce.Init(salesforce.Creds{Domain: srv, ConsumerKey: DefaultClientID, ConsumerSecret: DefaultClientSecret})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return sf
}

func TestClientLoginFlows(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, srv := newServer(t, Options{Username: "int@example.com", Password: "pw", JWTPublicKey: &key.PublicKey})
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))

	if _, err := salesforce.Init(salesforce.Creds{Domain: srv.URL, ConsumerKey: DefaultClientID,
		ConsumerSecret: DefaultClientSecret, Username: "int@example.com", Password: "p", SecurityToken: "w"}); err != nil {
		t.Fatalf("password flow: %v", err)
	}
	if _, err := salesforce.Init(salesforce.Creds{Domain: srv.URL, ConsumerKey: DefaultClientID,
		ConsumerSecret: DefaultClientSecret, Username: "int@example.com", Password: "wrong", SecurityToken: "x"}); err == nil {
		t.Fatal("password flow with a wrong password succeeded")
	}
	if _, err := salesforce.Init(salesforce.Creds{Domain: srv.URL, ConsumerKey: DefaultClientID, ConsumerSecret: "nope"}); err == nil {
		t.Fatal("client credentials with a wrong secret succeeded")
	}
	if _, err := salesforce.Init(salesforce.Creds{Domain: srv.URL, ConsumerKey: DefaultClientID,
		Username: "int@example.com", ConsumerRSAPem: pemKey}); err != nil {
		t.Fatalf("jwt flow: %v", err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherPem := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)}))
	if _, err := salesforce.Init(salesforce.Creds{Domain: srv.URL, ConsumerKey: DefaultClientID,
		Username: "int@example.com", ConsumerRSAPem: otherPem}); err == nil {
		t.Fatal("jwt signed by another key succeeded")
	}
	sf := clientFor(t, srv.URL)
	if !strings.HasPrefix(sf.GetInstanceUrl(), srv.URL) {
		t.Fatalf("instance url %q, want %q", sf.GetInstanceUrl(), srv.URL)
	}
	if got := e.Counts()["token"]; got != 6 {
		t.Fatalf("token calls = %d, want 6", got)
	}
}

type opportunityRow struct {
	Id                     string
	Name                   string
	StageName              string
	CloseDate              string
	Amount                 float64
	IsClosed               bool
	SystemModstamp         string
	Referral_Identifier__c string
	Account                *struct{ Name string }
	OpportunityTeamMembers *struct {
		TotalSize int
		Records   []struct{ Id, UserId string }
	}
}

func TestClientCRUDAndQuery(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	sf := clientFor(t, srv.URL)

	acc, err := sf.InsertOne("Account", map[string]any{"Name": "Contoso"})
	if err != nil || !acc.Success {
		t.Fatalf("insert account: %v %+v", err, acc)
	}
	res, err := sf.InsertOne("Opportunity", map[string]any{"Name": "Deal", "StageName": "Prospecting",
		"CloseDate": "2026-11-24", "Amount": 1500000, "AccountId": acc.Id})
	if err != nil || !res.Success || len(res.Id) != 18 || res.Id[:3] != "006" {
		t.Fatalf("insert opportunity: %v %+v", err, res)
	}
	if err := sf.UpdateOne("Opportunity", map[string]any{"Id": res.Id, "StageName": "Closed Won"}); err != nil {
		t.Fatalf("update: %v", err)
	}
	got, _ := e.Get("Opportunity", res.Id)
	if got["IsClosed"] != true || got["IsWon"] != true || got["CurrencyIsoCode"] != "USD" {
		t.Fatalf("derived fields: %v", got)
	}

	// Upsert by external id: created, then updated, never duplicated.
	up, err := sf.UpsertOne("Opportunity", "Referral_Identifier__c", map[string]any{"Referral_Identifier__c": "ref-1",
		"Name": "From PC", "StageName": "Qualification", "CloseDate": "2026-12-31"})
	if err != nil || !up.Success {
		t.Fatalf("upsert create: %v %+v", err, up)
	}
	up2, err := sf.UpsertOne("Opportunity", "Referral_Identifier__c", map[string]any{"Referral_Identifier__c": "ref-1",
		"Name": "From PC, renamed"})
	if err != nil || up2.Id != up.Id {
		t.Fatalf("upsert update: %v %+v (first %s)", err, up2, up.Id)
	}
	if n := len(e.All("Opportunity")); n != 2 {
		t.Fatalf("opportunities = %d, want 2", n)
	}

	mustInsert(t, e, "OpportunityTeamMember", map[string]any{"OpportunityId": res.Id, "UserId": e.IntegrationUserID(),
		"TeamMemberRole": "Sales Rep"})

	var rows []opportunityRow
	err = sf.Query("SELECT Id, Name, StageName, CloseDate, Amount, IsClosed, SystemModstamp, Referral_Identifier__c, Account.Name, "+
		"(SELECT Id, UserId FROM OpportunityTeamMembers) FROM Opportunity ORDER BY Name", &rows)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if len(rows) != 2 {
		t.Fatalf("rows = %d", len(rows))
	}
	deal, pc := rows[0], rows[1]
	if deal.Name != "Deal" || deal.Account == nil || deal.Account.Name != "Contoso" || deal.Amount != 1500000 ||
		deal.OpportunityTeamMembers == nil || deal.OpportunityTeamMembers.TotalSize != 1 ||
		deal.OpportunityTeamMembers.Records[0].UserId != e.IntegrationUserID() || !deal.IsClosed {
		t.Fatalf("deal row: %+v", deal)
	}
	if pc.Name != "From PC, renamed" || pc.Account != nil || pc.OpportunityTeamMembers != nil ||
		pc.Referral_Identifier__c != "ref-1" || pc.SystemModstamp <= deal.SystemModstamp {
		t.Fatalf("pc row: %+v", pc)
	}
	if err := sf.DeleteOne("Opportunity", map[string]any{"Id": res.Id}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if members := e.All("OpportunityTeamMember"); len(members) != 0 {
		t.Fatalf("team members survive their opportunity: %v", members)
	}
	c := e.Counts()
	for _, k := range []string{"sobjects.create", "sobjects.update", "sobjects.upsert", "sobjects.delete", "query"} {
		if c[k] == 0 {
			t.Fatalf("count %s is 0: %v", k, c)
		}
	}
}

func TestClientPagingAndCollections(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	sf := clientFor(t, srv.URL)

	records := make([]map[string]any, 450)
	for i := range records {
		records[i] = map[string]any{"Name": fmt.Sprintf("Opp %03d", i), "StageName": "Prospecting", "CloseDate": "2026-11-24"}
	}
	ins, err := sf.InsertCollection("Opportunity", records, 200)
	if err != nil || ins.HasSalesforceErrors || len(ins.Results) != 450 {
		t.Fatalf("insert collection: %v %+v", err, ins.HasSalesforceErrors)
	}
	updates := make([]map[string]any, len(ins.Results))
	for i, r := range ins.Results {
		updates[i] = map[string]any{"Id": r.Id, "StageName": "Needs Analysis"}
	}
	upd, err := sf.UpdateCollection("Opportunity", updates, 200)
	if err != nil || upd.HasSalesforceErrors || len(upd.Results) != 450 {
		t.Fatalf("update collection: %v %+v", err, upd)
	}
	if got := e.Counts()["collections.update"]; got != 3 {
		t.Fatalf("collections.update calls = %d, want 3", got)
	}

	// Pages of 200 need the batchSize header, which go-salesforce's Query cannot send; 2000 rows a page
	// by default, so add enough rows to need two pages.
	more := make([]map[string]any, 200)
	for round := 0; round < 8; round++ {
		for i := range more {
			more[i] = map[string]any{"Name": fmt.Sprintf("Bulk %d-%03d", round, i), "StageName": "Prospecting", "CloseDate": "2026-11-24"}
		}
		if r, err := sf.InsertCollection("Opportunity", more, 200); err != nil || r.HasSalesforceErrors {
			t.Fatalf("insert more: %v", err)
		}
	}
	var rows []struct{ Id, StageName string }
	if err := sf.Query("SELECT Id, StageName FROM Opportunity ORDER BY SystemModstamp, Id", &rows); err != nil {
		t.Fatalf("query: %v", err)
	}
	if len(rows) != 2050 {
		t.Fatalf("rows = %d, want 2050", len(rows))
	}
	if rows[0].StageName != "Needs Analysis" {
		t.Fatalf("first row %+v", rows[0])
	}
	if c := e.Counts(); c["query"] != 1 || c["query.more"] != 1 {
		t.Fatalf("query calls %v", c)
	}
}

func TestClientRefreshesExpiredSession(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	sf := clientFor(t, srv.URL)
	e.ExpireSessions()
	res, err := sf.InsertOne("Account", map[string]any{"Name": "After expiry"})
	if err != nil || !res.Success {
		t.Fatalf("insert after expiry: %v %+v", err, res)
	}
	c := e.Counts()
	if c["token"] != 2 || c["sobjects.create"] != 2 {
		t.Fatalf("counts %v: want 2 token calls and 2 creates (one refused)", c)
	}
	if n := len(e.All("Account")); n != 1 {
		t.Fatalf("accounts = %d", n)
	}
}

func TestClientCompressedRequests(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	sf := clientFor(t, srv.URL)
	sf.Config.SetCompressionHeaders(true)
	if res, err := sf.InsertOne("Account", map[string]any{"Name": "Gzipped"}); err != nil || !res.Success {
		t.Fatalf("gzip insert: %v %+v", err, res)
	}
	var rows []struct{ Name string }
	if err := sf.Query("SELECT Name FROM Account", &rows); err != nil || len(rows) != 1 || rows[0].Name != "Gzipped" {
		t.Fatalf("query: %v %+v", err, rows)
	}
	if len(e.All("Account")) != 1 {
		t.Fatal("account not stored")
	}
}
