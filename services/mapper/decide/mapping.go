package decide

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
)

// Canonical field names: the vocabulary in which both sides are compared and link state is kept.
const (
	FieldName         = "name"
	FieldCustomerName = "customerName"
	FieldCountry      = "country"
	FieldPostalCode   = "postalCode"
	FieldCity         = "city"
	FieldDealValue    = "dealValue"
	FieldCurrency     = "currency"
	FieldCloseDate    = "closeDate"
	FieldNotes        = "notes"
	FieldStatus       = "status"
)

// Canonical status values. Partner Center's Declined and Expired read as "lost": Salesforce has one lost
// stage, and keeping them apart would make the two sides differ forever.
const (
	StatusNew    = "new"
	StatusActive = "active"
	StatusWon    = "won"
	StatusLost   = "lost"
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

// FieldRule is one mapped field.
type FieldRule struct {
	Name string
	ToPC Reach
	ToSF Reach
}

// Stages are the Salesforce stage rules of the Microsoft connector.
type Stages struct {
	// Hold is where a received referral waits; changes made while in it are not sent.
	Hold string
	// Active is the stage an accepted referral gets; leaving Hold accepts the referral.
	Active string
	Won    string
	Lost   string
}

// Mapping is the field mapping and the settings it depends on.
type Mapping struct {
	Fields []FieldRule
	Stages Stages
	// DefaultCurrency is used when a side gives no currency.
	DefaultCurrency string
	// ReferralLinkFormat is a fmt pattern taking the referral id, written to Referral Link.
	ReferralLinkFormat string
}

// DefaultMapping reproduces the Microsoft connector's core field mapping.
func DefaultMapping() Mapping {
	return Mapping{
		Fields: []FieldRule{
			{Name: FieldName, ToPC: OnCreate, ToSF: Always},
			{Name: FieldCustomerName, ToPC: OnCreate, ToSF: OnCreate},
			{Name: FieldCountry, ToPC: OnCreate, ToSF: OnCreate},
			{Name: FieldPostalCode, ToPC: OnCreate, ToSF: OnCreate},
			{Name: FieldCity, ToPC: OnCreate, ToSF: OnCreate},
			{Name: FieldDealValue, ToPC: Always, ToSF: Always},
			{Name: FieldCurrency, ToPC: Always, ToSF: Always},
			{Name: FieldCloseDate, ToPC: Always, ToSF: Always},
			{Name: FieldNotes, ToPC: Always, ToSF: Always},
			{Name: FieldStatus, ToPC: Always, ToSF: Always},
		},
		Stages: Stages{
			Hold:   "Prospecting",
			Active: "Qualification",
			Won:    "Closed Won",
			Lost:   "Closed Lost",
		},
		DefaultCurrency:    "USD",
		ReferralLinkFormat: "https://partner.microsoft.com/dashboard/referrals/v2/leads/%s",
	}
}

// Values are mapped field values by canonical name. Absent and nil both mean "no value".
type Values map[string]any

// FromReferral reads a referral's mapped values.
func (m Mapping) FromReferral(r partnercenter.Referral) Values {
	v := Values{}
	put(v, FieldName, r.Name)
	put(v, FieldStatus, referralStatus(r.Status, r.Substatus))
	if cp := r.CustomerProfile; cp != nil {
		put(v, FieldCustomerName, cp.Name)
		if a := cp.Address; a != nil {
			put(v, FieldCountry, strings.ToUpper(a.Country))
			put(v, FieldPostalCode, a.PostalCode)
			put(v, FieldCity, a.City)
		}
	}
	if d := r.Details; d != nil {
		if d.DealValue != nil {
			v[FieldDealValue] = money(*d.DealValue)
		}
		put(v, FieldCurrency, strings.ToUpper(d.Currency))
		put(v, FieldCloseDate, dateOf(d.ClosingDateTime))
		put(v, FieldNotes, d.Notes)
	}
	return v
}

// FromOpportunity reads an Opportunity's mapped values.
func (m Mapping) FromOpportunity(o contracts.Opportunity) Values {
	v := Values{}
	f := o.Fields
	put(v, FieldName, str(f[sf.FieldName]))
	put(v, FieldCustomerName, str(f["Account.Name"]))
	put(v, FieldCountry, strings.ToUpper(str(f["Account."+sf.AccountBillingCountry])))
	put(v, FieldPostalCode, str(f["Account."+sf.AccountBillingPostalCode]))
	put(v, FieldCity, str(f["Account."+sf.AccountBillingCity]))
	if n, ok := f[sf.FieldAmount].(float64); ok {
		v[FieldDealValue] = money(n)
	}
	put(v, FieldCurrency, strings.ToUpper(str(f[sf.FieldCurrencyIsoCode])))
	put(v, FieldCloseDate, dateOf(str(f[sf.FieldCloseDate])))
	put(v, FieldNotes, str(f[sf.FieldDescription]))
	put(v, FieldStatus, m.stageStatus(str(f[sf.FieldStageName]), f[sf.FieldIsWon], f[sf.FieldIsClosed]))
	return v
}

func (m Mapping) stageStatus(stage string, isWon, isClosed any) string {
	switch {
	case stage == "":
		return ""
	case stage == m.Stages.Hold:
		return StatusNew
	case stage == m.Stages.Won || isWon == true:
		return StatusWon
	case stage == m.Stages.Lost || isClosed == true:
		return StatusLost
	}
	return StatusActive
}

func referralStatus(status, substatus string) string {
	switch status {
	case partnercenter.StatusNew:
		return StatusNew
	case partnercenter.StatusActive:
		return StatusActive
	case partnercenter.StatusClosed:
		if substatus == partnercenter.SubstatusWon {
			return StatusWon
		}
		return StatusLost
	}
	return ""
}

// rule returns the rule of a field.
func (m Mapping) rule(name string) (FieldRule, bool) {
	for _, r := range m.Fields {
		if r.Name == name {
			return r, true
		}
	}
	return FieldRule{}, false
}

// reach tells how far a field travels towards sys.
func (m Mapping) reach(name string, sys contracts.System) Reach {
	r, ok := m.rule(name)
	if !ok {
		return Never
	}
	if sys == contracts.PartnerCenter {
		return r.ToPC
	}
	return r.ToSF
}

// ReferralCreate builds the referral to create from an Opportunity's values.
func (m Mapping) ReferralCreate(oppID string, v Values) partnercenter.Referral {
	r := partnercenter.Referral{
		Name:                str(v[FieldName]),
		ExternalReferenceID: oppID,
		Type:                partnercenter.TypeIndependent,
		Qualification:       partnercenter.QualificationDirect,
		Status:              partnercenter.StatusNew,
		Substatus:           partnercenter.SubstatusPending,
		CustomerProfile: &partnercenter.CustomerProfile{
			Name: str(v[FieldCustomerName]),
		},
		Consent: &partnercenter.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true},
		Details: &partnercenter.Details{
			Notes:    str(v[FieldNotes]),
			Currency: m.currency(v),
		},
	}
	if r.CustomerProfile.Name == "" {
		r.CustomerProfile.Name = r.Name
	}
	if c := str(v[FieldCountry]); c != "" {
		r.CustomerProfile.Address = &partnercenter.Address{
			Country: c, PostalCode: str(v[FieldPostalCode]), City: str(v[FieldCity]),
		}
	}
	if d, ok := v[FieldDealValue].(float64); ok {
		r.Details.DealValue = &d
	}
	if cd := str(v[FieldCloseDate]); cd != "" {
		r.Details.ClosingDateTime = cd + "T00:00:00Z"
	}
	return r
}

