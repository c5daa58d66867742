package sfapi

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/services/emulators/sfemu"
)

func newClient(t *testing.T, opts sfemu.Options) (*sfemu.Emulator, *Client) {
	t.Helper()
	e, myDomain, _ := emulated(t, opts)
	c, err := New(t.Context(), Config{Domain: myDomain, ClientID: sfemu.DefaultClientID, ClientSecret: sfemu.DefaultClientSecret, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e, c
}

func TestUsageFollowsSforceLimitInfo(t *testing.T) {
	t.Parallel()
	e, c := newClient(t, sfemu.Options{DailyAPILimit: 50})
	if _, err := c.Query(t.Context(), "SELECT Id FROM Account"); err != nil {
		t.Fatal(err)
	}
	used, max := e.APIUsage()
	if u := c.Usage(); u.Used != used || u.Max != max || u.Max != 50 {
		t.Fatalf("usage %+v, emulator says %d/%d", u, used, max)
	}
	e.ExhaustDailyLimit()
	_, err := c.Insert(t.Context(), "Account", map[string]any{"Name": "X"})
	if Code(err) != "REQUEST_LIMIT_EXCEEDED" || !IsTransient(err) {
		t.Fatalf("insert with the allowance spent: %v", err)
	}
	if u := c.Usage(); u.Remaining() > 0 {
		t.Fatalf("usage %+v after REQUEST_LIMIT_EXCEEDED, want nothing remaining", u)
	}
	e.ResetFaults()
	if u, err := c.Limits(t.Context()); err != nil || u.Remaining() != 50-1 {
		t.Fatalf("limits after reset: %+v %v", u, err)
	}
}

func TestCollectionsReportEachRecord(t *testing.T) {
	t.Parallel()
	e, c := newClient(t, sfemu.Options{})
	res, err := c.CreateRecords(t.Context(), "Account", []Record{{"Name": "A"}, {"Phone": "1"}, {"Name": "C"}})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Success || res[1].Success || !res[2].Success || Code(res[1].Err("create")) != "REQUIRED_FIELD_MISSING" {
		t.Fatalf("results %+v", res)
	}
	e.LockNextWrites(1)
	up, err := c.UpsertRecords(t.Context(), "Opportunity", "Referral_Identifier__c", []Record{
		{"Referral_Identifier__c": "r-1", "Name": "One", "StageName": "Prospecting", "CloseDate": "2027-01-01"},
		{"Referral_Identifier__c": "r-2", "Name": "Two", "StageName": "Prospecting", "CloseDate": "2027-01-01"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if up[0].Success || !IsTransient(up[0].Err("upsert")) || !up[1].Success || !up[1].Created {
		t.Fatalf("upsert results %+v", up)
	}
	del, err := c.DeleteRecords(t.Context(), []string{res[0].ID, res[2].ID})
	if err != nil || !del[0].Success || !del[1].Success {
		t.Fatalf("delete: %+v %v", del, err)
	}
	many := make([]Record, MaxCollection+1)
	if _, err := c.CreateRecords(t.Context(), "Account", many); Code(err) != "EXCEEDED_ID_LIMIT" {
		t.Fatalf("201 records: %v", err)
	}
}

func TestQueryEachPagesAndComposite(t *testing.T) {
	t.Parallel()
	e, c := newClient(t, sfemu.Options{})
	for i := 0; i < 2001; i++ {
		if _, err := e.Insert("Account", map[string]any{"Name": fmt.Sprintf("A%04d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var pages []int
	if err := c.QueryEach(t.Context(), "SELECT Id FROM Account", false, func(rows []map[string]any) error {
		pages = append(pages, len(rows))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pages) != "[2000 1]" {
		t.Fatalf("pages %v", pages)
	}
	calls0 := e.Counts()["composite"]
	out, err := c.Composite(t.Context(), false, []Subrequest{
		{Method: http.MethodGet, URL: QueryURL("SELECT COUNT() FROM Account", false), ReferenceID: "n"},
		{Method: http.MethodPost, URL: "/sobjects/Account", ReferenceID: "a", Body: map[string]any{"Name": "Z"}},
		{Method: http.MethodPost, URL: "/sobjects/Account", ReferenceID: "bad", Body: map[string]any{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Err("q") != nil || out[1].HTTPStatusCode != 201 || Code(out[2].Err("bad")) != "REQUIRED_FIELD_MISSING" {
		t.Fatalf("composite %+v", out)
	}
	if e.Counts()["composite"] != calls0+1 {
		t.Fatal("composite not counted as one call")
	}
}

// WriteAll sends one Collections write as a plain Collections call and several as one Composite call,
// in which a record takes a value of an earlier write's result by Reference; a write halted by a
// reference that finds no value gets its own error, the others their results.
func TestWriteAllIsOneCall(t *testing.T) {
	t.Parallel()
	e, c := newClient(t, sfemu.Options{})
	opp := func(ref, account string) Record {
		return Record{"Referral_Identifier__c": ref, "Name": ref, "StageName": "Prospecting", "CloseDate": "2027-01-01", "AccountId": account}
	}
	c0 := e.Counts()
	res, errs, err := c.WriteAll(t.Context(), []Collection{
		{Op: CollectionCreate, Object: "Account", Ref: "acc", Records: []Record{{"Name": "A"}, {"Phone": "1"}}},
		{Op: CollectionUpsert, Object: "Opportunity", ExternalIDField: "Referral_Identifier__c", Records: []Record{opp("r-1", Reference("acc", 0, "id"))}},
		{Op: CollectionUpsert, Object: "Opportunity", ExternalIDField: "Referral_Identifier__c", Records: []Record{opp("r-2", Reference("acc", 1, "id"))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || !res[0][0].Success || res[0][1].Success || errs[1] != nil || !res[1][0].Created || Code(errs[2]) != "PROCESSING_HALTED" {
		t.Fatalf("results %+v, errors %v", res, errs)
	}
	if got := e.All("Opportunity"); len(got) != 1 || got[0]["AccountId"] != res[0][0].ID {
		t.Fatalf("opportunities %v, want r-1 under the account created in the same call", got)
	}
	one, errs, err := c.WriteAll(t.Context(), []Collection{{Op: CollectionUpdate, Object: "Account", Records: []Record{{"Id": res[0][0].ID, "Phone": "2"}}}})
	if err != nil || errs[0] != nil || !one[0][0].Success {
		t.Fatalf("one write: %+v %v %v", one, errs, err)
	}
	c1 := e.Counts()
	if c1["composite"]-c0["composite"] != 1 || c1["collections.update"]-c0["collections.update"] != 1 {
		t.Fatalf("calls %v, want one Composite and one Collections update", c1)
	}
	if _, _, err := c.WriteAll(t.Context(), make([]Collection, MaxCompositeCollections+1)); Code(err) != "LIMIT_EXCEEDED" {
		t.Fatalf("%d writes: %v", MaxCompositeCollections+1, err)
	}
}

// Quote makes a SOQL string literal whatever the value holds: a quote or a backslash is escaped, so a
// customer named "O'Brien \ Sons" is looked up as itself, never ends the literal.
func TestQuoteEscapesTheLiteral(t *testing.T) {
	for in, want := range map[string]string{
		`Contoso`:        `'Contoso'`,
		`O'Brien \ Sons`: `'O\'Brien \\ Sons'`,
		`\'`:             `'\\\''`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}
