package mapping

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultIsValid(t *testing.T) {
	m, err := Load(Config{})
	if err != nil {
		t.Fatalf("the embedded default must be valid: %v", err)
	}
	for _, f := range m.Fields {
		if f.Kind == KindText && f.MaxLength == 0 {
			t.Errorf("text field %s got no length limit from the metadata", f.Name)
		}
	}
}

// broken returns the default file with old replaced by new (which must be there once).
func broken(t *testing.T, old, new string) []byte {
	t.Helper()
	s := string(DefaultYAML())
	if strings.Count(s, old) != 1 {
		t.Fatalf("%q is not in the default mapping once", old)
	}
	return []byte(strings.Replace(s, old, new, 1))
}

func lineOf(data []byte, needle string) int {
	i := strings.Index(string(data), needle)
	return strings.Count(string(data[:i]), "\n") + 1
}

func TestProblemsNameLineFieldAndFix(t *testing.T) {
	cases := []struct {
		name, old, new string
		at             string // text on the reported line
		field, message string
		fix            string
	}{
		{"unknown Salesforce field", "sf: Amount", "sf: Amount__c", "- name: dealValue", "dealValue", "Opportunity.Amount__c does not exist", "did you mean Amount?"},
		{"unknown Account field", "sf: Account.BillingCountry", "sf: Account.Country_Code__c", "- name: country", "country", "Account.Country_Code__c does not exist", "Object Manager"},
		{"type mismatch with Salesforce", "sf: CloseDate", "sf: Description", "- name: closeDate", "closeDate", "type mismatch: Opportunity.Description is a textarea field", "map a date/datetime field"},
		{"type mismatch with the referral", "    sf: Amount\n    type: money", "    sf: Amount\n    type: date", "type: date", "dealValue", "type mismatch: details.dealValue is money", "use type money"},
		{"picklist value that does not exist", "sf: Quotes or licensing", "sf: Quotes and licences", "- name: help", "help", `picklist value "Quotes and licences" does not exist`, "Quotes or licensing"},
		{"Partner Center value that does not exist", "pc: QuotesOrLicensing", "pc: QuotesAndLicences", "- name: help", "help", `Partner Center value "QuotesAndLicences" does not exist`, "use one of"},
		{"stage that does not exist", "hold: Prospecting", "hold: Waiting", "hold: Waiting", "status", `stage "Waiting" is not a StageName value`, "Needs Analysis"},
		{"unknown referral path", "pc: details.notes", "pc: details.note", "- name: notes", "notes", `referral path "details.note" does not exist`, "details.notes"},
		{"not patchable", "    toPC: create\n    toSF: always\n    values:", "    toPC: always\n    toSF: always\n    values:", "toPC: always", "help", "does not allow inviteContext.assistanceRequestCode to be patched", "toPC: create"},
		{"missing required field", "  - name: status\n    pc: status\n    sf: StageName\n    type: status\n", "", "fields:", "status", "missing required field", "name: status"},
		{"read-only field", "sf: Amount", "sf: IsWon", "- name: dealValue", "dealValue", "IsWon is a boolean field", "currency/double"},
		{"too long for the field", "maxLength: 120", "maxLength: 500", "- name: name", "name", "maxLength 500 is longer than Opportunity.Name (120 characters)", "set maxLength: 120"},
		{"unknown key", "defaultCurrency: USD", "defaultCurency: USD", "defaultCurency", "", `unknown key "defaultCurency"`, "keys are"},
		{"name mark not a boolean", "nameMark: true", "nameMark: sometimes", "nameMark: sometimes", "", `nameMark "sometimes" is not true or false`, "nameMark: false"},
		{"bad direction", "    toPC: create # Partner Center", "    toPC: sometimes # Partner Center", "toPC: sometimes", "name", `toPC "sometimes" is not a direction`, "never, create or always"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := broken(t, c.old, c.new)
			_, err := validate("my-mapping.yaml", data, nil, Config{})
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want problems, got %v", err)
			}
			for _, p := range ps {
				if strings.Contains(p.Message, c.message) {
					if p.File != "my-mapping.yaml" || p.Field != c.field || !strings.Contains(p.Fix, c.fix) {
						t.Errorf("problem = %+v; want field %q, fix containing %q", p, c.field, c.fix)
					}
					if want := lineOf(data, c.at); p.Line != want {
						t.Errorf("line %d, want %d (%q): %s", p.Line, want, c.at, p)
					}
					return
				}
			}
			t.Fatalf("no problem says %q; got:\n%v", c.message, ps)
		})
	}
}

