package mapping

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one error in a mapping file: where it is, which field it concerns, what is wrong and how to
// fix it.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// String is "file:line: field name: message (fix: ...)"; a setting from the environment has no line.
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "%s:%d: ", p.File, p.Line)
	} else {
		fmt.Fprintf(&b, "%s: ", p.File)
	}
	if p.Field != "" {
		fmt.Fprintf(&b, "field %s: ", p.Field)
	}
	b.WriteString(p.Message)
	if p.Fix != "" {
		b.WriteString(" (fix: " + p.Fix + ")")
	}
	return b.String()
}

// Problems is the error of a mapping file that cannot be used.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// ReferralField describes one referral path a mapping may use: its kind, and the values of an enum.
type ReferralField struct {
	Kind   Kind
	Values []string
}

// ReferralSchema lists the referral paths a mapping may name (partner-center.md §2 and §6).
var ReferralSchema = map[string]ReferralField{
	"name":                                 {Kind: KindText},
	"statusReason":                         {Kind: KindText},
	"salesStage":                           {Kind: KindText},
	"campaignId":                           {Kind: KindText},
	"referralProgram":                      {Kind: KindText},
	"customerProfile.name":                 {Kind: KindText},
	"customerProfile.address.addressLine1": {Kind: KindText},
	"customerProfile.address.addressLine2": {Kind: KindText},
	"customerProfile.address.city":         {Kind: KindText},
	"customerProfile.address.state":        {Kind: KindText},
	"customerProfile.address.postalCode":   {Kind: KindText},
	"customerProfile.address.region":       {Kind: KindText},
	"customerProfile.address.country":      {Kind: KindCountry},
	"customerProfile.size": {Kind: KindEnum, Values: []string{"1to50employees", "51to500employees",
		"Morethan500employees", "1to9employees", "10to50employees", "51to250employees", "251to1000employees",
		"1001to5000employees", "5001to10000employees", "10001to20000employees", "Morethan20000employees"}},
	"customerProfile.team":           {Kind: KindContacts},
	"details.notes":                  {Kind: KindText},
	"details.dealValue":              {Kind: KindMoney},
	"details.currency":               {Kind: KindCurrency},
	"details.closingDateTime":        {Kind: KindDate},
	"details.customerAction":         {Kind: KindText},
	"details.incentiveLevel":         {Kind: KindText},
	"details.requirements.solutions": {Kind: KindSolutions},
	"team":                           {Kind: KindTeam},
	"inviteContext.notes":            {Kind: KindText},
	"inviteContext.assistanceRequestCode": {Kind: KindEnum, Values: []string{"Unknown", "GeneralOrOther",
		"CustomerTechnicalArchitecture", "ProofOfConceptOrDemo", "QuotesOrLicensing", "PostSalesCustomerSuccess",
		"WorkloadSpecificValueProposition"}},
	"consent.consentToShareReferralWithMicrosoftSellers": {Kind: KindBool},
	"trackingInfo.microsoftMsxId":                        {Kind: KindText},
	"status":                                             {Kind: KindStatus},
}

// compatible says which rule kinds a referral path of kind k can carry.
func compatible(path, rule Kind) bool {
	if path == rule {
		return true
	}
	// A free-text path can carry a value table or a code.
	return path == KindText && (rule == KindEnum || rule == KindCountry || rule == KindCurrency)
}

var (
	reachWords = map[string]Reach{"never": Never, "create": OnCreate, "always": Always}
	ownerWords = []Owner{OwnerNewest, OwnerPC, OwnerSF, OwnerReview}
	kindWords  = []Kind{KindText, KindMoney, KindDate, KindCurrency, KindCountry, KindEnum, KindBool, KindStatus, KindSolutions, KindTeam, KindContacts}
)

// parse reads a mapping file and checks it against the referral schema and its own rules. The error, when
// not nil, is Problems with the line of each. The Salesforce metadata is checked after it (check), as it
// depends on the org.
func parse(file string, data []byte) (Mapping, error) {
	m, ps, _ := parseAll(file, data)
	if len(ps) > 0 {
		return Mapping{}, ps
	}
	return m, nil
}

