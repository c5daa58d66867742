// Package salesforce names the Salesforce objects and fields cosell reads and writes. The custom fields are
// the ones shipped in deploy/salesforce; keep the names here and there in step.
package salesforce

// APIVersion is the REST API version cosell (and go-salesforce v2.5.2) uses.
const APIVersion = "v62.0"

// Standard and custom field API names on Opportunity.
const (
	FieldID              = "Id"
	FieldName            = "Name"
	FieldAccountID       = "AccountId"
	FieldAmount          = "Amount"
	FieldCurrencyIsoCode = "CurrencyIsoCode"
	FieldCloseDate       = "CloseDate"
	FieldStageName       = "StageName"
	FieldDescription     = "Description"
	FieldIsClosed        = "IsClosed"
	FieldIsWon           = "IsWon"
	FieldSystemModstamp  = "SystemModstamp"
	FieldLastModifiedBy  = "LastModifiedById"
	FieldIsDeleted       = "IsDeleted"

	FieldSyncWithPartnerCenter = "Sync_with_Partner_Center__c"
	FieldReferralIdentifier    = "Referral_Identifier__c"
	FieldReferralLink          = "Referral_Link__c"
	FieldHowCanMicrosoftHelp   = "How_can_Microsoft_help__c"
	FieldSyncStatus            = "Partner_Center_Sync_Status__c"
	FieldAudit                 = "Audit__c"
	// FieldReferralVisibility ("Partner Center referral visibility") makes the referral visible to Microsoft
	// sellers; once visible it can never be hidden again.
	FieldReferralVisibility = "Partner_Center_Referral_Visibility__c"
	// FieldMicrosoftCRMIdentifier ("Microsoft CRM Identifier") holds Microsoft's CRM id once Microsoft accepts
	// the co-sell referral.
	FieldMicrosoftCRMIdentifier = "Microsoft_CRM_Identifier__c"
)

// Object names.
const (
	ObjectOpportunity            = "Opportunity"
	ObjectAccount                = "Account"
	ObjectOpportunityTeamMember  = "OpportunityTeamMember"
	ObjectOpportunityContactRole = "OpportunityContactRole"
	ObjectUser                   = "User"
	ObjectMicrosoftSolution      = "Microsoft_Solution__c"
)

// Account fields cosell matches and fills.
const (
	AccountName              = "Name"
	AccountBillingStreet     = "BillingStreet"
	AccountBillingCity       = "BillingCity"
	AccountBillingState      = "BillingState"
	AccountBillingPostalCode = "BillingPostalCode"
	AccountBillingCountry    = "BillingCountry"
)

// ObjectLead is the standard Lead: a lead referral comes in as one while the mapping's coSellOnly is off.
const ObjectLead = "Lead"

// LeadKeyPrefix starts every Lead id (as 006 starts an Opportunity's).
const LeadKeyPrefix = "00Q"

// Lead fields cosell reads and writes (Object Reference, "Lead"); the cosell fields are the Opportunity's
// names (FieldReferralIdentifier, FieldSyncWithPartnerCenter, FieldSyncStatus, FieldAudit).
const (
	LeadFirstName              = "FirstName"
	LeadLastName               = "LastName"
	LeadCompany                = "Company"
	LeadEmail                  = "Email"
	LeadPhone                  = "Phone"
	LeadStatus                 = "Status"
	LeadSource                 = "LeadSource"
	LeadDescription            = "Description"
	LeadStreet                 = "Street"
	LeadCity                   = "City"
	LeadState                  = "State"
	LeadPostalCode             = "PostalCode"
	LeadCountry                = "Country"
	LeadIsConverted            = "IsConverted"
	LeadConvertedOpportunityID = "ConvertedOpportunityId"
)

// Lead statuses of a new org (Setup → Lead Status) as cosell's rule table uses them (docs/mapping.md, "Leads").
const (
	LeadStatusOpen          = "Open - Not Contacted"
	LeadStatusWorking       = "Working - Contacted"
	LeadStatusClosed        = "Closed - Not Converted"
	LeadStatusConverted     = "Closed - Converted"
	LeadSourcePartnerCenter = "Partner Referral"
)

// IsLeadID reports whether a Salesforce record id is a Lead's.
func IsLeadID(id string) bool { return len(id) >= 3 && id[:3] == LeadKeyPrefix }
