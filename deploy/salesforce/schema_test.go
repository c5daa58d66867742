package salesforce

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func fieldXML(body string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte(`<?xml version="1.0" encoding="UTF-8"?><CustomField xmlns="http://soap.sforce.com/2006/04/metadata">` + body + `</CustomField>`)}
}

// ReadProject reads what describe would show once the project is deployed: custom objects with their Name
// field, describe's type names and lengths, a formula as read-only, a standard field's own picklist, and a
// type it does not map kept by its metadata name.
func TestReadProject(t *testing.T) {
	fsys := fstest.MapFS{
		ObjectsDir + "/Deal__c/Deal__c.object-meta.xml": {Data: []byte(`<CustomObject xmlns="http://soap.sforce.com/2006/04/metadata">` +
			`<label>Deal</label><pluralLabel>Deals</pluralLabel><nameField><label>Deal Number</label><type>AutoNumber</type></nameField></CustomObject>`)},
		ObjectsDir + "/Deal__c/fields/Opportunity__c.field-meta.xml": fieldXML(`<fullName>Opportunity__c</fullName><type>MasterDetail</type>` +
			`<referenceTo>Opportunity</referenceTo><relationshipName>Deals</relationshipName>`),
		ObjectsDir + "/Deal__c/fields/Score__c.field-meta.xml": fieldXML(`<fullName>Score__c</fullName><type>Number</type><formula>1+1</formula>`),
		ObjectsDir + "/Deal__c/fields/Tags__c.field-meta.xml":  fieldXML(`<fullName>Tags__c</fullName><type>MultiselectPicklist</type>`),
		ObjectsDir + "/Opportunity/fields/StageName.field-meta.xml": fieldXML(`<fullName>StageName</fullName><type>Picklist</type><valueSet><valueSetDefinition>` +
			`<value><fullName>Waiting</fullName><default>true</default></value><value><fullName>Won</fullName></value></valueSetDefinition></valueSet>`),
		ObjectsDir + "/Opportunity/fields/Note__c.field-meta.xml": fieldXML(`<fullName>Note__c</fullName><type>TextArea</type>`),
	}
	objects, err := ReadProject(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(objects) != 2 || objects[0].Name != "Deal__c" || !objects[0].Custom || objects[1].Custom || objects[1].NameField != nil {
		t.Fatalf("objects: %+v", objects)
	}
	deal := objects[0]
	if nf := deal.NameField; nf == nil || nf.Type != "string" || nf.Createable || nf.Updateable || nf.Label != "Deal Number" {
		t.Errorf("AutoNumber name field: %+v", nf)
	}
	by := map[string]Field{}
	for _, o := range objects {
		for _, f := range o.Fields {
			by[o.Name+"."+f.Name] = f
		}
	}
	if f := by["Deal__c.Opportunity__c"]; f.Type != "reference" || f.Length != 18 || !f.Required || f.Updateable || !f.CascadeDelete ||
		f.RelationshipName != "Opportunity__r" || f.ChildRelationship != "Deals__r" || f.ReferenceTo != "Opportunity" {
		t.Errorf("master-detail: %+v", f)
	}
	if f := by["Deal__c.Score__c"]; f.Type != "double" || f.Createable || f.Updateable {
		t.Errorf("formula: %+v", f)
	}
	if f := by["Deal__c.Tags__c"]; f.Type != "" || f.MetadataType != "MultiselectPicklist" {
		t.Errorf("unmapped type: %+v", f)
	}
	if f := by["Opportunity.StageName"]; f.Custom || f.Type != "picklist" || !slices.Equal(f.Picklist, []string{"Waiting", "Won"}) || f.Default != "Waiting" {
		t.Errorf("standard picklist: %+v", f)
	}
	if f := by["Opportunity.Note__c"]; f.Type != "textarea" || f.Length != 255 || !f.Custom || !f.Createable {
		t.Errorf("text area: %+v", f)
	}

	fsys[ObjectsDir+"/Opportunity/fields/Bad__c.field-meta.xml"] = fieldXML(`<fullName>Bad__c</fullName><type>Text</type>`)
	if _, err := ReadProject(fsys); err == nil || !strings.Contains(err.Error(), "Bad__c.field-meta.xml") || !strings.Contains(err.Error(), "without a <length>") {
		t.Errorf("Text without a length: %v", err)
	}
	if _, err := ReadProject(fstest.MapFS{}); err == nil || !strings.Contains(err.Error(), "force-app/") {
		t.Errorf("no project: %v", err)
	}
}
