package mapping

import (
	"strings"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
)

// IsLeadReferral reports whether a referral is a lead rather than a co-sell referral: incoming,
// Independent (Microsoft is not part of the deal) and qualified by Microsoft's marketing or direct from a
// customer. With coSellOnly off such a referral comes in as a Salesforce Lead (docs/mapping.md, "Leads");
// co-sell (Shared, SalesQualified) referrals come in as Opportunities either way.
func IsLeadReferral(r partnercenter.Referral) bool {
	return r.Direction == partnercenter.DirectionIncoming && r.Type == partnercenter.TypeIndependent &&
		(r.Qualification == partnercenter.QualificationMarketingQualified || r.Qualification == partnercenter.QualificationDirect)
}

// leadPaths is the Lead field map: the Opportunity-side path a mapping rule names → the Lead field that
// holds it. The customer's first contact is the Lead's person (FirstName, LastName, Email, Phone) and the
// status is the Lead Status (LeadStatusFor). Nothing else is on a Lead: the deal's name, value, close
// date, solutions and the rest wait for the converted Opportunity.
var leadPaths = map[string]string{
	"Account.Name":              sf.LeadCompany,
	"Account.BillingStreet":     sf.LeadStreet,
	"Account.BillingCity":       sf.LeadCity,
	"Account.BillingState":      sf.LeadState,
	"Account.BillingPostalCode": sf.LeadPostalCode,
	"Account.BillingCountry":    sf.LeadCountry,
	sf.FieldDescription:         sf.LeadDescription,
}

// leadKept are the cosell fields a Lead has under the Opportunity's names.
var leadKept = []string{sf.FieldReferralIdentifier, sf.FieldSyncWithPartnerCenter, sf.FieldSyncStatus, sf.FieldAudit}

// LeadFields are the Lead fields a Lead snapshot reads.
var LeadFields = []string{sf.FieldID, sf.LeadFirstName, sf.LeadLastName, sf.LeadCompany, sf.LeadEmail, sf.LeadPhone,
	sf.LeadStatus, sf.LeadDescription, sf.LeadStreet, sf.LeadCity, sf.LeadState, sf.LeadPostalCode, sf.LeadCountry,
	sf.LeadIsConverted, sf.LeadConvertedOpportunityID, sf.FieldReferralIdentifier, sf.FieldSyncWithPartnerCenter,
	sf.FieldSystemModstamp, sf.FieldIsDeleted}

// LeadCarries reports whether a mapped field (canonical name) is carried by a Lead: a field that is not
// keeps its agreed value while the link's Salesforce side is a Lead.
func (m Mapping) LeadCarries(name string) bool {
	r, ok := m.Rule(name)
	if !ok {
		return false
	}
	_, onLead := leadPaths[r.SF]
	return onLead || r.Kind == KindContacts || r.Kind == KindStatus
}

// LeadStatusFor is the Lead Status of a canonical status: new ↔ Open - Not Contacted, active ↔ Working -
// Contacted, lost and declined (Partner Center's Declined, Expired, Lost) ↔ Closed - Not Converted; won
// has none ("" leaves Status as it is: a Lead is won once converted, on its Opportunity).
func LeadStatusFor(status string) string {
	switch status {
	case StatusNew:
		return sf.LeadStatusOpen
	case StatusActive:
		return sf.LeadStatusWorking
	case StatusLost, StatusDeclined:
		return sf.LeadStatusClosed
	}
	return ""
}

// leadStage is the stage a Lead Status reads as, so a Lead's status is decided by the stage rules as an
// Opportunity's is.
func (m Mapping) leadStage(status string) (stage string, closed bool) {
	switch status {
	case sf.LeadStatusOpen:
		return m.Stages.Hold, false
	case sf.LeadStatusClosed:
		return m.Stages.Lost, true
	case "":
		return "", false
	}
	return m.Stages.Active, false // Working - Contacted, a converted Lead, a status of the org's own
}

