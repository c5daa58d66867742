package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/mapping"
)

// campaignField is the custom Opportunity field of the customised mapping below: an org's own field, not
// one deploy/salesforce adds.
const campaignField = "Partner_Campaign__c"

// customMapping writes the built-in mapping with one field added on both sides (the referral's campaignId ↔
// the org's custom Opportunity field Partner_Campaign__c) and the org's metadata holding that field. It
// returns the mapping file and the SFDX project directory.
func customMapping(t *testing.T) (file, metadataDir string) {
	t.Helper()
	dir := t.TempDir()
	metadataDir = filepath.Join(dir, "org")
	if err := stack.WriteOrgMetadata(metadataDir, stack.TextField{Name: campaignField, Label: "Partner Campaign", Length: 80}); err != nil {
		t.Fatal(err)
	}
	custom := string(mapping.DefaultYAML()) + `
  # The org's own campaign field, both ways.
  - name: campaign
    pc: campaignId
    sf: ` + campaignField + "\n"
	file = filepath.Join(dir, "mapping.yaml")
	if err := os.WriteFile(file, []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	return file, metadataDir
}

// TestMappingValidate: `cosell mapping validate` from the outside: the built-in mapping is valid; a
// mistake is reported with file, line, field and fix (also as JSON) and exit 1; a field of the org's own is
// unknown against deploy/salesforce and valid against the org's metadata (--metadata).
func TestMappingValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, out, _ := cli(t, "mapping", "default")
	if code != 0 || out != string(mapping.DefaultYAML()) {
		t.Fatalf("mapping default: code %d, output is not the built-in mapping", code)
	}
	def := filepath.Join(dir, "default.yaml")
	if err := os.WriteFile(def, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := cli(t, "mapping", "validate", def); code != 0 || !strings.Contains(out, "valid (18 fields") {
		t.Fatalf("validate the default: code %d\n%s%s", code, out, errOut)
	}

	broken := strings.Replace(out, "sf: Amount\n", "sf: Amount__c\n", 1)
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	line := strings.Count(broken[:strings.Index(broken, "  - name: dealValue")], "\n") + 1
	code, got, _ := cli(t, "mapping", "validate", bad)
	want := bad + ":" + strconv.Itoa(line) + ": field dealValue: Salesforce field Opportunity.Amount__c does not exist (fix: did you mean Amount?)"
	if code != 1 || !strings.Contains(got, want) {
		t.Fatalf("validate a mistake: code %d, want 1 and %q\n%s", code, want, got)
	}
	code, got, _ = cli(t, "mapping", "validate", bad, "--json")
	var res struct {
		Valid    bool
		Problems []mapping.Problem
	}
	if err := json.Unmarshal([]byte(got), &res); err != nil || code != 1 || res.Valid || len(res.Problems) != 1 ||
		res.Problems[0].Line != line || res.Problems[0].Field != "dealValue" {
		t.Fatalf("--json: code %d, %v\n%s", code, err, got)
	}

	// Every problem in one run, from the outside: a structural mistake (an unknown key) does not hide one
	// only the Salesforce metadata shows (a field that does not exist), nor one of a field (an unknown owner).
	several := strings.Replace(strings.Replace(strings.Replace(out, "nameMark: true", "nameMarks: true", 1),
		"sf: Description\n", "sf: Descripton\n", 1), "    sf: StageName\n", "    sf: StageName\n    owner: nobody\n", 1)
	multi := filepath.Join(dir, "several.yaml")
	if err := os.WriteFile(multi, []byte(several), 0o644); err != nil {
		t.Fatal(err)
	}
	code, got, _ = cli(t, "mapping", "validate", multi)
	if code != 1 || !strings.Contains(got, `unknown key "nameMarks"`) || !strings.Contains(got, "field notes: Salesforce field Opportunity.Descripton does not exist (fix: did you mean Description?)") ||
		!strings.Contains(got, `field status: owner "nobody" is not known`) || !strings.HasSuffix(got, "\n3 problem(s)\n") {
		t.Fatalf("validate three mistakes: code %d, want 1 and all three\n%s", code, got)
	}

	file, meta := customMapping(t)
	code, got, _ = cli(t, "mapping", "validate", file)
	if code != 1 || !strings.Contains(got, "field campaign: Salesforce field Opportunity."+campaignField+" does not exist") {
		t.Fatalf("a custom field against deploy/salesforce: code %d\n%s", code, got)
	}
	if code, got, errOut := cli(t, "mapping", "validate", file, "--metadata", meta); code != 0 || !strings.Contains(got, "valid (19 fields") {
		t.Fatalf("a custom field against the org's metadata: code %d\n%s%s", code, got, errOut)
	}
	if code, _, errOut := cli(t, "mapping", "validate", file, "--metadata", filepath.Join(dir, "none")); code != 2 || !strings.Contains(errOut, "not a directory") {
		t.Fatalf("--metadata that is not a directory: code %d\n%s", code, errOut)
	}
}