// parseAll is parse that keeps going: it returns what it could read of the file with every problem found,
// so the metadata checks can run on the fields that are readable, and readable is false when the file is
// not a YAML mapping at all. A field with a mistake stays in the mapping (marked where its type is not
// known), so a later check neither misses its other mistakes nor reports it as missing.
func parseAll(file string, data []byte) (m Mapping, ps Problems, readable bool) {
	p := &parser{file: file}
	m = p.parse(data)
	return m, p.problems, !p.unreadable
}

type parser struct {
	file     string
	problems Problems
	// unreadable is set when the file is not YAML or not a mapping: nothing else can be checked.
	unreadable bool
}

func (p *parser) add(line int, field, fix, format string, args ...any) {
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Field: field, Message: fmt.Sprintf(format, args...), Fix: fix})
}

func (p *parser) parse(data []byte) Mapping {
	m := Mapping{Source: p.file, Lines: map[string]int{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line := 1
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			// yaml.v3 messages start with "yaml: line N: ...".
			if _, rest, ok := strings.Cut(err.Error(), "line "); ok {
				if n, err := strconv.Atoi(strings.SplitN(rest, ":", 2)[0]); err == nil {
					line = n
				}
			}
		}
		p.add(line, "", "fix the YAML syntax", "not valid YAML: %v", err)
		p.unreadable = true
		return m
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		p.add(1, "", "start from the built-in mapping: cosell mapping default > mapping.yaml", "the file must be a YAML mapping with version, stages and fields")
		p.unreadable = true
		return m
	}
	root := doc.Content[0]
	seen := map[string]*yaml.Node{}
	// attempted are the field items too incomplete to check (no name or side): they still count for the
	// required fields, so a required field with a mistake is reported once, at its own line.
	var attempted []FieldRule
	fieldsList := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		seen[k.Value] = k
		m.Lines[k.Value] = k.Line
		switch k.Value {
		case "version":
			if v.Value != "1" {
				p.add(v.Line, "", "set version: 1", "version %q is not supported", v.Value)
			}
		case "defaultCurrency":
			m.DefaultCurrency = strings.TrimSpace(v.Value)
			if code(m.DefaultCurrency, 3) == nil {
				p.add(v.Line, "", "use an ISO-4217 code such as USD", "defaultCurrency %q is not a three-letter currency code", v.Value)
			}
		case "referralLink":
			m.ReferralLinkFormat = v.Value
			if strings.Count(v.Value, "%s") != 1 || strings.Count(v.Value, "%") != 1 {
				p.add(v.Line, "", "put exactly one %s where the referral id goes", "referralLink %q must contain %%s once and no other %%", v.Value)
			}
		case "nameMark":
			b, ok := parseBool(v.Value)
			if !ok || v.Kind != yaml.ScalarNode {
				p.add(v.Line, "", "set nameMark: true or nameMark: false", "nameMark %q is not true or false", v.Value)
			}
			m.NameMark = b
		case "coSellOnly":
			b, ok := parseBool(v.Value)
			if !ok || v.Kind != yaml.ScalarNode {
				p.add(v.Line, "", "set coSellOnly: true or coSellOnly: false", "coSellOnly %q is not true or false", v.Value)
			}
			m.CoSellOnly = b
		case "stages":
			m.Stages = p.stages(v, m.Lines)
		case "fields":
			m.Fields, attempted = p.fields(v)
			fieldsList = v.Kind == yaml.SequenceNode
		default:
			p.add(k.Line, "", "remove it; the keys are version, defaultCurrency, referralLink, nameMark, coSellOnly, stages, fields", "unknown key %q", k.Value)
		}
	}
	for _, key := range []string{"version", "stages", "fields"} {
		if seen[key] == nil {
			p.add(1, "", "add "+key+" (see cosell mapping default)", "missing %q", key)
		}
	}
	if m.DefaultCurrency == "" && seen["defaultCurrency"] == nil {
		m.DefaultCurrency = "USD"
	}
	if seen["nameMark"] == nil {
		m.NameMark = true // Microsoft's connector shows the mark unless switched off
	}
	if seen["coSellOnly"] == nil {
		m.CoSellOnly = true // Microsoft's connector: "sync co-sell opportunities only", default Yes
	}
	if seen["referralLink"] == nil {
		m.ReferralLinkFormat = "https://partner.microsoft.com/dashboard/referrals/v2/leads/%s"
	}
	if fieldsList {
		p.required(m, attempted, seen["fields"].Line)
	}
	return m
}

