package mapping

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
)

// FromReferral reads a referral's mapped values.
func (m Mapping) FromReferral(r partnercenter.Referral) Values {
	return m.fromReferral(r, func(path string) any { return valueAt(&r, path) })
}

// fromReferral reads a referral's mapped values, each field's property path read by at (from the typed
// referral in FromReferral; from its JSON document in the test that holds the two equal).
func (m Mapping) fromReferral(r partnercenter.Referral, at func(path string) any) Values {
	v := make(Values, len(m.Fields)) // sized once: growing it field by field allocates it twice over
	for _, f := range m.Fields {
		if f.PC == "" {
			continue
		}
		var x any
		if f.Kind == KindStatus {
			x = m.referralStatus(r.Status, r.Substatus)
		} else {
			x = f.fromPC(at(f.PC))
		}
		if !IsBlank(x) {
			v[f.Name] = x
		}
	}
	return v
}

// FromOpportunity reads an Opportunity's mapped values.
func (m Mapping) FromOpportunity(o contracts.Opportunity) Values {
	v := make(Values, len(m.Fields))
	for _, f := range m.Fields {
		if f.SF == "" {
			continue
		}
		var x any
		switch f.Kind {
		case KindStatus:
			x = m.stageStatus(str(o.Fields[f.SF]), o.Fields[sf.FieldIsWon], o.Fields[sf.FieldIsClosed])
		case KindSolutions:
			list := make([]any, 0, len(o.Solutions))
			for _, s := range o.Solutions {
				list = append(list, map[string]any{"id": s.SolutionID, "name": s.Name})
			}
			x = solutions(list)
		case KindContacts:
			list := make([]any, 0, len(o.Contacts))
			for _, c := range o.Contacts {
				list = append(list, map[string]any{"email": c.Email, "firstName": c.FirstName, "lastName": c.LastName, "phone": c.Phone})
			}
			x = team(list)
		case KindTeam:
			list := make([]any, 0, len(o.TeamMembers))
			for _, t := range o.TeamMembers {
				list = append(list, map[string]any{"email": t.Email, "firstName": t.FirstName, "lastName": t.LastName, "phone": t.Phone})
			}
			x = team(list)
		default:
			raw := o.Fields[f.SF]
			if f.SF == sf.FieldName {
				raw = UnmarkName(str(raw)) // the sync mark cosell appends is not part of the deal's name
			}
			x = f.fromSF(raw)
		}
		if !IsBlank(x) {
			v[f.Name] = x
		}
	}
	return v
}

// The sync marks the Opportunity Name ends with while NameMark is on: " ✔" in step, " ✖" failed.
const (
	MarkInStep = "✔"
	MarkFailed = "✖"
)

// NameRule is the rule that maps the Opportunity Name, if the mapping has one.
func (m Mapping) NameRule() (FieldRule, bool) {
	for _, r := range m.Fields {
		if r.SF == sf.FieldName {
			return r, true
		}
	}
	return FieldRule{}, false
}

// MarkedName is the Name to write for a deal name and a sync status: the name with " ✔" when the status
// is in step, " ✖" when it is a failure, and no mark while a change is held (⏸); the name is cut so the
// mark fits the field. Without NameMark it is the name as it is.
func (m Mapping) MarkedName(name, status string) string {
	name = UnmarkName(name)
	if !m.NameMark || name == "" {
		return name
	}
	mark := ""
	switch {
	case strings.HasPrefix(status, MarkInStep):
		mark = " " + MarkInStep
	case strings.HasPrefix(status, MarkFailed):
		mark = " " + MarkFailed
	}
	if r, ok := m.NameRule(); ok && r.MaxLength > 0 {
		name = strings.TrimSpace(truncate(name, r.MaxLength-len([]rune(mark))))
	}
	return name + mark
}

// UnmarkName removes the sync mark cosell appended to an Opportunity Name.
func UnmarkName(s string) string {
	for _, mark := range []string{MarkInStep, MarkFailed} {
		if t, ok := strings.CutSuffix(strings.TrimSpace(s), " "+mark); ok {
			return strings.TrimSpace(t)
		}
	}
	return s
}

