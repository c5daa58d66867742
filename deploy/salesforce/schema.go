package salesforce

import (
	"encoding/xml"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// ObjectsDir is where an SFDX source project keeps its objects (sfdx-project.json's default package
// directory, force-app, in source format).
const ObjectsDir = "force-app/main/default/objects"

// Object is what a project deploys to one object: a custom object (defined by its .object-meta.xml), or
// a standard object the project adds custom fields to or whose standard fields it customises.
type Object struct {
	Name        string
	Custom      bool // a custom object (Name ends in __c)
	Label       string
	PluralLabel string
	// NameField is a custom object's Name field: Text, or an AutoNumber Salesforce fills (not createable or
	// updateable). Nil for a standard object, whose Name field is standard.
	NameField *Field
	// Fields are the project's fields of the object, in file-name order.
	Fields []Field
}

// Field is one CustomField of the project as the REST describe shows it once deployed (types and lengths
// as describe names them: Object Reference for the Salesforce Platform, "Field Types"; Metadata API
// Developer Guide, "CustomField").
type Field struct {
	Name  string
	Label string
	// Type is describe's type: string, textarea, boolean, double, currency, percent, date, datetime, url,
	// email, phone, picklist or reference. Empty for a metadata type this reader does not map (a
	// MultiselectPicklist, a Time, ...): MetadataType then says which it is.
	Type         string
	MetadataType string // the file's <type>, e.g. Text, LongTextArea, MasterDetail
	Length       int
	// Custom is a custom field (__c); a standard field's file (StageName on Opportunity) can only customise
	// its picklist values, the rest of a standard field is Salesforce's.
	Custom     bool
	Required   bool // must hold a value after create and update
	ExternalID bool
	Unique     bool
	// Createable and Updateable are false for a formula (calculated) field; a master-detail field is
	// updateable only when reparentable.
	Createable, Updateable bool
	Default                any // a checkbox's bool, a picklist's default value, or a default formula's literal
	Picklist               []string
	Restricted             bool
	ReferenceTo            string // a lookup's or master-detail's parent object
	// RelationshipName names the parent in SOQL paths (Opportunity__r for Opportunity__c);
	// ChildRelationship the children on the parent (Microsoft_Solutions__r), when the file names it.
	RelationshipName  string
	ChildRelationship string
	CascadeDelete     bool   // deleting the parent deletes the record (master-detail, or a lookup's Cascade)
	File              string // the file it was read from, for errors
}

// The metadata XML shapes read (Metadata API Developer Guide: CustomField, CustomObject).
type xmlField struct {
	FullName         string `xml:"fullName"`
	Label            string `xml:"label"`
	Type             string `xml:"type"`
	Length           int    `xml:"length"`
	Required         bool   `xml:"required"`
	ExternalID       bool   `xml:"externalId"`
	Unique           bool   `xml:"unique"`
	DefaultValue     string `xml:"defaultValue"`
	Formula          string `xml:"formula"`
	ReferenceTo      string `xml:"referenceTo"`
	RelationshipName string `xml:"relationshipName"`
	Reparentable     bool   `xml:"reparentableMasterDetail"`
	DeleteConstraint string `xml:"deleteConstraint"`
	Restricted       bool   `xml:"valueSet>restricted"`
	Values           []struct {
		FullName string `xml:"fullName"`
		Default  bool   `xml:"default"`
	} `xml:"valueSet>valueSetDefinition>value"`
}

type xmlObject struct {
	Label     string `xml:"label"`
	Plural    string `xml:"pluralLabel"`
	NameField struct {
		Label string `xml:"label"`
		Type  string `xml:"type"`
	} `xml:"nameField"`
}

// ReadProject reads the objects and fields of the SFDX source project in fsys (Metadata for cosell's own
// package, or an org's retrieved metadata). It is the one reader of the project: the Salesforce emulator
// builds its schema from it and `cosell mapping validate` checks a mapping against it.
func ReadProject(fsys fs.FS) ([]Object, error) {
	entries, err := fs.ReadDir(fsys, ObjectsDir)
	if err != nil {
		return nil, fmt.Errorf("salesforce metadata: %w (give the SFDX project directory, the one holding force-app/)", err)
	}
	var out []Object
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		o := Object{Name: e.Name(), Custom: strings.HasSuffix(e.Name(), "__c")}
		if o.Custom {
			var x xmlObject
			file := path.Join(ObjectsDir, o.Name, o.Name+".object-meta.xml")
			if err := readXML(fsys, file, &x); err != nil {
				return nil, err
			}
			o.Label, o.PluralLabel = x.Label, x.Plural
			nf := &Field{Name: "Name", Label: x.NameField.Label, Type: "string", MetadataType: x.NameField.Type, Length: 80,
				Createable: true, Updateable: true, File: file}
			if x.NameField.Type == "AutoNumber" {
				nf.Createable, nf.Updateable = false, false
			}
			o.NameField = nf
		}
		files, err := fs.Glob(fsys, path.Join(ObjectsDir, o.Name, "fields", "*.field-meta.xml"))
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		for _, file := range files {
			var x xmlField
			if err := readXML(fsys, file, &x); err != nil {
				return nil, err
			}
			f, err := fieldFromXML(x)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			f.File = file
			o.Fields = append(o.Fields, f)
		}
		out = append(out, o)
	}
	return out, nil
}