// ReferralPatch turns changed values into JSON Patch operations. from is the referral's current status,
// needed to pick Declined (never accepted) or Lost (accepted) when the deal is lost.
func (m Mapping) ReferralPatch(changed Values, from string) []partnercenter.PatchOp {
	var ops []partnercenter.PatchOp
	for _, name := range sortedKeys(changed) {
		val := changed[name]
		switch name {
		case FieldDealValue:
			ops = append(ops, replace("/details/dealValue", val))
		case FieldCurrency:
			ops = append(ops, replace("/details/currency", val))
		case FieldCloseDate:
			if s := str(val); s != "" {
				ops = append(ops, replace("/details/closingDateTime", s+"T00:00:00Z"))
			}
		case FieldNotes:
			ops = append(ops, replace("/details/notes", str(val)))
		case FieldStatus:
			status, substatus := referralStatusFor(str(val), from)
			if status != "" {
				ops = append(ops, replace("/status", status), replace("/substatus", substatus))
			}
		}
	}
	return ops
}

func referralStatusFor(status, from string) (string, string) {
	switch status {
	case StatusActive:
		return partnercenter.StatusActive, partnercenter.SubstatusAccepted
	case StatusWon:
		return partnercenter.StatusClosed, partnercenter.SubstatusWon
	case StatusLost:
		if from == StatusNew {
			return partnercenter.StatusClosed, partnercenter.SubstatusDeclined
		}
		return partnercenter.StatusClosed, partnercenter.SubstatusLost
	}
	// A referral never goes back to New.
	return "", ""
}