// fromPC reads a raw referral value into its canonical form.
func (f FieldRule) fromPC(raw any) any {
	switch f.Kind {
	case KindSolutions:
		list, _ := raw.([]any)
		return solutions(list)
	case KindTeam, KindContacts:
		list, _ := raw.([]any)
		out := make([]any, 0, len(list))
		for _, x := range list {
			if mm, ok := x.(map[string]any); ok {
				out = append(out, map[string]any{"email": mm["email"], "firstName": mm["firstName"], "lastName": mm["lastName"], "phone": mm["phoneNumber"]})
			}
		}
		return team(out)
	}
	if len(f.Values) > 0 && f.Kind != KindMoney && f.Kind != KindBool {
		s := strings.TrimSpace(str(raw))
		for _, p := range f.Values {
			if strings.EqualFold(p.PC, s) {
				if p.SF == "" {
					return nil
				}
				return f.normalize(p.PC)
			}
		}
		if f.Kind == KindEnum {
			return nil
		}
	}
	return f.normalize(raw)
}

// fromSF reads a raw Opportunity field value into its canonical form (the Partner Center vocabulary for
// values with a table).
func (f FieldRule) fromSF(raw any) any {
	if len(f.Values) > 0 && f.Kind != KindMoney && f.Kind != KindBool {
		s := strings.TrimSpace(str(raw))
		if s == "" {
			return nil
		}
		for _, p := range f.Values {
			if p.SF != "" && strings.EqualFold(p.SF, s) {
				return f.normalize(p.PC)
			}
		}
		if f.Kind == KindEnum {
			return nil
		}
	}
	return f.normalize(raw)
}

// normalize applies the kind's transform; an unusable value reads as nil.
func (f FieldRule) normalize(raw any) any {
	switch f.Kind {
	case KindMoney:
		if n, ok := num(raw); ok && !math.IsNaN(n) && !math.IsInf(n, 0) {
			return money(n)
		}
		return nil
	case KindDate:
		if d := dateOf(str(raw)); d != "" {
			return d
		}
		return nil
	case KindCurrency:
		return code(str(raw), 3)
	case KindCountry:
		return code(str(raw), 2)
	case KindBool:
		// Only true is a value: an unticked checkbox and a flag Partner Center leaves out read the same.
		if b, ok := raw.(bool); ok && b {
			return true
		}
		return nil
	}
	s := strings.TrimSpace(str(raw))
	if f.MaxLength > 0 {
		s = strings.TrimSpace(truncate(s, f.MaxLength))
	}
	if s == "" {
		return nil
	}
	return s
}

// code keeps an upper-case ISO code of n letters, or nil.
func code(s string, n int) any {
	s = strings.ToUpper(strings.TrimSpace(s))
	if len(s) != n {
		return nil
	}
	for _, c := range s {
		if c < 'A' || c > 'Z' {
			return nil
		}
	}
	return s
}

// solutions is the canonical solution list: {id, name} maps sorted by id, without blanks and repeats.
func solutions(list []any) any {
	seen := map[string]bool{}
	var out []any
	for _, x := range list {
		mm, ok := x.(map[string]any)
		if !ok {
			continue
		}
		id := strings.TrimSpace(str(mm["id"]))
		if id == "" || seen[strings.ToLower(id)] {
			continue
		}
		seen[strings.ToLower(id)] = true
		item := map[string]any{"id": id}
		if n := strings.TrimSpace(str(mm["name"])); n != "" {
			item["name"] = n
		}
		out = append(out, item)
	}
	if len(out) == 0 {
		return nil
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.ToLower(out[i].(map[string]any)["id"].(string)) < strings.ToLower(out[j].(map[string]any)["id"].(string))
	})
	return out
}

