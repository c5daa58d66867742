// Package observed builds the observed snapshots of both sides and publishes them with their event ids,
// in one place: pc-ingest (webhook fetches and the reconcile poll), sf-ingest (its poll) and
// `cosell drift --fix` read a record the same way and publish the same event for the same version, so the
// server drops a repeat whoever sends it, and a snapshot published to heal drift is as complete as the
// ingest stage's (every field the mapping names, the team, the solutions, the notes).
package observed

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/sforg"
)

// Publisher is what publishing a snapshot needs of the bus: *platform.Bus. Publish reports a duplicate
// when the stream already holds an event with the same id.
type Publisher interface {
	Publish(ctx context.Context, subject string, e platform.Event) (duplicate bool, err error)
}

// PublishReferral publishes a referral snapshot (ReferralObserved, id contracts.ReferralObservedID) from
// source, the stage or tool, read via via ("webhook", "poll", "drift", ...). It reports whether the
// stream had not seen this version before.
func PublishReferral(ctx context.Context, p Publisher, source string, r pc.Referral, via string) (bool, error) {
	v := contracts.ReferralVersion(r)
	id := contracts.ReferralObservedID(r.ID, v)
	return publish(ctx, p, id, contracts.TypeReferralObserved, source, r.ID, contracts.Subject(contracts.SubjectReferralObserved, r.ID),
		contracts.ReferralObserved{Referral: r, Version: v, ObservedAt: time.Now().UTC(), Via: via})
}

// PublishOpportunity publishes an Opportunity snapshot read by Opportunity (OpportunityObserved, id
// contracts.OpportunityObservedID). It reports whether the stream had not seen this version before.
func PublishOpportunity(ctx context.Context, p Publisher, source string, o contracts.Opportunity, v contracts.Version, via string) (bool, error) {
	id := contracts.OpportunityObservedID(o.ID, v)
	return publish(ctx, p, id, contracts.TypeOpportunityObserved, source, o.ID, contracts.Subject(contracts.SubjectOpportunityObserved, o.ID),
		contracts.OpportunityObserved{Opportunity: o, Version: v, ObservedAt: time.Now().UTC(), Via: via})
}

func publish(ctx context.Context, p Publisher, id, typ, source, entity, subject string, data any) (bool, error) {
	e, err := platform.NewEvent(id, typ, source, entity, data)
	if err != nil {
		return false, err
	}
	dup, err := p.Publish(ctx, subject, e)
	if err != nil {
		return false, fmt.Errorf("publish %s: %w", id, err)
	}
	return !dup, nil
}

// OpportunityFields are the Opportunity fields (and parent Account fields) every snapshot reads, whatever
// the mapping: the ones the decisions need besides the mapped values (ids, the sync flag, stamps).
var OpportunityFields = []string{
	sf.FieldID, sf.FieldName, sf.FieldAmount, sf.FieldCurrencyIsoCode, sf.FieldCloseDate, sf.FieldStageName,
	sf.FieldIsWon, sf.FieldIsClosed, sf.FieldDescription, sf.FieldSyncWithPartnerCenter,
	sf.FieldReferralIdentifier, sf.FieldReferralLink, sf.FieldHowCanMicrosoftHelp, sf.FieldSystemModstamp,
	sf.FieldIsDeleted, sf.FieldAccountID,
	"Account.Name", "Account.BillingStreet", "Account.BillingCity", "Account.BillingState",
	"Account.BillingPostalCode", "Account.BillingCountry", "Account.Website",
}

// Child relationships of Opportunity read into every snapshot.
const (
	RelTeamMembers = "OpportunityTeamMembers"
	// RelContactRoles are the Opportunity's contact roles: the customer's contacts.
	RelContactRoles = "OpportunityContactRoles"
	RelSolutions    = "Microsoft_Solutions__r"
	RelNotes        = "Notes"
	// NotesField is the Fields key holding the Opportunity's notes: a list of {"id","title","body"}.
	NotesField = "Notes"
)

var subqueries = []string{
	"(SELECT Id, UserId, TeamMemberRole, SystemModstamp, User.FirstName, User.LastName, User.Email, User.Phone FROM " + RelTeamMembers + " ORDER BY Id)",
	"(SELECT Id, ContactId, Role, IsPrimary, SystemModstamp, Contact.FirstName, Contact.LastName, Contact.Email, Contact.Phone FROM " + RelContactRoles + " ORDER BY Id)",
	"(SELECT Id, Name, Solution_Id__c, SystemModstamp FROM " + RelSolutions + " ORDER BY Id)",
	"(SELECT Id, Title, Body, SystemModstamp FROM " + RelNotes + " ORDER BY Id)",
}

// Synced is the SOQL condition of the Opportunities cosell syncs: shared with Partner Center, or already
// linked to a referral.
const Synced = "(" + sf.FieldSyncWithPartnerCenter + " = true OR " + sf.FieldReferralIdentifier + " != null)"

// Wanted lists OpportunityFields, then extra (the fields a mapping names: mapping.Mapping.SalesforceFields),
// each once (Salesforce field names are case-insensitive).
func Wanted(extra []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range append(append([]string{}, OpportunityFields...), extra...) {
		if k := strings.ToLower(f); !seen[k] {
			seen[k] = true
			out = append(out, f)
		}
	}
	return out
}

// OpportunitySelect is the SELECT list of an Opportunity snapshot: Wanted(extra), then the team member,
// Microsoft Solution and note subqueries. Opportunity reads a row selected with it. Against a real org,
// fit the list to it first (Fit).
func OpportunitySelect(extra []string) string { return Selection{Fields: Wanted(extra)}.Select() }