func replace(path string, v any) partnercenter.PatchOp {
	return partnercenter.PatchOp{Op: "replace", Path: path, Value: v}
}

// OpportunityFields turns values into Opportunity API fields. create adds the fields Salesforce requires.
func (m Mapping) OpportunityFields(v Values, create bool, createdAt time.Time) map[string]any {
	f := map[string]any{}
	for name, val := range v {
		switch name {
		case FieldName:
			f[sf.FieldName] = truncate(str(val), 120)
		case FieldDealValue:
			f[sf.FieldAmount] = val
		case FieldCurrency:
			f[sf.FieldCurrencyIsoCode] = val
		case FieldCloseDate:
			if s := str(val); s != "" {
				f[sf.FieldCloseDate] = s
			}
		case FieldNotes:
			f[sf.FieldDescription] = str(val)
		case FieldStatus:
			if st := m.stageFor(str(val)); st != "" {
				f[sf.FieldStageName] = st
			}
		}
	}
	if create {
		if _, ok := f[sf.FieldCloseDate]; !ok {
			// Salesforce requires a close date; a referral may have none yet.
			f[sf.FieldCloseDate] = createdAt.AddDate(0, 0, 90).Format(time.DateOnly)
		}
		if _, ok := f[sf.FieldStageName]; !ok {
			f[sf.FieldStageName] = m.Stages.Hold
		}
		if _, ok := f[sf.FieldCurrencyIsoCode]; !ok {
			f[sf.FieldCurrencyIsoCode] = m.DefaultCurrency
		}
		f[sf.FieldSyncWithPartnerCenter] = true
	}
	return f
}

func (m Mapping) stageFor(status string) string {
	switch status {
	case StatusNew:
		return m.Stages.Hold
	case StatusActive:
		return m.Stages.Active
	case StatusWon:
		return m.Stages.Won
	case StatusLost:
		return m.Stages.Lost
	}
	return ""
}

func (m Mapping) currency(v Values) string {
	if c := str(v[FieldCurrency]); c != "" {
		return c
	}
	return m.DefaultCurrency
}

// Account builds the customer account an Opportunity created from a referral belongs to.
func (m Mapping) Account(v Values) *contracts.Account {
	name := str(v[FieldCustomerName])
	if name == "" {
		return nil
	}
	return &contracts.Account{
		Name: name, City: str(v[FieldCity]), PostalCode: str(v[FieldPostalCode]), Country: str(v[FieldCountry]),
	}
}

func put(v Values, name, s string) {
	if s = strings.TrimSpace(s); s != "" {
		v[name] = s
	}
}

func str(x any) string {
	switch t := x.(type) {
	case nil:
		return ""
	case string:
		return t
	case float64:
		return fmt.Sprint(t)
	case bool:
		return fmt.Sprint(t)
	}
	return fmt.Sprint(x)
}

func money(f float64) float64 { return math.Round(f*100) / 100 }

// dateOf keeps the date part of a date or datetime.
func dateOf(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 10 {
		if _, err := time.Parse(time.DateOnly, s[:10]); err == nil {
			return s[:10]
		}
	}
	return ""
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}
