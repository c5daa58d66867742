package sfemu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cosell-dev/cosell/deploy/salesforce"
)

// Field types, as describe names them.
const (
	typeID        = "id"
	typeString    = "string"
	typeTextArea  = "textarea"
	typeBoolean   = "boolean"
	typeCurrency  = "currency"
	typeDouble    = "double"
	typePercent   = "percent"
	typeInt       = "int"
	typeDate      = "date"
	typeDateTime  = "datetime"
	typePicklist  = "picklist"
	typeReference = "reference"
	typeURL       = "url"
	typeEmail     = "email"
	typePhone     = "phone"
)

// anyObject as a field's reference target makes it polymorphic (Note.ParentId).
const anyObject = "*"

type field struct {
	Name        string
	Label       string
	Type        string
	Length      int
	Required    bool // must hold a value after create and update
	ExternalID  bool
	Unique      bool
	Createable  bool
	Updateable  bool
	Custom      bool
	Default     any
	Picklist    []string
	Restricted  bool
	ReferenceTo string
	// RelationshipName names the parent in SOQL paths (Account for AccountId, Opportunity__r for Opportunity__c).
	RelationshipName string
	// ChildRelationship names the children on the parent (OpportunityTeamMembers); CascadeDelete deletes them
	// with the parent.
	ChildRelationship string
	CascadeDelete     bool
}

func (f *field) isText() bool {
	switch f.Type {
	case typeString, typeTextArea, typePicklist, typeURL, typeEmail, typePhone:
		return true
	}
	return false
}

func (f *field) isNumber() bool {
	switch f.Type {
	case typeCurrency, typeDouble, typePercent, typeInt:
		return true
	}
	return false
}

func (f *field) isID() bool { return f.Type == typeID || f.Type == typeReference }

type childRelationship struct {
	Name          string
	Child         *object
	Field         *field
	CascadeDelete bool
}

type object struct {
	Name      string
	Label     string
	Plural    string
	KeyPrefix string
	Custom    bool
	readOnly  bool // no API client creates or deletes its records (Organization)
	Fields    []*field
	byLower   map[string]*field
	relations map[string]*field // lower-case relationship name -> reference field
	children  []*childRelationship
}

func (o *object) field(name string) *field { return o.byLower[strings.ToLower(name)] }

func (o *object) add(f *field) {
	if o.byLower == nil {
		o.byLower = map[string]*field{}
	}
	if old := o.byLower[strings.ToLower(f.Name)]; old != nil {
		*old = *f
		return
	}
	o.Fields = append(o.Fields, f)
	o.byLower[strings.ToLower(f.Name)] = f
}

// fieldDefault sets the value a new record gets when the write leaves the field out.
func (o *object) fieldDefault(name string, v any) { o.field(name).Default = v }

func (o *object) child(name string) *childRelationship {
	for _, c := range o.children {
		if strings.EqualFold(c.Name, name) {
			return c
		}
	}
	return nil
}

type schema struct {
	objects  map[string]*object // lower-case name
	byPrefix map[string]*object
}

func (s *schema) object(name string) *object { return s.objects[strings.ToLower(name)] }

// Opportunity stages of a new org, with their probability, forecast category and whether they close the
// opportunity (Setup → Opportunity Stages of a new org).
var opportunityStages = []struct {
	Name        string
	Probability float64
	Forecast    string
	Closed, Won bool
}{
	{"Prospecting", 10, "Pipeline", false, false},
	{"Qualification", 10, "Pipeline", false, false},
	{"Needs Analysis", 20, "Pipeline", false, false},
	{"Value Proposition", 50, "Pipeline", false, false},
	{"Id. Decision Makers", 60, "Pipeline", false, false},
	{"Perception Analysis", 70, "Pipeline", false, false},
	{"Proposal/Price Quote", 75, "Pipeline", false, false},
	{"Negotiation/Review", 90, "Pipeline", false, false},
	{"Closed Won", 100, "Closed", true, true},
	{"Closed Lost", 0, "Omitted", true, false},
}

// forecastCategories maps ForecastCategoryName (what a user picks) to the read-only ForecastCategory
// (Object Reference for the Salesforce Platform, "Opportunity").
var forecastCategories = map[string]string{"Omitted": "Omitted", "Pipeline": "Pipeline", "Best Case": "BestCase",
	"Commit": "Forecast", "Closed": "Closed"}

// leadStatuses are a new org's Lead Status values (Setup → Lead Status): the first is the default, "Closed -
// Converted" the one converted Leads get.
var leadStatuses = []string{"Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"}

