// Package mapping is cosell's field mapping, in one place: the file format (a version 1 YAML file), the
// default file (deploy/k8s/base/mapping.yaml, embedded), parsing with the line of every problem, validation
// against the referral schema and the Salesforce metadata (deploy/salesforce, embedded, or an org's own
// SFDX project), and the typed result with the transforms between referrals or Opportunities and canonical
// values. The mapper's decision core (services/mapper/decide) decides over a Mapping; the mapper,
// sf-ingest (the fields it polls) and the cosell CLI (drift, plan, mapping validate) all load one through
// Load, so a customised file means the same to each of them.
package mapping

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
)

// Canonical field names of the default mapping: the vocabulary in which both sides are compared and link
// state is kept. A mapping file may name its fields differently; the decisions look fields up by kind and
// path, never by these names.
const (
	FieldName         = "name"
	FieldCustomerName = "customerName"
	FieldStreet       = "street"
	FieldCity         = "city"
	FieldState        = "state"
	FieldPostalCode   = "postalCode"
	FieldCountry      = "country"
	FieldDealValue    = "dealValue"
	FieldCurrency     = "currency"
	FieldCloseDate    = "closeDate"
	FieldNotes        = "notes"
	FieldHelp         = "help"
	FieldSolutions    = "solutions"
	FieldTeam         = "team"
	// FieldContacts: the customer's contacts (the Opportunity's contact roles ↔ customerProfile.team).
	FieldContacts = "contacts"
	FieldStatus   = "status"
	// FieldVisibility: the referral is visible to Microsoft sellers (once visible, always visible).
	FieldVisibility = "visibility"
	// FieldCRMID: Microsoft's CRM (MSX) id of the deal, read-only on the Opportunity.
	FieldCRMID = "crmId"
)

// Canonical status values. Partner Center's Declined and Expired read as "lost" unless the mapping names a
// decline stage: with one lost stage only, keeping them apart would make the two sides differ forever.
const (
	StatusNew      = "new"
	StatusActive   = "active"
	StatusWon      = "won"
	StatusLost     = "lost"
	StatusDeclined = "declined"
)

// Reach says how far a field travels towards one side.
type Reach int

// Reaches.
const (
	// Never: the field is not written to that side.
	Never Reach = iota
	// OnCreate: written when the record is created, never patched (e.g. Partner Center refuses a patch of
	// the customer's name).
	OnCreate
	// Always: written on create and on every change.
	Always
)

// Kind is a mapped field's value type: it picks the transform applied when a value is read from or written
// to either side, and how two values are compared.
type Kind string

// Kinds.
const (
	KindText      Kind = "text"      // trimmed string, cut to MaxLength
	KindMoney     Kind = "money"     // number rounded to cents
	KindDate      Kind = "date"      // YYYY-MM-DD (Partner Center gets midnight UTC)
	KindCurrency  Kind = "currency"  // ISO-4217 code, upper case
	KindCountry   Kind = "country"   // ISO-3166 alpha-2 code, upper case
	KindEnum      Kind = "enum"      // a value of the field's value table
	KindBool      Kind = "bool"      // true / false
	KindStatus    Kind = "status"    // referral status+substatus ↔ StageName, by the stage rules
	KindSolutions Kind = "solutions" // Microsoft Solution child records ↔ details.requirements.solutions
	KindTeam      Kind = "team"      // OpportunityTeamMember users ↔ a referral's team members
	KindContacts  Kind = "contacts"  // OpportunityContactRole Contacts ↔ the referral customer's contacts
)

// Owner says which side wins when both changed a field since the last sync.
type Owner string

// Owners.
const (
	// OwnerNewest: the newer change wins (by each side's own version time).
	OwnerNewest Owner = "newest"
	// OwnerPC: Partner Center's value wins, and is written back to Salesforce.
	OwnerPC Owner = "pc"
	// OwnerSF: Salesforce's value wins, and is written back to Partner Center.
	OwnerSF Owner = "sf"
	// OwnerReview: nothing is written; the conflict is parked on the link for a person to resolve.
	OwnerReview Owner = "both-with-review"
)

// ValuePair is one row of a value table: a Partner Center value and the Salesforce value it stands for.
// An empty SF means "no value" in Salesforce (e.g. assistance code Unknown ↔ an empty picklist).
type ValuePair struct {
	PC string
	SF string
}

// FieldRule is one mapped field.
type FieldRule struct {
	// Name is the field's canonical name (the key in Link.Synced).
	Name string
	ToPC Reach
	ToSF Reach
	// PC is the referral path, dotted (details.dealValue); SF is the Opportunity field API name, a parent
	// field (Account.BillingCountry), or for solutions and team the child object.
	PC, SF string
	Kind   Kind
	// Owner decides conflicts; empty means OwnerNewest.
	Owner Owner
	// MaxLength cuts text values (runes); 0 = no limit.
	MaxLength int
	// Values is the value table of an enum (and optionally of text, country and currency fields).
	Values []ValuePair
	// Line is where the rule is in its mapping file (0 for rules built in code).
	Line int
	// kindUnknown marks, while a file is validated, a rule whose type has a problem of its own (unknown,
	// or not the referral path's): the Salesforce type checks skip it rather than report a second,
	// cascading mismatch.
	kindUnknown bool
}

// Stages are the Salesforce stage rules of the Microsoft connector.
type Stages struct {
	// Hold is where a received referral waits; changes made while in it are not sent.
	Hold string
	// Active is the stage an accepted referral gets; leaving Hold accepts the referral.
	Active string
	Won    string
	Lost   string
	// Decline, when set, is the stage of a declined (or expired) referral; empty = Lost, and a referral that
	// was never accepted is declined rather than lost when its Opportunity is lost.
	Decline string
}

