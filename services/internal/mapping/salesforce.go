package mapping

import (
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	metadata "github.com/cosell-dev/cosell/deploy/salesforce"
)

// sfField is a Salesforce field as the checks need it.
type sfField struct {
	Name      string
	Type      string // describe type: string, textarea, picklist, currency, double, date, boolean, ...
	Length    int
	Picklist  []string
	Required  bool
	Writeable bool
}

// sfSchema is the Salesforce objects a mapping can name, by object then lower-case field name.
type sfSchema map[string]map[string]sfField

// Opportunity stages and currencies of a new org, as the emulator has them.
var (
	defaultStages = []string{"Prospecting", "Qualification", "Needs Analysis", "Value Proposition",
		"Id. Decision Makers", "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"}
	currencies = []string{"USD", "EUR", "GBP", "CAD", "AUD", "JPY", "INR", "CHF", "SEK", "NZD"}
)

func standard() sfSchema {
	w := func(name, typ string, length int) sfField {
		return sfField{Name: name, Type: typ, Length: length, Writeable: true}
	}
	req := func(f sfField) sfField { f.Required = true; return f }
	pick := func(f sfField, values ...string) sfField { f.Picklist = values; return f }
	ro := func(f sfField) sfField { f.Writeable = false; return f }
	s := sfSchema{"Opportunity": {}, "Account": {}, "OpportunityTeamMember": {}, "OpportunityContactRole": {}}
	for _, f := range []sfField{
		ro(w("Id", "id", 18)), req(w("Name", "string", 120)), w("AccountId", "reference", 18), w("Amount", "currency", 0),
		pick(w("CurrencyIsoCode", "picklist", 255), currencies...), req(w("CloseDate", "date", 0)),
		req(pick(w("StageName", "picklist", 255), defaultStages...)), ro(w("IsClosed", "boolean", 0)), ro(w("IsWon", "boolean", 0)),
		w("Probability", "percent", 0),
		pick(w("Type", "picklist", 255), "Existing Customer - Upgrade", "Existing Customer - Replacement", "Existing Customer - Downgrade", "New Customer"),
		pick(w("LeadSource", "picklist", 255), "Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"),
		w("Description", "textarea", 32000), w("NextStep", "string", 255), w("OwnerId", "reference", 18),
	} {
		s["Opportunity"][strings.ToLower(f.Name)] = f
	}
	for _, f := range []sfField{
		req(w("Name", "string", 255)), w("BillingStreet", "string", 255), w("BillingCity", "string", 40),
		w("BillingState", "string", 80), w("BillingPostalCode", "string", 20), w("BillingCountry", "string", 80),
		w("Website", "url", 255),
		pick(w("Industry", "picklist", 255), "Agriculture", "Banking", "Communications", "Construction", "Consulting", "Education",
			"Electronics", "Energy", "Finance", "Government", "Healthcare", "Insurance", "Manufacturing", "Media", "Retail",
			"Technology", "Telecommunications", "Transportation", "Utilities", "Other"), w("NumberOfEmployees", "int", 0), w("Phone", "phone", 40),
		pick(w("CurrencyIsoCode", "picklist", 255), currencies...),
	} {
		s["Account"][strings.ToLower(f.Name)] = f
	}
	return s
}

// loadSchema builds the schema from the standard objects and the SFDX project in meta, read by
// deploy/salesforce's ReadProject (the reader the Salesforce emulator builds its schema with): custom
// objects and fields; a standard field's file (an org's StageName with its own stages) customises its
// picklist values only, as in Salesforce.
func loadSchema(meta fs.FS) (sfSchema, error) {
	s := standard()
	project, err := metadata.ReadProject(meta)
	if err != nil {
		return nil, err
	}
	for _, o := range project {
		if s[o.Name] == nil {
			s[o.Name] = map[string]sfField{}
		}
		if o.NameField != nil {
			s[o.Name]["name"] = fromMetadata(*o.NameField)
		}
		for _, f := range o.Fields {
			key := strings.ToLower(f.Name)
			if std, ok := s[o.Name][key]; ok && !f.Custom {
				if len(f.Picklist) > 0 {
					std.Picklist = f.Picklist
				}
				s[o.Name][key] = std
				continue
			}
			s[o.Name][key] = fromMetadata(f)
		}
	}
	return s, nil
}

// fromMetadata is a project field as the checks need it; a metadata type describe names otherwise (a
// MultiselectPicklist, ...) keeps its metadata name, so a mapping onto it is a type mismatch naming it.
func fromMetadata(f metadata.Field) sfField {
	typ := f.Type
	if typ == "" {
		typ = strings.ToLower(f.MetadataType)
	}
	return sfField{Name: f.Name, Type: typ, Length: f.Length, Picklist: f.Picklist, Required: f.Required,
		Writeable: f.Createable || f.Updateable}
}

// kinds lists the Salesforce field types each kind of mapped value can be stored in.
var kinds = map[Kind][]string{
	KindText:     {"string", "textarea", "picklist", "url", "email", "phone"},
	KindEnum:     {"picklist", "string", "textarea"},
	KindCountry:  {"string", "picklist"},
	KindCurrency: {"picklist", "string"},
	KindMoney:    {"currency", "double", "int", "percent"},
	KindDate:     {"date", "datetime"},
	KindBool:     {"boolean"},
}