// leadConvertedStatus is the status convertLead gives a Lead (the org's one converted status).
const leadConvertedStatus = "Closed - Converted"

// Currencies enabled in the emulated multi-currency org; the first is the corporate currency.
var currencies = []string{"USD", "EUR", "GBP", "CAD", "AUD", "JPY", "INR", "CHF", "SEK", "NZD"}

func text(name, label string, length int) *field {
	return &field{Name: name, Label: label, Type: typeString, Length: length, Createable: true, Updateable: true}
}

func typed(name, label, typ string) *field {
	f := &field{Name: name, Label: label, Type: typ, Createable: true, Updateable: true}
	switch typ {
	case typeURL, typePhone, typeEmail, typePicklist:
		f.Length = 255
		if typ == typePhone {
			f.Length = 40
		}
		if typ == typeEmail {
			f.Length = 80
		}
	case typeTextArea:
		f.Length = 32000
	}
	return f
}

func ref(name, label, to, relationship string) *field {
	return &field{Name: name, Label: label, Type: typeReference, Length: 18, ReferenceTo: to,
		RelationshipName: relationship, Createable: true, Updateable: true}
}

func readOnly(f *field) *field {
	f.Createable, f.Updateable = false, false
	return f
}

func required(f *field) *field {
	f.Required = true
	return f
}

func picklist(f *field, restricted bool, values ...string) *field {
	f.Picklist, f.Restricted = values, restricted
	return f
}

// systemFields are on every object and written only by the emulator.
func systemFields(o *object) {
	o.add(readOnly(&field{Name: "Id", Label: o.Label + " ID", Type: typeID, Length: 18}))
	o.add(readOnly(&field{Name: "IsDeleted", Label: "Deleted", Type: typeBoolean, Default: false}))
	o.add(readOnly(ref("CreatedById", "Created By ID", "User", "CreatedBy")))
	o.add(readOnly(&field{Name: "CreatedDate", Label: "Created Date", Type: typeDateTime}))
	o.add(readOnly(ref("LastModifiedById", "Last Modified By ID", "User", "LastModifiedBy")))
	o.add(readOnly(&field{Name: "LastModifiedDate", Label: "Last Modified Date", Type: typeDateTime}))
	o.add(readOnly(&field{Name: "SystemModstamp", Label: "System Modstamp", Type: typeDateTime}))
}

// orgShape is what differs between orgs in the standard schema.
type orgShape struct {
	// singleCurrency drops CurrencyIsoCode from every object: the field exists only once an admin enables
	// multiple currencies (Salesforce Help, "Considerations for Enabling Multiple Currencies").
	singleCurrency bool
	currency       string // the org's (corporate) currency
	sandbox        bool
}