// team is the canonical team list: {email, firstName, lastName, phone} maps (blanks left out) sorted by
// e-mail, without members who have no e-mail and without repeats.
func team(list []any) any {
	seen := map[string]bool{}
	var out []any
	for _, x := range list {
		mm, ok := x.(map[string]any)
		if !ok {
			continue
		}
		email := strings.ToLower(strings.TrimSpace(str(mm["email"])))
		if email == "" || seen[email] {
			continue
		}
		seen[email] = true
		item := map[string]any{"email": email}
		for _, k := range []string{"firstName", "lastName", "phone"} {
			if s := strings.TrimSpace(str(mm[k])); s != "" {
				item[k] = s
			}
		}
		out = append(out, item)
	}
	if len(out) == 0 {
		return nil
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].(map[string]any)["email"].(string) < out[j].(map[string]any)["email"].(string)
	})
	return out
}

// toPC turns a canonical value into the referral's JSON value at the rule's path.
func (f FieldRule) toPC(v any) any {
	switch f.Kind {
	case KindMoney, KindBool:
		return v
	case KindDate:
		if s := str(v); s != "" {
			return s + "T00:00:00Z"
		}
		return nil
	case KindSolutions:
		list, _ := v.([]any)
		out := make([]partnercenter.Solution, 0, len(list))
		for _, x := range list {
			mm, _ := x.(map[string]any)
			out = append(out, partnercenter.Solution{ID: str(mm["id"]), Name: str(mm["name"])})
		}
		return out
	case KindTeam, KindContacts:
		list, _ := v.([]any)
		out := make([]partnercenter.Member, 0, len(list))
		for _, x := range list {
			mm, _ := x.(map[string]any)
			out = append(out, partnercenter.Member{Email: str(mm["email"]), FirstName: str(mm["firstName"]),
				LastName: str(mm["lastName"]), PhoneNumber: str(mm["phone"])})
		}
		return out
	}
	s := str(v)
	if s == "" {
		for _, p := range f.Values {
			if p.SF == "" {
				return p.PC
			}
		}
		return ""
	}
	return s
}

// toSF turns a canonical value into the Opportunity field's value.
func (f FieldRule) toSF(v any) any {
	switch f.Kind {
	case KindMoney, KindBool:
		return v
	}
	s := str(v)
	for _, p := range f.Values {
		if s != "" && strings.EqualFold(p.PC, s) {
			return p.SF
		}
	}
	return s
}

func (m Mapping) stageStatus(stage string, isWon, isClosed any) string {
	switch {
	case stage == "":
		return ""
	case stage == m.Stages.Hold:
		return StatusNew
	case stage == m.Stages.Won || isWon == true:
		return StatusWon
	case m.Stages.Decline != "" && stage == m.Stages.Decline:
		return StatusDeclined
	case stage == m.Stages.Lost || isClosed == true:
		return StatusLost
	}
	return StatusActive
}

func (m Mapping) referralStatus(status, substatus string) string {
	switch status {
	case partnercenter.StatusNew:
		return StatusNew
	case partnercenter.StatusActive:
		return StatusActive
	case partnercenter.StatusClosed:
		switch substatus {
		case partnercenter.SubstatusWon:
			return StatusWon
		case partnercenter.SubstatusDeclined, partnercenter.SubstatusExpired:
			if m.Stages.Decline != "" {
				return StatusDeclined
			}
		}
		return StatusLost
	}
	return ""
}

// ReferralCreate builds the referral to create from an Opportunity's values.
func (m Mapping) ReferralCreate(oppID string, v Values) partnercenter.Referral {
	doc := map[string]any{}
	for _, f := range m.Fields {
		x, ok := v[f.Name]
		if f.ToPC == Never || f.PC == "" || f.Kind == KindStatus {
			continue
		}
		if !ok {
			if f.Kind == KindEnum {
				// An empty picklist may stand for a Partner Center value (no help → Unknown).
				if pv := f.toPC(nil); pv != "" {
					set(doc, f.PC, pv)
				}
			}
			continue
		}
		set(doc, f.PC, f.toPC(x))
	}
	var r partnercenter.Referral
	b, _ := json.Marshal(doc)
	_ = json.Unmarshal(b, &r) // paths are checked when the mapping is loaded; a value that does not fit stays empty
	r.ExternalReferenceID = oppID
	r.Type = partnercenter.TypeIndependent
	r.Qualification = partnercenter.QualificationDirect
	r.Status, r.Substatus = partnercenter.StatusNew, partnercenter.SubstatusPending
	if r.CustomerProfile == nil {
		r.CustomerProfile = &partnercenter.CustomerProfile{}
	}
	if a := r.CustomerProfile.Address; a != nil && a.Country == "" {
		// Partner Center needs a country with any address.
		r.CustomerProfile.Address = nil
	}
	visible := r.Consent != nil && r.Consent.ConsentToShareReferralWithMicrosoftSellers != nil && *r.Consent.ConsentToShareReferralWithMicrosoftSellers
	r.Consent = &partnercenter.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true}
	if visible {
		r.Consent.ConsentToShareReferralWithMicrosoftSellers = &visible
	}
	if r.Details == nil {
		r.Details = &partnercenter.Details{}
	}
	if r.Details.Currency == "" {
		r.Details.Currency = m.DefaultCurrency
	}
	return r
}