// check checks a parsed mapping against the Salesforce schema and fills text fields' maxLength from
// their Salesforce length.
func check(m *Mapping, s sfSchema) Problems {
	var ps Problems
	add := func(line int, field, fix, format string, args ...any) {
		ps = append(ps, Problem{File: m.Source, Line: line, Field: field, Message: fmt.Sprintf(format, args...), Fix: fix})
	}
	mapped := map[string]bool{}
	for i := range m.Fields {
		r := &m.Fields[i]
		switch r.Kind {
		case KindSolutions, KindTeam, KindContacts:
			if s[r.SF] == nil {
				add(r.Line, r.Name, "deploy deploy/salesforce to the org, or map another field", "Salesforce object %s does not exist in the metadata", r.SF)
			}
			continue
		}
		if r.kindUnknown && s[r.SF] != nil {
			continue // a child object (solutions, team) under a type with a problem of its own
		}
		object, name := "Opportunity", r.SF
		if rest, ok := strings.CutPrefix(r.SF, "Account."); ok {
			object, name = "Account", rest
		} else if strings.Contains(r.SF, ".") {
			add(r.Line, r.Name, "map an Opportunity field or Account.<field>", "%s is not an Opportunity or Account field", r.SF)
			continue
		}
		f, ok := s[object][strings.ToLower(name)]
		if !ok {
			add(r.Line, r.Name, suggest(s[object], name, object), "Salesforce field %s.%s does not exist", object, name)
			continue
		}
		if object == "Opportunity" {
			mapped[strings.ToLower(f.Name)] = true
		}
		if r.Kind == KindStatus {
			for key, stage := range map[string]string{"hold": m.Stages.Hold, "active": m.Stages.Active, "won": m.Stages.Won, "lost": m.Stages.Lost, "decline": m.Stages.Decline} {
				if stage != "" && !slices.Contains(f.Picklist, stage) {
					ps = append(ps, m.problem("stages."+key, r.Name, "use one of: "+strings.Join(f.Picklist, ", "), "stages.%s: stage %q is not a StageName value", key, stage))
				}
			}
			continue
		}
		if r.kindUnknown {
			continue // its type has a problem of its own
		}
		if !slices.Contains(kinds[r.Kind], f.Type) {
			add(r.Line, r.Name, fmt.Sprintf("map a %s field, or change the type", strings.Join(kinds[r.Kind], "/")),
				"type mismatch: %s.%s is a %s field, which cannot hold %s values", object, f.Name, f.Type, r.Kind)
			continue
		}
		if r.ToSF != Never && !f.Writeable {
			add(r.Line, r.Name, "set toSF: never", "%s.%s is read-only in Salesforce", object, f.Name)
		}
		if len(f.Picklist) > 0 {
			for _, v := range r.Values {
				if v.SF != "" && !slices.Contains(f.Picklist, v.SF) {
					add(r.Line, r.Name, "use one of: "+strings.Join(f.Picklist, ", "), "picklist value %q does not exist on %s.%s", v.SF, object, f.Name)
				}
			}
			if r.Kind == KindCurrency && !slices.Contains(f.Picklist, m.DefaultCurrency) {
				ps = append(ps, m.problem("defaultCurrency", r.Name, "use one of: "+strings.Join(f.Picklist, ", "), "defaultCurrency %q is not enabled in %s.%s", m.DefaultCurrency, object, f.Name))
			}
		}
		if r.Kind == KindText && f.Length > 0 {
			switch {
			case r.MaxLength == 0:
				r.MaxLength = f.Length
			case r.MaxLength > f.Length:
				add(r.Line, r.Name, fmt.Sprintf("set maxLength: %d", f.Length), "maxLength %d is longer than %s.%s (%d characters): Salesforce would refuse the write", r.MaxLength, object, f.Name, f.Length)
			}
		}
	}
	// Required Opportunity fields that neither the mapping nor cosell fills.
	filledByCosell := map[string]bool{"closedate": true, "stagename": true, "name": false}
	var required []string
	for key, f := range s["Opportunity"] {
		if f.Required && f.Writeable && !mapped[key] && !filledByCosell[key] {
			required = append(required, f.Name)
		}
	}
	sort.Strings(required)
	for _, name := range required {
		add(m.Lines["fields"], name, fmt.Sprintf("add - { name: %s, pc: <referral path>, sf: %s }", strings.ToLower(name[:1])+name[1:], name),
			"missing required field: Salesforce requires Opportunity.%s", name)
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return ps
}

// suggest proposes the closest field name.
func suggest(fields map[string]sfField, name, object string) string {
	// A typo (Descripton, Amuont) is within two edits of the field meant.
	want := strings.ToLower(strings.TrimSuffix(name, "__c"))
	var close []string
	for _, f := range fields {
		have := strings.ToLower(strings.TrimSuffix(f.Name, "__c"))
		if strings.Contains(have, want) || strings.Contains(want, have) || strings.EqualFold(strings.ReplaceAll(have, "_", ""), strings.ReplaceAll(want, "_", "")) ||
			len(want) >= 4 && editDistance(have, want) <= 2 {
			close = append(close, f.Name)
		}
	}
	sort.Strings(close)
	if len(close) > 0 {
		return "did you mean " + strings.Join(close, " or ") + "?"
	}
	return "check the API name in Setup → Object Manager → " + object + " (custom fields end in __c)"
}

// editDistance is the Levenshtein distance between a and b (bytes: API names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