func standardObjects(shape orgShape) []*object {
	stageNames := make([]string, len(opportunityStages))
	for i, s := range opportunityStages {
		stageNames[i] = s.Name
	}

	user := &object{Name: "User", Label: "User", Plural: "Users", KeyPrefix: "005"}
	systemFields(user)
	user.add(text("FirstName", "First Name", 40))
	user.add(required(text("LastName", "Last Name", 80)))
	user.add(readOnly(text("Name", "Full Name", 121)))
	user.add(required(typed("Email", "Email", typeEmail)))
	user.add(typed("Phone", "Phone", typePhone))
	user.add(required(&field{Name: "Username", Label: "Username", Type: typeString, Length: 80, Unique: true,
		Createable: true, Updateable: true}))
	user.add(&field{Name: "IsActive", Label: "Active", Type: typeBoolean, Default: true, Createable: true, Updateable: true})

	account := &object{Name: "Account", Label: "Account", Plural: "Accounts", KeyPrefix: "001"}
	systemFields(account)
	account.add(required(text("Name", "Account Name", 255)))
	account.add(ref("OwnerId", "Owner ID", "User", "Owner"))
	account.add(text("BillingStreet", "Billing Street", 255))
	account.add(text("BillingCity", "Billing City", 40))
	account.add(text("BillingState", "Billing State/Province", 80))
	account.add(text("BillingPostalCode", "Billing Zip/Postal Code", 20))
	account.add(text("BillingCountry", "Billing Country", 80))
	account.add(typed("Website", "Website", typeURL))
	account.add(picklist(typed("Industry", "Industry", typePicklist), false,
		"Agriculture", "Banking", "Communications", "Construction", "Consulting", "Education", "Electronics",
		"Energy", "Finance", "Government", "Healthcare", "Insurance", "Manufacturing", "Media", "Retail",
		"Technology", "Telecommunications", "Transportation", "Utilities", "Other"))
	account.add(typed("NumberOfEmployees", "Employees", typeInt))
	account.add(typed("Phone", "Account Phone", typePhone))
	if !shape.singleCurrency {
		account.add(picklist(typed("CurrencyIsoCode", "Account Currency", typePicklist), true, currencies...))
	}

	opp := &object{Name: "Opportunity", Label: "Opportunity", Plural: "Opportunities", KeyPrefix: "006"}
	systemFields(opp)
	opp.add(required(text("Name", "Name", 120)))
	acc := ref("AccountId", "Account ID", "Account", "Account")
	acc.ChildRelationship = "Opportunities"
	opp.add(acc)
	opp.add(typed("Amount", "Amount", typeCurrency))
	if !shape.singleCurrency {
		opp.add(picklist(typed("CurrencyIsoCode", "Opportunity Currency", typePicklist), true, currencies...))
	}
	opp.add(required(typed("CloseDate", "Close Date", typeDate)))
	opp.add(required(picklist(&field{Name: "StageName", Label: "Stage", Type: typePicklist, Length: 255,
		Createable: true, Updateable: true}, true, stageNames...)))
	opp.add(readOnly(&field{Name: "IsClosed", Label: "Closed", Type: typeBoolean, Default: false}))
	opp.add(readOnly(&field{Name: "IsWon", Label: "Won", Type: typeBoolean, Default: false}))
	opp.add(typed("Probability", "Probability (%)", typePercent))
	opp.add(picklist(typed("Type", "Opportunity Type", typePicklist), false,
		"Existing Customer - Upgrade", "Existing Customer - Replacement", "Existing Customer - Downgrade", "New Customer"))
	opp.add(picklist(typed("LeadSource", "Lead Source", typePicklist), false,
		"Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"))
	opp.add(typed("Description", "Description", typeTextArea))
	opp.add(text("NextStep", "Next Step", 255))
	opp.add(ref("OwnerId", "Owner ID", "User", "Owner"))
	// The rest of the standard fields every org's Opportunity has (Object Reference, "Opportunity"); the
	// derived ones are computed in store.derive.
	opp.add(ref("CampaignId", "Campaign ID", "Campaign", "Campaign"))
	opp.add(ref("ContactId", "Contact ID", "Contact", "Contact"))
	opp.add(ref("ContractId", "Contract ID", "Contract", "Contract"))
	opp.add(ref("Pricebook2Id", "Price Book ID", "Pricebook2", "Pricebook2"))
	opp.add(&field{Name: "IsPrivate", Label: "Private", Type: typeBoolean, Default: false, Createable: true, Updateable: true})
	opp.add(typed("TotalOpportunityQuantity", "Quantity", typeDouble))
	opp.add(picklist(typed("ForecastCategoryName", "Forecast Category", typePicklist), true,
		"Omitted", "Pipeline", "Best Case", "Commit", "Closed"))
	opp.add(readOnly(picklist(typed("ForecastCategory", "Forecast Category", typePicklist), true,
		"Omitted", "Pipeline", "BestCase", "Forecast", "Closed")))
	opp.add(readOnly(typed("ExpectedRevenue", "Expected Amount", typeCurrency)))
	opp.add(readOnly(text("Fiscal", "Fiscal Period", 6)))
	opp.add(readOnly(typed("FiscalQuarter", "Fiscal Quarter", typeInt)))
	opp.add(readOnly(typed("FiscalYear", "Fiscal Year", typeInt)))
	opp.add(readOnly(&field{Name: "HasOpportunityLineItem", Label: "Has Line Item", Type: typeBoolean, Default: false}))
	opp.add(readOnly(&field{Name: "HasOpenActivity", Label: "Has Open Activity", Type: typeBoolean, Default: false}))
	opp.add(readOnly(&field{Name: "HasOverdueTask", Label: "Has Overdue Task", Type: typeBoolean, Default: false}))
	opp.add(readOnly(typed("LastActivityDate", "Last Activity", typeDate)))
	opp.add(readOnly(typed("LastStageChangeDate", "Last Stage Change Date", typeDateTime)))
	opp.add(readOnly(typed("LastViewedDate", "Last Viewed Date", typeDateTime)))
	opp.add(readOnly(typed("LastReferencedDate", "Last Referenced Date", typeDateTime)))
	opp.add(readOnly(typed("PushCount", "Push Count", typeInt)))

	member := &object{Name: "OpportunityTeamMember", Label: "Opportunity Team Member",
		Plural: "Opportunity Team Members", KeyPrefix: "00q"}
	systemFields(member)
	oppID := required(ref("OpportunityId", "Opportunity ID", "Opportunity", "Opportunity"))
	oppID.Updateable, oppID.ChildRelationship, oppID.CascadeDelete = false, "OpportunityTeamMembers", true
	member.add(oppID)
	userID := required(ref("UserId", "User ID", "User", "User"))
	userID.Updateable = false
	member.add(userID)
	member.add(picklist(typed("TeamMemberRole", "Team Role", typePicklist), false,
		"Account Manager", "Channel Manager", "Executive Sponsor", "Lead Qualifier", "Pre-Sales Consultant",
		"Sales Manager", "Sales Rep", "Technical Sales", "Other"))
	access := picklist(typed("OpportunityAccessLevel", "Opportunity Access", typePicklist), true, "Read", "Edit")
	access.Default = "Read"
	member.add(access)

	note := &object{Name: "Note", Label: "Note", Plural: "Notes", KeyPrefix: "002"}
	systemFields(note)
	parent := required(ref("ParentId", "Parent ID", anyObject, "Parent"))
	parent.Updateable, parent.ChildRelationship, parent.CascadeDelete = false, "Notes", true
	note.add(parent)
	note.add(required(text("Title", "Title", 255)))
	note.add(typed("Body", "Body", typeTextArea))
	note.add(&field{Name: "IsPrivate", Label: "Private", Type: typeBoolean, Default: false, Createable: true, Updateable: true})
	note.add(ref("OwnerId", "Owner ID", "User", "Owner"))

	// Parents of Opportunity's standard lookups, with the fields an integration meets.
	contact := &object{Name: "Contact", Label: "Contact", Plural: "Contacts", KeyPrefix: "003"}
	systemFields(contact)
	contact.add(ref("AccountId", "Account ID", "Account", "Account"))
	contact.add(text("FirstName", "First Name", 40))
	contact.add(required(text("LastName", "Last Name", 80)))
	contact.add(readOnly(text("Name", "Full Name", 121)))
	contact.add(typed("Email", "Email", typeEmail))
	contact.add(typed("Phone", "Business Phone", typePhone))
	contact.add(ref("OwnerId", "Owner ID", "User", "Owner"))

	// OpportunityContactRole: a Contact's role on an Opportunity (Object Reference, "OpportunityContactRole":
	// OpportunityId is set on create only; ContactId is required and may be changed; both parents' deletes
	// delete the role). The Opportunity's customer contacts.
	contactRole := &object{Name: "OpportunityContactRole", Label: "Opportunity Contact Role",
		Plural: "Opportunity Contact Roles", KeyPrefix: "00K"}
	systemFields(contactRole)
	roleOpp := required(ref("OpportunityId", "Opportunity ID", "Opportunity", "Opportunity"))
	roleOpp.Updateable, roleOpp.ChildRelationship, roleOpp.CascadeDelete = false, "OpportunityContactRoles", true
	contactRole.add(roleOpp)
	roleContact := required(ref("ContactId", "Contact ID", "Contact", "Contact"))
	roleContact.ChildRelationship, roleContact.CascadeDelete = "OpportunityContactRoles", true
	contactRole.add(roleContact)
	contactRole.add(picklist(typed("Role", "Role", typePicklist), false,
		"Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker", "Evaluator",
		"Executive Sponsor", "Influencer", "Technical Buyer", "Other"))
	contactRole.add(&field{Name: "IsPrimary", Label: "Primary", Type: typeBoolean, Default: false, Createable: true, Updateable: true})

	// Lead: the standard object as every org has it (Object Reference for the Salesforce Platform, "Lead":
	// LastName and Company required, Status a picklist defaulting to the org's default status, the Converted*
	// fields read-only: an API client cannot convert a Lead through REST; Apex Database.convertLead and the
	// UI do it, which the emulator offers as POST /_emulator/leads/{id}/convert, see convertLead).
	lead := &object{Name: "Lead", Label: "Lead", Plural: "Leads", KeyPrefix: "00Q"}
	systemFields(lead)
	lead.add(text("FirstName", "First Name", 40))
	lead.add(required(text("LastName", "Last Name", 80)))
	lead.add(readOnly(text("Name", "Full Name", 121)))
	lead.add(required(text("Company", "Company", 255)))
	lead.add(text("Title", "Title", 128))
	lead.add(typed("Email", "Email", typeEmail))
	lead.add(typed("Phone", "Phone", typePhone))
	status := required(picklist(typed("Status", "Lead Status", typePicklist), true, leadStatuses...))
	status.Default = leadStatuses[0]
	lead.add(status)
	lead.add(picklist(typed("LeadSource", "Lead Source", typePicklist), false,
		"Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"))
	lead.add(typed("Description", "Description", typeTextArea))
	lead.add(text("Street", "Street", 255))
	lead.add(text("City", "City", 40))
	lead.add(text("State", "State/Province", 80))
	lead.add(text("PostalCode", "Zip/Postal Code", 20))
	lead.add(text("Country", "Country", 80))
	lead.add(ref("OwnerId", "Owner ID", "User", "Owner"))
	lead.add(readOnly(&field{Name: "IsConverted", Label: "Converted", Type: typeBoolean, Default: false}))
	lead.add(readOnly(ref("ConvertedAccountId", "Converted Account ID", "Account", "ConvertedAccount")))
	lead.add(readOnly(ref("ConvertedContactId", "Converted Contact ID", "Contact", "ConvertedContact")))
	lead.add(readOnly(ref("ConvertedOpportunityId", "Converted Opportunity ID", "Opportunity", "ConvertedOpportunity")))
	lead.add(readOnly(typed("ConvertedDate", "Converted Date", typeDate)))
	campaign := &object{Name: "Campaign", Label: "Campaign", Plural: "Campaigns", KeyPrefix: "701"}
	systemFields(campaign)
	campaign.add(required(text("Name", "Name", 80)))
	campaign.add(&field{Name: "IsActive", Label: "Active", Type: typeBoolean, Default: false, Createable: true, Updateable: true})
	campaign.add(ref("OwnerId", "Owner ID", "User", "Owner"))
	contract := &object{Name: "Contract", Label: "Contract", Plural: "Contracts", KeyPrefix: "800"}
	systemFields(contract)
	contract.add(required(ref("AccountId", "Account ID", "Account", "Account")))
	contract.add(required(picklist(typed("Status", "Status", typePicklist), true, "Draft", "In Approval Process", "Activated")))
	contract.fieldDefault("Status", "Draft")
	contract.add(typed("StartDate", "Contract Start Date", typeDate))
	contract.add(ref("OwnerId", "Owner ID", "User", "Owner"))
	pricebook := &object{Name: "Pricebook2", Label: "Price Book", Plural: "Price Books", KeyPrefix: "01s"}
	systemFields(pricebook)
	pricebook.add(required(text("Name", "Price Book Name", 255)))
	pricebook.add(&field{Name: "IsActive", Label: "Active", Type: typeBoolean, Default: false, Createable: true, Updateable: true})
	pricebook.add(readOnly(&field{Name: "IsStandard", Label: "Is Standard Price Book", Type: typeBoolean, Default: false}))

	// Organization holds the org's settings; one read-only row. DefaultCurrencyIsoCode is the corporate
	// currency, which in a single-currency org is every amount's currency (Object Reference, "Organization").
	org := &object{Name: "Organization", Label: "Organization", Plural: "Organizations", KeyPrefix: "00D", readOnly: true}
	systemFields(org)
	org.add(readOnly(text("Name", "Name", 80)))
	org.add(readOnly(picklist(typed("DefaultCurrencyIsoCode", "Currency", typePicklist), true, currencies...)))
	org.add(readOnly(picklist(typed("DefaultLocaleSidKey", "Locale", typePicklist), false, "en_US")))
	org.add(readOnly(&field{Name: "IsSandbox", Label: "Is Sandbox", Type: typeBoolean, Default: shape.sandbox}))
	org.add(readOnly(text("OrganizationType", "Edition", 40)))

	return []*object{user, account, opp, member, note, contact, contactRole, lead, campaign, contract, pricebook, org}
}