// ReferralPatch turns changed values into JSON Patch operations. from is the referral's current canonical
// status, needed to pick Declined (never accepted) or Lost (accepted) when the deal is lost.
func (m Mapping) ReferralPatch(changed Values, from string) []partnercenter.PatchOp {
	var ops []partnercenter.PatchOp
	for _, name := range slices.Sorted(maps.Keys(changed)) {
		f, ok := m.Rule(name)
		if !ok || f.PC == "" || f.ToPC != Always {
			continue
		}
		val := changed[name]
		if f.Kind == KindStatus {
			status, substatus := referralStatusFor(str(val), from)
			if status != "" {
				ops = append(ops, replace("/status", status), replace("/substatus", substatus))
			}
			continue
		}
		if _, patchable := PatchablePaths[f.PC]; !patchable {
			continue
		}
		if IsBlank(val) && f.Kind != KindText && f.Kind != KindEnum {
			// Partner Center refuses blanks for numbers, dates and codes.
			continue
		}
		pv := f.toPC(val)
		if f.Kind == KindSolutions || f.Kind == KindTeam || f.Kind == KindContacts {
			if IsBlank(val) {
				pv = []any{}
			}
		}
		ops = append(ops, replace("/"+strings.ReplaceAll(f.PC, ".", "/"), pv))
	}
	return ops
}

// OnceTrue are the referral flags Partner Center never turns off again once on: a referral made visible
// to Microsoft sellers stays visible (cosell-connector.md).
var OnceTrue = map[string]struct{}{"consent.consentToShareReferralWithMicrosoftSellers": {}}

// PatchablePaths are the referral paths Partner Center's PATCH accepts (the connector's API definition).
var PatchablePaths = map[string]struct{}{
	"campaignId": {}, "consent.consentToShareReferralWithMicrosoftSellers": {}, "customerProfile.team": {},
	"details.closingDateTime": {}, "details.currency": {}, "details.dealValue": {}, "details.notes": {},
	"details.requirements.solutions": {}, "externalReferenceId": {}, "referralProgram": {}, "salesStage": {},
	"status": {}, "substatus": {}, "statusReason": {}, "team": {},
}

