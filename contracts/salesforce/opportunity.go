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