// fieldFrom is a project field as the emulator holds it; a metadata type the emulator does not model is
// refused, so the emulator never serves a field it cannot enforce.
func fieldFrom(x salesforce.Field) (*field, error) {
	if x.Type == "" {
		return nil, fmt.Errorf("field %s: type %q is not supported by the emulator", x.Name, x.MetadataType)
	}
	if x.Type == typeString && x.Length == 0 {
		return nil, fmt.Errorf("field %s: Text without a length", x.Name)
	}
	return &field{Name: x.Name, Label: x.Label, Type: x.Type, Length: x.Length, Required: x.Required, ExternalID: x.ExternalID,
		Unique: x.Unique, Createable: x.Createable, Updateable: x.Updateable, Custom: x.Custom, Default: x.Default,
		Picklist: x.Picklist, Restricted: x.Restricted, ReferenceTo: x.ReferenceTo, RelationshipName: x.RelationshipName,
		ChildRelationship: x.ChildRelationship, CascadeDelete: x.CascadeDelete}, nil
}

// loadSchema builds the standard objects and adds the custom objects and fields of the SFDX project in
// fsys, read by deploy/salesforce's ReadProject (the reader `cosell mapping validate` uses too). A
// standard field's file customises its picklist values only, as in Salesforce.
func loadSchema(fsys fs.FS, shape orgShape) (*schema, error) {
	s := &schema{objects: map[string]*object{}, byPrefix: map[string]*object{}}
	for _, o := range standardObjects(shape) {
		s.objects[strings.ToLower(o.Name)] = o
	}
	project, err := salesforce.ReadProject(fsys)
	if err != nil {
		return nil, err
	}
	customPrefix := 0
	for _, po := range project {
		o := s.object(po.Name)
		if o == nil {
			if !po.Custom {
				return nil, fmt.Errorf("metadata object %s: not a standard object the emulator knows", po.Name)
			}
			// Custom objects get key prefixes a0X, a0Y, ... in directory order.
			o = &object{Name: po.Name, Label: po.Label, Plural: po.PluralLabel, Custom: true,
				KeyPrefix: "a0" + string(rune('X'+customPrefix))}
			customPrefix++
			systemFields(o)
			f, err := fieldFrom(*po.NameField) // an AutoNumber reads as text
			if err != nil {
				return nil, fmt.Errorf("%s: %w", po.NameField.File, err)
			}
			o.add(f)
			s.objects[strings.ToLower(po.Name)] = o
		}
		for _, pf := range po.Fields {
			if !pf.Custom {
				std := o.field(pf.Name)
				if std == nil {
					return nil, fmt.Errorf("%s: %s.%s is not a standard field the emulator knows (custom fields end in __c)", pf.File, o.Name, pf.Name)
				}
				if len(pf.Picklist) > 0 {
					std.Picklist = pf.Picklist
				}
				continue
			}
			f, err := fieldFrom(pf)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", pf.File, err)
			}
			o.add(f)
		}
	}
	// A custom object with no master-detail field has an owner.
	for _, o := range s.objects {
		if !o.Custom {
			continue
		}
		detail := false
		for _, f := range o.Fields {
			if f.Type == typeReference && f.Custom && f.Required && !f.Updateable {
				detail = true
			}
		}
		if !detail {
			o.add(ref("OwnerId", "Owner ID", "User", "Owner"))
		}
	}
	// Index relationships both ways.
	for _, o := range s.objects {
		s.byPrefix[o.KeyPrefix] = o
		o.relations = map[string]*field{}
		for _, f := range o.Fields {
			if f.Type != typeReference {
				continue
			}
			o.relations[strings.ToLower(f.RelationshipName)] = f
			if f.ReferenceTo != anyObject && s.object(f.ReferenceTo) == nil {
				return nil, fmt.Errorf("%s.%s: references unknown object %s", o.Name, f.Name, f.ReferenceTo)
			}
		}
	}
	for _, o := range s.objects {
		for _, f := range o.Fields {
			if f.ChildRelationship == "" {
				continue
			}
			parents := []*object{s.object(f.ReferenceTo)}
			if f.ReferenceTo == anyObject {
				parents = []*object{s.object("Opportunity"), s.object("Account")}
			}
			for _, p := range parents {
				p.children = append(p.children, &childRelationship{Name: f.ChildRelationship, Child: o, Field: f,
					CascadeDelete: f.CascadeDelete})
			}
		}
	}
	return s, nil
}

// FindMetadataDir walks up from the working directory to the deploy/salesforce project, so the emulator
// finds its schema from the repository root and from any package directory under test.
func FindMetadataDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		candidate := filepath.Join(dir, "deploy", "salesforce")
		if _, err := os.Stat(filepath.Join(candidate, "sfdx-project.json")); err == nil {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("deploy/salesforce/sfdx-project.json not found above the working directory")
		}
		dir = parent
	}
}
