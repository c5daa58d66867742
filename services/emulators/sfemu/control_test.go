package sfemu

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEmulatorRecordsAndDescribe(t *testing.T) {
	t.Parallel()
	e, srv := newServer(t, Options{})
	r := do(t, srv, "", "POST", "/_emulator/sobjects/opportunity", `{`+validOpp+`,"How_can_Microsoft_help__c":"Quotes or licensing"}`)
	var res saveResult
	if r.status != 201 || json.Unmarshal([]byte(r.body), &res) != nil || !res.Success {
		t.Fatalf("emulator create: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "", "PATCH", "/_emulator/sobjects/Opportunity/"+res.ID[:15], `{"stagename":"Closed Lost"}`); r.status != 204 {
		t.Fatalf("emulator update: %d %s", r.status, r.body)
	}
	if r := do(t, srv, "", "PATCH", "/_emulator/sobjects/Opportunity/"+res.ID, `{"StageName":"Nope"}`); r.status != 400 ||
		errorCode(t, r) != "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" {
		t.Fatalf("emulator update validates: %d %s", r.status, r.body)
	}
	r = do(t, srv, "", "GET", "/_emulator/sobjects/Opportunity", "")
	var list struct {
		TotalSize int
		Records   []map[string]any
	}
	if json.Unmarshal([]byte(r.body), &list) != nil || list.TotalSize != 1 || list.Records[0]["IsClosed"] != true ||
		list.Records[0]["Sync_with_Partner_Center__c"] != false {
		t.Fatalf("emulator list: %s", r.body)
	}
	if r := do(t, srv, "", "GET", "/_emulator/sobjects/Opportunity/"+res.ID, ""); r.status != 200 {
		t.Fatalf("emulator get: %d", r.status)
	}
	for q, want := range map[string]string{"?count=true": `"totalSize":1`, "?count=true&notNull=Referral_Identifier__c": `"totalSize":0`,
		"?count=true&notNull=How_can_Microsoft_help__c": `"totalSize":1`} {
		if r := do(t, srv, "", "GET", "/_emulator/sobjects/Opportunity"+q, ""); r.status != 200 || !strings.Contains(r.body, want) ||
			!strings.Contains(r.body, `"records":[]`) {
			t.Fatalf("emulator count %s: %d %s, want %s and no records", q, r.status, r.body, want)
		}
	}
	if r := do(t, srv, "", "GET", "/_emulator/sobjects/Opportunity?count=true&notNull=Nope__c", ""); r.status != 400 || errorCode(t, r) != "INVALID_FIELD" {
		t.Fatalf("emulator count of an unknown field: %d %s", r.status, r.body)
	}
	if c := e.Counts(); len(c) != 0 {
		t.Fatalf("emulator calls were counted: %v", c)
	}

	token := login(t, srv)
	r = do(t, srv, token, "GET", "/sobjects/Opportunity/describe/", "")
	var d struct {
		Name   string
		Fields []struct {
			Name, Type                     string
			Length                         int
			ExternalID                     bool `json:"externalId"`
			Unique, Createable, Updateable bool
			PicklistValues                 []struct{ Value string }
		}
		ChildRelationships []struct{ RelationshipName, ChildSObject string }
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &d) != nil || d.Name != "Opportunity" {
		t.Fatalf("describe: %d %s", r.status, r.body)
	}
	fields := map[string]int{}
	for i, f := range d.Fields {
		fields[f.Name] = i
	}
	ref := d.Fields[fields["Referral_Identifier__c"]]
	help := d.Fields[fields["How_can_Microsoft_help__c"]]
	isWon := d.Fields[fields["IsWon"]]
	if !ref.ExternalID || !ref.Unique || ref.Length != 100 || len(help.PicklistValues) != 6 || isWon.Createable || isWon.Updateable ||
		d.Fields[fields["Audit__c"]].Length != 32768 || d.Fields[fields["Sync_with_Partner_Center__c"]].Type != "boolean" {
		t.Fatalf("describe fields: %+v %+v %+v", ref, help, isWon)
	}
	rels := map[string]string{}
	for _, c := range d.ChildRelationships {
		rels[c.RelationshipName] = c.ChildSObject
	}
	if rels["Microsoft_Solutions__r"] != "Microsoft_Solution__c" || rels["OpportunityTeamMembers"] != "OpportunityTeamMember" || rels["Notes"] != "Note" {
		t.Fatalf("child relationships: %v", rels)
	}
	if r := do(t, srv, token, "GET", "/sobjects/Opportunity/"+res.ID+"?fields=Name,StageName", ""); r.status != 200 ||
		!strings.Contains(r.body, `"StageName":"Closed Lost"`) || strings.Contains(r.body, "CloseDate") {
		t.Fatalf("get with fields: %s", r.body)
	}
}

func TestFindMetadataDirFromElsewhere(t *testing.T) {
	dir, err := FindMetadataDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "force-app", "main", "default", "objects", "Opportunity")); err != nil {
		t.Fatalf("metadata dir %s: %v", dir, err)
	}
	if _, err := New(Options{MetadataDir: t.TempDir()}); err == nil {
		t.Fatal("New with an empty metadata dir succeeded")
	}
}