func (p *parser) stages(n *yaml.Node, lines map[string]int) Stages {
	var s Stages
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, "", "give hold, active, won and lost stage names", "stages must be a mapping")
		return s
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		lines["stages."+k.Value] = v.Line
		val := strings.TrimSpace(v.Value)
		switch k.Value {
		case "hold":
			s.Hold = val
		case "active":
			s.Active = val
		case "won":
			s.Won = val
		case "lost":
			s.Lost = val
		case "decline":
			s.Decline = val
		default:
			p.add(k.Line, "", "the stage keys are hold, active, won, lost, decline", "unknown stage key %q", k.Value)
		}
	}
	for key, val := range map[string]string{"hold": s.Hold, "active": s.Active, "won": s.Won, "lost": s.Lost} {
		if val == "" {
			p.add(n.Line, "", "name the Salesforce stage for "+key, "stages.%s is missing", key)
		}
	}
	return s
}

// stageRules checks the stage rules against each other, wherever each stage was set (the file or the
// environment).
func stageRules(m Mapping) Problems {
	var ps Problems
	s := m.Stages
	if s.Hold != "" && (s.Hold == s.Active || s.Hold == s.Won || s.Hold == s.Lost) {
		ps = append(ps, m.problem("stages.hold", "", "pick a stage used for nothing else", "the hold stage %q is also used as another stage: held referrals could not be told apart", s.Hold))
	}
	if s.Active != "" && (s.Active == s.Won || s.Active == s.Lost) {
		ps = append(ps, m.problem("stages.active", "", "pick an open stage", "the active stage %q is also the won or lost stage", s.Active))
	}
	if s.Decline != "" && (s.Decline == s.Hold || s.Decline == s.Active || s.Decline == s.Won) {
		ps = append(ps, m.problem("stages.decline", "", "use a closed stage that is not the won stage, or leave it empty", "the decline stage %q is an open or won stage", s.Decline))
	}
	return ps
}

// fields reads the field list: the rules complete enough to check further (name and both sides), and
// the items that are not.
func (p *parser) fields(n *yaml.Node) (out, attempted []FieldRule) {
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, "", "make fields a list of '- name: ...' items", "fields must be a list")
		return nil, nil
	}
	names := map[string]int{}
	paths := map[string]int{}
	for _, item := range n.Content {
		r, ok := p.field(item)
		if !ok {
			attempted = append(attempted, r)
			continue
		}
		if prev, dup := names[r.Name]; dup {
			p.add(r.Line, r.Name, "give each field its own name", "the name is already used on line %d", prev)
			continue
		}
		if prev, dup := paths[r.PC]; dup && r.PC != "" {
			p.add(r.Line, r.Name, "map each referral path once", "referral path %s is already mapped on line %d", r.PC, prev)
			continue
		}
		names[r.Name], paths[r.PC] = r.Line, r.Line
		out = append(out, r)
	}
	return out, attempted
}

