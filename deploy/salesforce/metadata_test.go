package salesforce

import (
	"encoding/xml"
	"io/fs"
	"path"
	"sort"
	"strings"
	"testing"
)

// The tests in this file check the package the way a deploy would: every file parses, and the permission
// sets and the page layout name only objects and fields that exist (the package's own custom ones, or
// standard ones every org has), so `sf project deploy start` cannot fail on a dangling reference.

const root = "force-app/main/default"

// standardFields are the standard Opportunity fields the layout may place.
var standardFields = map[string]bool{"Opportunity.OwnerId": true, "Opportunity.Name": true, "Opportunity.AccountId": true,
	"Opportunity.Type": true, "Opportunity.LeadSource": true, "Opportunity.CloseDate": true, "Opportunity.StageName": true,
	"Opportunity.Probability": true, "Opportunity.Amount": true, "Opportunity.ForecastCategoryName": true,
	"Opportunity.NextStep": true, "Opportunity.Description": true, "Opportunity.CreatedById": true,
	"Opportunity.LastModifiedById": true}

// customFields reads every custom field of the package by "Object.Field", through the package's reader.
func customFields(t *testing.T) map[string]Field {
	t.Helper()
	objects, err := ReadProject(Metadata)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Field{}
	for _, o := range objects {
		for _, f := range o.Fields {
			if want := strings.TrimSuffix(path.Base(f.File), ".field-meta.xml"); f.Name != want {
				t.Errorf("%s: fullName %q, want %q", f.File, f.Name, want)
			}
			if !f.Custom || f.Type == "" {
				t.Errorf("%s: %s is not a custom field of a type describe names (%s)", f.File, f.Name, f.MetadataType)
			}
			out[o.Name+"."+f.Name] = f
		}
	}
	if len(out) == 0 {
		t.Fatal("no fields")
	}
	return out
}

func decode(t *testing.T, name string, v any) {
	t.Helper()
	b, err := fs.ReadFile(Metadata, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

type permissionSet struct {
	Label  string `xml:"label"`
	Fields []struct {
		Field    string `xml:"field"`
		Editable bool   `xml:"editable"`
		Readable bool   `xml:"readable"`
	} `xml:"fieldPermissions"`
	Objects []struct {
		Object           string `xml:"object"`
		AllowCreate      bool   `xml:"allowCreate"`
		AllowRead        bool   `xml:"allowRead"`
		AllowEdit        bool   `xml:"allowEdit"`
		AllowDelete      bool   `xml:"allowDelete"`
		ViewAllRecords   bool   `xml:"viewAllRecords"`
		ModifyAllRecords bool   `xml:"modifyAllRecords"`
	} `xml:"objectPermissions"`
}

func TestPermissionSets(t *testing.T) {
	fields := customFields(t)
	sets := map[string]permissionSet{}
	for _, name := range []string{"Cosell_Integration", "Cosell_Seller"} {
		var ps permissionSet
		decode(t, root+"/permissionsets/"+name+".permissionset-meta.xml", &ps)
		sets[name] = ps
		granted := map[string]bool{}
		for _, fp := range ps.Fields {
			cf, ok := fields[fp.Field]
			switch {
			case !ok:
				t.Errorf("%s: field permission on %s, which the package does not define", name, fp.Field)
			case cf.Required || cf.MetadataType == "MasterDetail":
				// Salesforce refuses field permissions on required fields at deploy time.
				t.Errorf("%s: field permission on required field %s", name, fp.Field)
			case !fp.Readable:
				t.Errorf("%s: %s not readable", name, fp.Field)
			}
			granted[fp.Field] = fp.Editable
		}
		for f, cf := range fields {
			if !cf.Required && cf.Type != "MasterDetail" {
				if _, ok := granted[f]; !ok {
					t.Errorf("%s grants nothing on %s", name, f)
				}
			}
		}
		for _, op := range ps.Objects {
			if op.ModifyAllRecords && !(op.AllowDelete && op.ViewAllRecords && op.AllowEdit) {
				t.Errorf("%s: Modify All on %s needs Read, Edit, Delete and View All", name, op.Object)
			}
			if op.ViewAllRecords && !op.AllowRead {
				t.Errorf("%s: View All on %s needs Read", name, op.Object)
			}
		}
	}
	// The integration user writes every field cosell fills; a seller cannot edit them.
	filledByCosell := []string{"Opportunity.Referral_Identifier__c", "Opportunity.Referral_Link__c", "Opportunity.Audit__c",
		"Opportunity.Partner_Center_Sync_Status__c", "Opportunity.Microsoft_CRM_Identifier__c"}
	for _, f := range filledByCosell {
		if !editable(sets["Cosell_Integration"], f) {
			t.Errorf("integration user cannot edit %s", f)
		}
		if editable(sets["Cosell_Seller"], f) {
			t.Errorf("sellers can edit %s, which cosell fills", f)
		}
	}
	for _, f := range []string{"Opportunity.Sync_with_Partner_Center__c", "Opportunity.How_can_Microsoft_help__c",
		"Opportunity.Partner_Center_Referral_Visibility__c", "Microsoft_Solution__c.Solution_Id__c"} {
		if !editable(sets["Cosell_Seller"], f) {
			t.Errorf("sellers cannot edit %s", f)
		}
	}
}

func editable(ps permissionSet, field string) bool {
	for _, fp := range ps.Fields {
		if fp.Field == field {
			return fp.Editable
		}
	}
	return false
}

func TestLayoutPlacesEveryCustomField(t *testing.T) {
	fields := customFields(t)
	var layout struct {
		Sections []struct {
			Label   string `xml:"label"`
			Columns []struct {
				Items []struct {
					Behavior string `xml:"behavior"`
					Field    string `xml:"field"`
				} `xml:"layoutItems"`
			} `xml:"layoutColumns"`
		} `xml:"layoutSections"`
		Related []struct {
			Fields []string `xml:"fields"`
			List   string   `xml:"relatedList"`
		} `xml:"relatedLists"`
	}
	decode(t, root+"/layouts/Opportunity-Co-sell Opportunity Layout.layout-meta.xml", &layout)
	placed := map[string]string{}
	for _, s := range layout.Sections {
		for _, c := range s.Columns {
			for _, it := range c.Items {
				name := "Opportunity." + it.Field
				if _, custom := fields[name]; !custom && !standardFields[name] {
					t.Errorf("layout section %q places unknown field %s", s.Label, it.Field)
				}
				if placed[name] != "" {
					t.Errorf("layout places %s twice", it.Field)
				}
				placed[name] = it.Behavior
			}
		}
	}
	var missing []string
	for f := range fields {
		if strings.HasPrefix(f, "Opportunity.") && placed[f] == "" {
			missing = append(missing, f)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the layout lacks %v", missing)
	}
	for _, f := range []string{"Name", "StageName", "CloseDate"} {
		if placed["Opportunity."+f] != "Required" {
			t.Errorf("required standard field %s is %q on the layout", f, placed["Opportunity."+f])
		}
	}
	related := false
	for _, r := range layout.Related {
		if r.List == "Microsoft_Solution__c.Opportunity__c" {
			related = true
		}
	}
	if !related {
		t.Error("the layout lacks the Microsoft Solutions related list")
	}
}