func referralStatusFor(status, from string) (string, string) {
	switch status {
	case StatusActive:
		return partnercenter.StatusActive, partnercenter.SubstatusAccepted
	case StatusWon:
		return partnercenter.StatusClosed, partnercenter.SubstatusWon
	case StatusDeclined:
		return partnercenter.StatusClosed, partnercenter.SubstatusDeclined
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

// OpportunityFields turns values into Opportunity API fields (Account fields and child records are
// written through Account and OpportunitySolutions). create adds the fields Salesforce requires.
func (m Mapping) OpportunityFields(v Values, create bool, createdAt time.Time) map[string]any {
	f := map[string]any{}
	for name, val := range v {
		r, ok := m.Rule(name)
		if !ok || r.SF == "" || strings.Contains(r.SF, ".") || r.Kind == KindSolutions || r.Kind == KindTeam || r.Kind == KindContacts {
			continue
		}
		if reach := r.ToSF; reach == Never || (reach == OnCreate && !create) {
			continue
		}
		switch r.Kind {
		case KindStatus:
			if st := m.stageFor(str(val)); st != "" {
				f[r.SF] = st
			}
		case KindText, KindEnum:
			f[r.SF] = r.toSF(val)
		default:
			if !IsBlank(val) {
				f[r.SF] = r.toSF(val)
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
		if r, ok := m.ruleByPC("details.currency"); ok && r.SF != "" && !strings.Contains(r.SF, ".") {
			if _, ok := f[r.SF]; !ok {
				f[r.SF] = m.DefaultCurrency
			}
		}
		f[sf.FieldSyncWithPartnerCenter] = true
	}
	return f
}

// OpportunitySolutions returns the Microsoft Solution records the values ask for, and whether the mapping
// writes solutions to Salesforce at all (create: OnCreate or Always; update: Always).
func (m Mapping) OpportunitySolutions(v Values, create bool) ([]contracts.Solution, bool) {
	r, ok := m.RuleByKind(KindSolutions)
	if !ok || r.ToSF == Never || (r.ToSF == OnCreate && !create) {
		return nil, false
	}
	x, has := v[r.Name]
	if !has {
		// Absent from a change set: solutions did not change; absent on create: nothing to add.
		return nil, false
	}
	list, _ := x.([]any)
	out := make([]contracts.Solution, 0, len(list))
	for _, it := range list {
		mm, _ := it.(map[string]any)
		out = append(out, contracts.Solution{SolutionID: str(mm["id"]), Name: str(mm["name"])})
	}
	return out, true
}

// OpportunityContacts returns the customer's contacts the values ask the Opportunity's contact roles to be,
// and whether the mapping writes them to Salesforce at all (create: OnCreate or Always; update: Always).
func (m Mapping) OpportunityContacts(v Values, create bool) ([]contracts.ContactRole, bool) {
	r, ok := m.RuleByKind(KindContacts)
	if !ok || r.ToSF == Never || (r.ToSF == OnCreate && !create) {
		return nil, false
	}
	x, has := v[r.Name]
	if !has && !create {
		return nil, false // absent from a change set: the contacts did not change
	}
	list, _ := x.([]any)
	if len(list) == 0 && create {
		return nil, false // nothing to add to a new Opportunity
	}
	out := make([]contracts.ContactRole, 0, len(list))
	for _, it := range list {
		mm, _ := it.(map[string]any)
		out = append(out, contracts.ContactRole{Email: str(mm["email"]), FirstName: str(mm["firstName"]), LastName: str(mm["lastName"]), Phone: str(mm["phone"])})
	}
	return out, true
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
	case StatusDeclined:
		if m.Stages.Decline != "" {
			return m.Stages.Decline
		}
		return m.Stages.Lost
	}
	return ""
}

// Account builds the customer account an Opportunity created from a referral belongs to, from the
// rules whose Salesforce field is an Account field, and the customer's Partner Center ids (by profile
// type) an Account match by external id compares.
func (m Mapping) Account(v Values, ids map[string]string) *contracts.Account {
	a := &contracts.Account{IDs: ids}
	for _, r := range m.Fields {
		field, ok := strings.CutPrefix(r.SF, "Account.")
		if !ok || r.ToSF == Never {
			continue
		}
		s := str(r.toSF(v[r.Name]))
		switch field {
		case sf.AccountName:
			a.Name = s
		case sf.AccountBillingStreet:
			a.Street = s
		case sf.AccountBillingCity:
			a.City = s
		case sf.AccountBillingState:
			a.State = s
		case sf.AccountBillingPostalCode:
			a.PostalCode = s
		default:
			if r.Kind == KindCountry {
				a.Country = s
			}
		}
	}
	if a.Name == "" {
		return nil
	}
	return a
}

// set writes a dotted path in a JSON document, making the objects on the way.
func set(doc map[string]any, path string, v any) {
	segs := strings.Split(path, ".")
	cur := doc
	for _, seg := range segs[:len(segs)-1] {
		next, ok := cur[seg].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[seg] = next
		}
		cur = next
	}
	cur[segs[len(segs)-1]] = v
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