func (p *parser) field(n *yaml.Node) (FieldRule, bool) {
	r := FieldRule{Line: n.Line, ToPC: Always, ToSF: Always, Owner: OwnerNewest}
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, "", "write the field as a mapping: name, pc, sf, ...", "a field must be a mapping")
		return r, false
	}
	var kindLine, toPCLine int
	explicitKind := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "name":
			r.Name = strings.TrimSpace(v.Value)
		case "pc":
			r.PC = strings.TrimSpace(v.Value)
		case "sf":
			r.SF = strings.TrimSpace(v.Value)
		case "type":
			kindLine, explicitKind = v.Line, true
			r.Kind = Kind(v.Value)
			if !slices.Contains(kindWords, r.Kind) {
				p.add(v.Line, r.Name, "use one of "+joinKinds(), "unknown type %q", v.Value)
				r.kindUnknown = true
			}
		case "toPC", "toSF":
			reach, ok := reachWords[v.Value]
			if !ok {
				p.add(v.Line, r.Name, "use never, create or always", "%s %q is not a direction", k.Value, v.Value)
			}
			if k.Value == "toPC" {
				r.ToPC, toPCLine = reach, v.Line
			} else {
				r.ToSF = reach
			}
		case "owner":
			r.Owner = Owner(v.Value)
			if !slices.Contains(ownerWords, r.Owner) {
				p.add(v.Line, r.Name, "use newest, pc, sf or both-with-review", "owner %q is not known", v.Value)
			}
		case "maxLength":
			l, err := strconv.Atoi(v.Value)
			if err != nil || l < 1 {
				p.add(v.Line, r.Name, "give a positive number of characters", "maxLength %q is not a positive whole number", v.Value)
			}
			r.MaxLength = l
		case "values":
			r.Values = p.values(r.Name, v)
		default:
			p.add(k.Line, r.Name, "the field keys are name, pc, sf, type, toPC, toSF, owner, maxLength, values", "unknown key %q", k.Value)
		}
	}
	if kindLine == 0 {
		kindLine = n.Line
	}
	if toPCLine == 0 {
		toPCLine = n.Line
	}
	if r.Name == "" {
		p.add(n.Line, "", "add name: <canonical name>", "a field has no name")
		return r, false
	}
	if r.PC == "" || r.SF == "" {
		p.add(n.Line, r.Name, "give both pc (referral path) and sf (Salesforce field)", "a field needs both sides")
		return r, false
	}
	schema, known := ReferralSchema[r.PC]
	switch {
	case !known:
		// The Salesforce side is still checked; the type cannot be, without the path's.
		p.add(n.Line, r.Name, "use one of: "+strings.Join(slices.Sorted(maps.Keys(ReferralSchema)), ", "), "referral path %q does not exist or cannot be mapped", r.PC)
		r.kindUnknown = true
		return r, true
	case r.kindUnknown:
	case !explicitKind:
		r.Kind = schema.Kind
	case !compatible(schema.Kind, r.Kind):
		p.add(kindLine, r.Name, fmt.Sprintf("use type %s, or map a different path", schema.Kind), "type mismatch: %s is %s, not %s", r.PC, schema.Kind, r.Kind)
		r.kindUnknown = true
	}
	if r.Kind == KindEnum && len(r.Values) == 0 {
		p.add(n.Line, r.Name, "add values: - { pc: ..., sf: ... }", "an enum needs a value table")
	}
	if schema.Kind == KindEnum {
		for _, v := range r.Values {
			if !slices.Contains(schema.Values, v.PC) {
				p.add(n.Line, r.Name, "use one of: "+strings.Join(schema.Values, ", "), "Partner Center value %q does not exist for %s", v.PC, r.PC)
			}
		}
	}
	if r.ToPC == Always {
		if _, ok := PatchablePaths[r.PC]; !ok && r.Kind != KindStatus {
			p.add(toPCLine, r.Name, "set toPC: create (sent when the referral is created) or never", "Partner Center does not allow %s to be patched", r.PC)
		}
	}
	switch r.Kind {
	case KindSolutions:
		if r.SF != "Microsoft_Solution__c" {
			p.add(n.Line, r.Name, "set sf: Microsoft_Solution__c", "solutions come from the Microsoft Solution records, not %s", r.SF)
		}
	case KindTeam:
		if r.SF != "OpportunityTeamMember" {
			p.add(n.Line, r.Name, "set sf: OpportunityTeamMember", "team members come from OpportunityTeamMember, not %s", r.SF)
		}
		if r.ToSF != Never {
			p.add(n.Line, r.Name, "set toSF: never", "cosell cannot create Salesforce users from Partner Center team members")
		}
	case KindContacts:
		if r.SF != "OpportunityContactRole" {
			p.add(n.Line, r.Name, "set sf: OpportunityContactRole", "customer contacts come from the Opportunity's contact roles (OpportunityContactRole), not %s", r.SF)
		}
	case KindStatus:
		if r.SF != "StageName" {
			p.add(n.Line, r.Name, "set sf: StageName", "the status maps to StageName by the stage rules, not %s", r.SF)
		}
	}
	if r.Owner == OwnerPC && r.ToSF == Never || r.Owner == OwnerSF && r.ToPC == Never {
		p.add(n.Line, r.Name, "make the owner the side the field travels from, or drop owner", "owner %s can never win: the field does not travel from it", r.Owner)
	}
	return r, true
}