// LeadAsOpportunity reads a Lead snapshot (Object "Lead", the Lead's fields) as the Opportunity-shaped
// snapshot the rules read: Company and the address as the Account's, Description, the Lead Status as the
// stage it stands for, the Lead's person as the one customer contact.
func (m Mapping) LeadAsOpportunity(o contracts.Opportunity) contracts.Opportunity {
	out := contracts.Opportunity{ID: o.ID, Deleted: o.Deleted, Object: o.Object, ConvertedOpportunityID: o.ConvertedOpportunityID,
		Fields: map[string]any{}}
	for path, lf := range leadPaths {
		if v, ok := o.Fields[lf]; ok {
			out.Fields[path] = v
		}
	}
	for _, k := range append([]string{sf.FieldID}, leadKept...) {
		if v, ok := o.Fields[k]; ok {
			out.Fields[k] = v
		}
	}
	if r, ok := m.RuleByKind(KindStatus); ok {
		stage, closed := m.leadStage(str(o.Fields[sf.LeadStatus]))
		out.Fields[r.SF] = stage
		out.Fields[sf.FieldIsClosed] = closed
		out.Fields[sf.FieldIsWon] = false
	}
	c := contracts.ContactRole{FirstName: str(o.Fields[sf.LeadFirstName]), LastName: str(o.Fields[sf.LeadLastName]),
		Email: str(o.Fields[sf.LeadEmail]), Phone: str(o.Fields[sf.LeadPhone]), Primary: true}
	if c.LastName != "" && c.LastName != leadNoName || c.Email != "" {
		if c.LastName == leadNoName {
			c.LastName = ""
		}
		out.Contacts = []contracts.ContactRole{c}
	}
	return out
}

// leadNoName is the LastName (required on a Lead) of a lead referral that names no customer contact.
const leadNoName = "(no contact)"

// LeadCommand turns an Opportunity command of a link whose Salesforce side is a Lead into the Lead's:
// Object "Lead", Fields the Lead fields (the Account as Company and address, the first contact as the
// Lead's person, the stage as Lead Status, the cosell fields as they are; the rest dropped), no Account,
// solutions or contact roles.
func (m Mapping) LeadCommand(cmd contracts.OpportunityCommand) contracts.OpportunityCommand {
	fields := map[string]any{}
	statusSF := ""
	if r, ok := m.RuleByKind(KindStatus); ok {
		statusSF = r.SF
	}
	for k, v := range cmd.Fields {
		switch {
		case statusSF != "" && strings.EqualFold(k, statusSF):
			if s := LeadStatusFor(m.stageStatus(str(v), nil, nil)); s != "" {
				fields[sf.LeadStatus] = s
			}
		case leadPaths[k] != "":
			fields[leadPaths[k]] = v
		default:
			for _, kept := range leadKept {
				if strings.EqualFold(k, kept) {
					fields[kept] = v
				}
			}
		}
	}
	if a := cmd.Account; a != nil {
		for lf, v := range map[string]string{sf.LeadCompany: a.Name, sf.LeadStreet: a.Street, sf.LeadCity: a.City,
			sf.LeadState: a.State, sf.LeadPostalCode: a.PostalCode, sf.LeadCountry: a.Country} {
			if v != "" {
				fields[lf] = v
			}
		}
	}
	if cmd.SetContacts || cmd.Op == contracts.OpCreate {
		var c contracts.ContactRole
		if len(cmd.Contacts) > 0 {
			c = cmd.Contacts[0]
		}
		last := c.LastName
		if last == "" {
			last = leadNoName
		}
		fields[sf.LeadFirstName], fields[sf.LeadLastName] = nilIfEmpty(c.FirstName), last
		fields[sf.LeadEmail], fields[sf.LeadPhone] = nilIfEmpty(c.Email), nilIfEmpty(c.Phone)
	}
	if cmd.Op == contracts.OpCreate {
		fields[sf.LeadSource] = sf.LeadSourcePartnerCenter
		if fields[sf.LeadCompany] == nil {
			fields[sf.LeadCompany] = leadNoName
		}
	}
	cmd.Object, cmd.Fields = sf.ObjectLead, fields
	cmd.Account, cmd.Solutions, cmd.SetSolutions, cmd.Contacts, cmd.SetContacts = nil, nil, false, nil, false
	return cmd
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