// fieldFromXML maps a CustomField to what describe shows for it.
func fieldFromXML(x xmlField) (Field, error) {
	f := Field{Name: x.FullName, Label: x.Label, MetadataType: x.Type, Length: x.Length, Custom: strings.HasSuffix(x.FullName, "__c"),
		Required: x.Required, ExternalID: x.ExternalID, Unique: x.Unique, Createable: true, Updateable: true}
	if f.Name == "" {
		return Field{}, fmt.Errorf("a field without <fullName>")
	}
	switch x.Type {
	case "Text":
		f.Type = "string"
	case "TextArea":
		f.Type, f.Length = "textarea", 255
	case "LongTextArea", "Html":
		f.Type = "textarea"
	case "Checkbox":
		f.Type, f.Default = "boolean", x.DefaultValue == "true"
	case "Number":
		f.Type = "double"
	case "Currency":
		f.Type = "currency"
	case "Percent":
		f.Type = "percent"
	case "Date":
		f.Type = "date"
	case "DateTime":
		f.Type = "datetime"
	case "Url":
		f.Type, f.Length = "url", 255
	case "Email":
		f.Type, f.Length = "email", 80
	case "Phone":
		f.Type, f.Length = "phone", 40
	case "Picklist":
		f.Type, f.Length, f.Restricted = "picklist", 255, x.Restricted
		for _, v := range x.Values {
			f.Picklist = append(f.Picklist, v.FullName)
			if v.Default {
				f.Default = v.FullName
			}
		}
	case "Lookup", "MasterDetail":
		f.Type, f.Length, f.ReferenceTo = "reference", 18, x.ReferenceTo
		f.RelationshipName = strings.TrimSuffix(x.FullName, "__c") + "__r"
		if x.RelationshipName != "" {
			f.ChildRelationship = x.RelationshipName + "__r"
		}
		if x.Type == "MasterDetail" {
			f.Required, f.Updateable, f.CascadeDelete = true, x.Reparentable, true
		} else {
			f.CascadeDelete = x.DeleteConstraint == "Cascade"
		}
	}
	if f.Type == "string" && f.Length == 0 && f.Custom {
		return Field{}, fmt.Errorf("field %s: Text without a <length>", x.FullName)
	}
	if x.DefaultValue != "" && f.Type != "boolean" {
		f.Default = strings.Trim(x.DefaultValue, `"'`)
	}
	if x.Formula != "" {
		// A formula field is calculated: describe has it neither createable nor updateable.
		f.Createable, f.Updateable, f.Required = false, false, false
	}
	return f, nil
}

func readXML(fsys fs.FS, name string, v any) error {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("read metadata: %w", err)
	}
	if err := xml.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse metadata %s: %w", name, err)
	}
	return nil
}