func (p *parser) values(name string, n *yaml.Node) []ValuePair {
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, name, "write values as a list of { pc: ..., sf: ... }", "values must be a list")
		return nil
	}
	var out []ValuePair
	seenPC, seenSF := map[string]bool{}, map[string]bool{}
	for _, it := range n.Content {
		if it.Kind != yaml.MappingNode {
			p.add(it.Line, name, "write each row as { pc: ..., sf: ... }", "a value row must be a mapping")
			continue
		}
		var v ValuePair
		for i := 0; i+1 < len(it.Content); i += 2 {
			switch it.Content[i].Value {
			case "pc":
				v.PC = it.Content[i+1].Value
			case "sf":
				v.SF = it.Content[i+1].Value
			default:
				p.add(it.Content[i].Line, name, "a row has pc and sf only", "unknown key %q in a value row", it.Content[i].Value)
			}
		}
		if v.PC == "" {
			p.add(it.Line, name, "give the Partner Center value", "a value row has no pc value")
			continue
		}
		if seenPC[strings.ToLower(v.PC)] || (v.SF != "" && seenSF[strings.ToLower(v.SF)]) {
			p.add(it.Line, name, "keep one row per value", "value %q / %q is listed twice: the table would be ambiguous", v.PC, v.SF)
			continue
		}
		seenPC[strings.ToLower(v.PC)], seenSF[strings.ToLower(v.SF)] = true, true
		out = append(out, v)
	}
	return out
}

// required checks the fields every mapping needs. A field item too incomplete to check (attempted) that
// names the required field's path, Salesforce field or name has its own problem already: it is not
// reported missing as well.
func (p *parser) required(m Mapping, attempted []FieldRule, line int) {
	tried := func(name, pc, sf string) bool {
		return slices.ContainsFunc(attempted, func(r FieldRule) bool { return r.Name == name || r.PC == pc || r.SF == sf })
	}
	status := 0
	for _, r := range m.Fields {
		if r.Kind == KindStatus || r.PC == "status" {
			status++
		}
	}
	if status == 0 && !tried("status", "status", "StageName") {
		p.add(line, "status", "add - { name: status, pc: status, sf: StageName, type: status }", "missing required field: the status ↔ StageName rule")
	}
	if r, ok := m.ruleByPC("name"); (!ok && !tried("name", "name", "")) || ok && r.ToPC == Never {
		p.add(line, "name", "map pc: name with toPC: create", "missing required field: the referral name")
	}
	hasSFName := false
	for _, r := range m.Fields {
		if r.SF == "Name" && r.ToSF != Never {
			hasSFName = true
		}
	}
	if !hasSFName && !tried("name", "", "Name") {
		p.add(line, "name", "map sf: Name with toSF: create or always", "missing required field: the Opportunity Name (Salesforce requires it)")
	}
	if _, ok := m.ruleByPC("customerProfile.name"); !ok && !tried("customerName", "customerProfile.name", "Account.Name") {
		p.add(line, "customerName", "map pc: customerProfile.name (e.g. to Account.Name)", "missing required field: the customer name (Partner Center requires a customer profile)")
	}
}

func joinKinds() string {
	s := make([]string, len(kindWords))
	for i, k := range kindWords {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// parseBool reads a YAML 1.2 boolean (true / false, any case).
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}