// Mapping is the field mapping and the settings it depends on.
type Mapping struct {
	Fields []FieldRule
	Stages Stages
	// DefaultCurrency is used when a side gives no currency.
	DefaultCurrency string
	// ReferralLinkFormat is a fmt pattern taking the referral id, written to Referral Link.
	ReferralLinkFormat string
	// NameMark appends the sync mark (✔ in step, ✖ failed) to the Opportunity's Name, as Microsoft's
	// connector does ("show check mark in Opportunity name", default on).
	NameMark bool
	// CoSellOnly is Microsoft's connector setting "sync co-sell opportunities only" (default Yes): on, every
	// referral comes in as an Opportunity; off, a lead referral (IsLeadReferral) comes in as a Salesforce
	// Lead, which converting carries to its Opportunity (docs/mapping.md, "Leads").
	CoSellOnly bool
	// Source names the file the mapping was read from, for messages.
	Source string
	// Lines says where the top-level settings are in that file ("defaultCurrency", "stages.hold", ...).
	Lines map[string]int
	// from names the environment variable that set a setting instead of the file, by the same keys.
	from map[string]string
}

// problem is a problem with a setting (a key of Lines), placed where the setting was made: its line in
// the file, or the environment variable that overrode it.
func (m Mapping) problem(key, field, fix, format string, args ...any) Problem {
	p := Problem{File: m.Source, Line: m.Lines[key], Field: field, Message: fmt.Sprintf(format, args...), Fix: fix}
	if env := m.from[key]; env != "" {
		p.File, p.Line = env, 0
	}
	return p
}

// Values are mapped field values by canonical name. Absent and nil both mean "no value".
type Values map[string]any

// Rule returns the rule of a field by its canonical name.
func (m Mapping) Rule(name string) (FieldRule, bool) {
	for _, r := range m.Fields {
		if r.Name == name {
			return r, true
		}
	}
	return FieldRule{}, false
}

// RuleByKind returns the first rule of a kind.
func (m Mapping) RuleByKind(k Kind) (FieldRule, bool) {
	for _, r := range m.Fields {
		if r.Kind == k {
			return r, true
		}
	}
	return FieldRule{}, false
}

// ruleByPC returns the rule of a referral path.
func (m Mapping) ruleByPC(path string) (FieldRule, bool) {
	for _, r := range m.Fields {
		if r.PC == path {
			return r, true
		}
	}
	return FieldRule{}, false
}

// StatusName is the canonical name of the status field ("" when the mapping has none).
func (m Mapping) StatusName() string {
	if r, ok := m.RuleByKind(KindStatus); ok {
		return r.Name
	}
	return ""
}

// Reach tells how far a field travels towards sys.
func (m Mapping) Reach(name string, sys contracts.System) Reach {
	r, ok := m.Rule(name)
	if !ok {
		return Never
	}
	if sys == contracts.PartnerCenter {
		return r.ToPC
	}
	return r.ToSF
}

// SalesforceFields lists the Opportunity fields and parent fields (Account.BillingCountry) the mapping reads,
// so the poller selects exactly what a customised mapping needs (child objects are read by the poller anyway).
func (m Mapping) SalesforceFields() []string {
	var out []string
	for _, f := range m.Fields {
		if f.SF == "" || f.Kind == KindSolutions || f.Kind == KindTeam || f.Kind == KindContacts {
			continue
		}
		out = append(out, f.SF)
	}
	return out
}

// Same compares two canonical values of a field: solutions by their ids, money to the cent, anything else
// by value (a blank and an absent value are the same).
func (m Mapping) Same(name string, a, b any) bool {
	if r, ok := m.Rule(name); ok && r.Kind == KindSolutions {
		return slices.Equal(solutionIDs(a), solutionIDs(b))
	}
	return equal(a, b)
}

func solutionIDs(x any) []string {
	list, _ := x.([]any)
	ids := make([]string, 0, len(list))
	for _, it := range list {
		if mm, ok := it.(map[string]any); ok {
			ids = append(ids, strings.ToLower(str(mm["id"])))
		}
	}
	sort.Strings(ids)
	return ids
}

func equal(a, b any) bool {
	if a == nil || b == nil {
		return IsBlank(a) && IsBlank(b)
	}
	if fa, ok := num(a); ok {
		fb, ok := num(b)
		return ok && money(fa) == money(fb)
	}
	return reflect.DeepEqual(a, b) || strings.TrimSpace(str(a)) == strings.TrimSpace(str(b))
}

// IsBlank reports a canonical value that means "no value": nil, "" or an empty list.
func IsBlank(x any) bool {
	switch t := x.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case []any:
		return len(t) == 0
	}
	return false
}

func num(x any) (float64, bool) {
	switch t := x.(type) {
	case float64:
		return t, true
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case json.Number:
		f, err := t.Float64()
		return f, err == nil
	}
	return 0, false
}

// BlankTravels says whether a value that disappeared is written as a blank to side to: Partner Center
// refuses blanks for numbers, dates and codes, and Salesforce requires Name, StageName and CloseDate.
func (f FieldRule) BlankTravels(to contracts.System) bool {
	switch f.Kind {
	case KindText, KindEnum, KindSolutions, KindTeam, KindContacts:
	default:
		return false
	}
	if to == contracts.Salesforce && (f.SF == sf.FieldName || f.SF == sf.FieldStageName || f.SF == sf.FieldCloseDate) {
		return false
	}
	return true
}