func TestNotYAML(t *testing.T) {
	_, err := validate("x.yaml", []byte("fields: [\n  - name: a\n"), nil, Config{})
	var ps Problems
	if !errors.As(err, &ps) || ps[0].Line == 0 || !strings.Contains(ps[0].Message, "not valid YAML") {
		t.Fatalf("got %v", err)
	}
}

// TestOrgMetadataOverridesStages: an org's own StageName values (retrieved into an SFDX project) are
// what stage names are checked against.
func TestOrgMetadataOverridesStages(t *testing.T) {
	dir := t.TempDir()
	fields := filepath.Join(dir, "force-app", "main", "default", "objects", "Opportunity", "fields")
	if err := os.MkdirAll(fields, 0o755); err != nil {
		t.Fatal(err)
	}
	xml := `<?xml version="1.0" encoding="UTF-8"?><CustomField xmlns="http://soap.sforce.com/2006/04/metadata"><fullName>StageName</fullName><type>Picklist</type><valueSet><valueSetDefinition>` +
		`<value><fullName>Waiting</fullName></value><value><fullName>Accepted</fullName></value><value><fullName>Won</fullName></value><value><fullName>Lost</fullName></value>` +
		`</valueSetDefinition></valueSet></CustomField>`
	if err := os.WriteFile(filepath.Join(fields, "StageName.field-meta.xml"), []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	data := broken(t, "  hold: Prospecting\n", "  hold: Waiting\n")
	data = []byte(strings.NewReplacer("active: Qualification", "active: Accepted", "won: Closed Won", "won: Won", "lost: Closed Lost", "lost: Lost").Replace(string(data)))
	if _, err := validate("org.yaml", data, os.DirFS(dir), Config{}); err == nil || !strings.Contains(err.Error(), "How_can_Microsoft_help__c does not exist") {
		// The org project has no custom fields, so the ones cosell needs are reported missing...
		t.Fatalf("want the missing custom field reported, got %v", err)
	}
	if strings.Contains(func() string { _, err := validate("org.yaml", data, os.DirFS(dir), Config{}); return err.Error() }(), "StageName value") {
		t.Fatal("...but the org's stages are accepted")
	}
}

// TestOverridesAreCheckedLikeTheFile: COSELL_STAGE_* and COSELL_DEFAULT_CURRENCY replace the file's
// settings for every reader of the mapping, and a wrong one is reported under its variable's name.
// TestNameMarkSetting: the mark in the Opportunity Name is on by default (Microsoft's default), off with
// nameMark: false in the file or COSELL_NAME_MARK=false, and a file's value yields to the variable.
func TestNameMarkSetting(t *testing.T) {
	if !Default().NameMark {
		t.Error("the default mapping must mark names, as Microsoft's connector does by default")
	}
	off, err := validate("off.yaml", broken(t, "nameMark: true", "nameMark: false"), nil, Config{})
	if err != nil || off.NameMark {
		t.Errorf("nameMark: false → %v, %v", off.NameMark, err)
	}
	absent, err := validate("absent.yaml", broken(t, "nameMark: true", ""), nil, Config{})
	if err != nil || !absent.NameMark {
		t.Errorf("no nameMark key → %v, %v; want on", absent.NameMark, err)
	}
	env, err := Load(Config{NameMark: "false"})
	if err != nil || env.NameMark {
		t.Errorf("COSELL_NAME_MARK=false → %v, %v", env.NameMark, err)
	}
	if got := Default().MarkedName("Contoso ✔", "✖ invalidRequest: x"); got != "Contoso ✖" {
		t.Errorf("MarkedName = %q", got)
	}
	if got := Default().MarkedName(strings.Repeat("n", 130), "✔"); len([]rune(got)) != 120 || !strings.HasSuffix(got, " ✔") {
		t.Errorf("a long name must be cut so the mark fits 120 characters: %d %q", len([]rune(got)), got)
	}
	if got := Default().MarkedName("Contoso ✔", "⏸ paused"); got != "Contoso" {
		t.Errorf("held: MarkedName = %q, want no mark", got)
	}
}

func TestOverridesAreCheckedLikeTheFile(t *testing.T) {
	m, err := Load(Config{Hold: "Needs Analysis", Active: "Value Proposition", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Stages.Hold != "Needs Analysis" || m.Stages.Active != "Value Proposition" || m.Stages.Won != "Closed Won" || m.DefaultCurrency != "EUR" {
		t.Fatalf("overrides not applied: %+v %s", m.Stages, m.DefaultCurrency)
	}
	cases := []struct {
		c         Config
		file, msg string
	}{
		{Config{Hold: "Waiting"}, "COSELL_STAGE_HOLD", `stages.hold: stage "Waiting" is not a StageName value`},
		// The active stage set to the file's hold stage: the hold rule is placed at the file's line.
		{Config{Active: "Prospecting"}, DefaultSource, `the hold stage "Prospecting" is also used as another stage`},
		{Config{Active: "Closed Won"}, "COSELL_STAGE_ACTIVE", `the active stage "Closed Won" is also the won or lost stage`},
		{Config{Currency: "Euro"}, "COSELL_DEFAULT_CURRENCY", `defaultCurrency "Euro" is not a three-letter currency code`},
		{Config{Currency: "XYZ"}, "COSELL_DEFAULT_CURRENCY", `defaultCurrency "XYZ" is not enabled in Opportunity.CurrencyIsoCode`},
		{Config{NameMark: "off"}, "COSELL_NAME_MARK", `COSELL_NAME_MARK "off" is not true or false`},
	}
	for _, c := range cases {
		_, err := Load(c.c)
		var ps Problems
		if !errors.As(err, &ps) {
			t.Fatalf("%+v: want problems, got %v", c.c, err)
		}
		found := false
		for _, p := range ps {
			if !strings.Contains(p.Message, c.msg) {
				continue
			}
			found = true
			if inFile := c.file == DefaultSource; p.File != c.file || (p.Line > 0) != inFile || !strings.HasPrefix(p.String(), c.file+":") {
				t.Errorf("%+v: problem %q placed at %s:%d, want %s", c.c, p, p.File, p.Line, c.file)
			}
		}
		if !found {
			t.Errorf("%+v: no problem %q; got\n%v", c.c, c.msg, ps)
		}
	}
}

// sixMistakes is the built-in mapping with six different mistakes, of every class the checks know: a
// structural one (an unknown key), three in fields themselves (an unknown owner on the required status
// field, an unknown type, a field without its Salesforce side — the required customer name), and two only
// the Salesforce metadata shows (a field that does not exist, a stage that is not a StageName value).
func sixMistakes(t *testing.T) []byte {
	t.Helper()
	s := string(DefaultYAML())
	for _, r := range [][2]string{
		{"defaultCurrency: USD", "defaultCurency: USD"},
		{"    sf: StageName\n    type: status\n", "    sf: StageName\n    type: status\n    owner: nobody\n"},
		{"    sf: Amount\n    type: money\n", "    sf: Amount\n    type: moneyy\n"},
		{"    sf: Description\n    maxLength: 32000\n", "    sf: Descripton\n    maxLength: 32000\n"},
		{"hold: Prospecting", "hold: Waiting"},
		{"    pc: customerProfile.name\n    sf: Account.Name\n", "    pc: customerProfile.name\n"},
	} {
		if strings.Count(s, r[0]) != 1 {
			t.Fatalf("%q is not in the default mapping once", r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	return []byte(s)
}

// TestEveryProblemInOneRun: a file with six different mistakes gets exactly six problems, each at its own
// line with the field and a fix: the structural ones do not hide those only the Salesforce metadata
// shows, and a field with a mistake is not also reported missing (required) or mistyped (metadata).
func TestEveryProblemInOneRun(t *testing.T) {
	data := sixMistakes(t)
	_, err := validate("six.yaml", data, nil, Config{})
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want Problems, got %v", err)
	}
	want := []struct{ at, field, message string }{
		{"defaultCurency: USD", "", `unknown key "defaultCurency"`},
		{"hold: Waiting", "status", `stage "Waiting" is not a StageName value`},
		{"- name: customerName", "customerName", "a field needs both sides"},
		{"- name: dealValue", "dealValue", `unknown type "moneyy"`},
		{"- name: notes", "notes", "Salesforce field Opportunity.Descripton does not exist"},
		{"- name: status", "status", `owner "nobody" is not known`},
	}
	if len(ps) != len(want) {
		t.Fatalf("%d problems, want exactly %d:\n%v", len(ps), len(want), ps)
	}
	for _, w := range want {
		line := lineOf(data, w.at)
		found := false
		for _, p := range ps {
			// A key's problem is on the key's own line; a field's is on its item's line or a key of it.
			if strings.Contains(p.Message, w.message) && p.Field == w.field && p.File == "six.yaml" && p.Fix != "" &&
				p.Line >= line && p.Line <= line+6 {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem %q for field %q at line %d (%q):\n%v", w.message, w.field, line, w.at, ps)
		}
	}
}