// Selection is an Opportunity snapshot's field list fitted to one org: the fields the org has, and the
// optional ones it lacks with the values standing in for them (CurrencyIsoCode: the org's currency).
type Selection struct {
	Fields   []string
	Fallback map[string]any
}

// Fit selects Wanted(extra) from the org's describe. A field the org lacks is an error naming it and the
// fix (*sforg.MissingFields), unless it is optional.
func Fit(ctx context.Context, org *sforg.Org, extra []string) (Selection, error) {
	fields, fallback, err := org.Select(ctx, sf.ObjectOpportunity, Wanted(extra))
	if err != nil {
		return Selection{}, err
	}
	return Selection{Fields: fields, Fallback: fallback}, nil
}

// Select is the SELECT list: the fields, then the subqueries.
func (s Selection) Select() string {
	return strings.Join(append(append([]string{}, s.Fields...), subqueries...), ", ")
}

// Opportunity reads a row selected with s.Select into a snapshot, as Opportunity does, with the fallbacks
// standing in for the fields the org lacks.
func (s Selection) Opportunity(row map[string]any) (contracts.Opportunity, contracts.Version, error) {
	o, v, err := Opportunity(row)
	if err != nil {
		return o, v, err
	}
	for k, val := range s.Fallback {
		if _, ok := o.Fields[k]; !ok {
			o.Fields[k] = val
		}
	}
	return o, v, nil
}

// Opportunity turns a query row selected with OpportunitySelect into a snapshot; its version is the newest
// SystemModstamp of the Opportunity and its children (OpportunityVersionAt).
func Opportunity(row map[string]any) (contracts.Opportunity, contracts.Version, error) {
	f := sfapi.Flatten(row)
	id, _ := f[sf.FieldID].(string)
	stamp, _ := f[sf.FieldSystemModstamp].(string)
	at, err := sfapi.ParseTime(stamp)
	if id == "" || err != nil {
		return contracts.Opportunity{}, contracts.Version{}, fmt.Errorf("opportunity row without Id or SystemModstamp: %v", row)
	}
	o := contracts.Opportunity{ID: id, Deleted: f[sf.FieldIsDeleted] == true}
	newest := at
	seen := func(r map[string]any) {
		if t, err := sfapi.ParseTime(str(r[sf.FieldSystemModstamp])); err == nil && t.After(newest) {
			newest = t
		}
	}
	for _, r := range childRows(f[RelTeamMembers]) {
		seen(r)
		m := contracts.TeamMember{UserID: str(r["UserId"]), Role: str(r["TeamMemberRole"])}
		if u, ok := r["User"].(map[string]any); ok {
			m.FirstName, m.LastName, m.Email, m.Phone = str(u["FirstName"]), str(u["LastName"]), str(u["Email"]), str(u["Phone"])
		}
		o.TeamMembers = append(o.TeamMembers, m)
	}
	for _, r := range childRows(f[RelContactRoles]) {
		seen(r)
		c := contracts.ContactRole{ContactID: str(r["ContactId"]), Role: str(r["Role"]), Primary: r["IsPrimary"] == true}
		if p, ok := r["Contact"].(map[string]any); ok {
			c.FirstName, c.LastName, c.Email, c.Phone = str(p["FirstName"]), str(p["LastName"]), str(p["Email"]), str(p["Phone"])
		}
		o.Contacts = append(o.Contacts, c)
	}
	for _, r := range childRows(f[RelSolutions]) {
		seen(r)
		o.Solutions = append(o.Solutions, contracts.Solution{ID: str(r["Id"]), SolutionID: str(r["Solution_Id__c"]), Name: str(r["Name"])})
	}
	var notes []any
	for _, r := range childRows(f[RelNotes]) {
		seen(r)
		notes = append(notes, map[string]any{"id": str(r["Id"]), "title": str(r["Title"]), "body": str(r["Body"])})
	}
	for _, k := range []string{sf.FieldSystemModstamp, sf.FieldIsDeleted, RelTeamMembers, RelContactRoles, RelSolutions, RelNotes} {
		delete(f, k)
	}
	if notes != nil {
		f[NotesField] = notes
	}
	o.Fields = f
	return o, OpportunityVersionAt(newest), nil
}

// Lead turns a Lead query row (the fields mapping.LeadFields) into a snapshot: Object "Lead", the Lead's
// fields, the Opportunity it was converted to; its version is its SystemModstamp.
func Lead(row map[string]any) (contracts.Opportunity, contracts.Version, error) {
	f := sfapi.Flatten(row)
	id, _ := f[sf.FieldID].(string)
	at, err := sfapi.ParseTime(str(f[sf.FieldSystemModstamp]))
	if id == "" || err != nil {
		return contracts.Opportunity{}, contracts.Version{}, fmt.Errorf("lead row without Id or SystemModstamp: %v", row)
	}
	o := contracts.Opportunity{ID: id, Object: sf.ObjectLead, Deleted: f[sf.FieldIsDeleted] == true}
	if f[sf.LeadIsConverted] == true {
		o.ConvertedOpportunityID = str(f[sf.LeadConvertedOpportunityID])
	}
	delete(f, sf.FieldSystemModstamp)
	delete(f, sf.FieldIsDeleted)
	o.Fields = f
	return o, OpportunityVersionAt(at), nil
}

// OpportunityVersionAt is the version of an Opportunity snapshot whose newest change is at t: the tag is
// the stamp as Salesforce writes it.
func OpportunityVersionAt(t time.Time) contracts.Version {
	return contracts.Version{Tag: t.UTC().Format(sfapi.TimeLayout), At: t.UTC()}
}

// childRows reads the records of a nested subquery result (null when there are none).
func childRows(v any) []map[string]any {
	m, _ := v.(map[string]any)
	list, _ := m["records"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, x := range list {
		if r, ok := x.(map[string]any); ok {
			out = append(out, r)
		}
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
