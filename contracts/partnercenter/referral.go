// Package partnercenter holds the Partner Center Referrals and Webhooks wire models, exactly as the
// REST API spells them (camelCase JSON for referrals, PascalCase for webhook bodies).
package partnercenter

// Referral statuses.
const (
	StatusNew    = "New"
	StatusActive = "Active"
	StatusClosed = "Closed"
)

// Referral substatuses.
const (
	SubstatusPending  = "Pending"
	SubstatusReceived = "Received"
	SubstatusAccepted = "Accepted"
	SubstatusWon      = "Won"
	SubstatusLost     = "Lost"
	SubstatusDeclined = "Declined"
	SubstatusExpired  = "Expired"
)

// Referral types, directions and qualifications.
const (
	TypeIndependent = "Independent"
	TypeShared      = "Shared"

	DirectionIncoming = "Incoming"
	DirectionOutgoing = "Outgoing"

	QualificationNone               = "None"
	QualificationDirect             = "Direct"
	QualificationMarketingQualified = "MarketingQualified"
	QualificationSalesQualified     = "SalesQualified"
)

// Referral is the Partner Center referral resource (GET /v1.0/engagements/referrals/{id}).
type Referral struct {
	ODataContext        string           `json:"@odata.context,omitempty"`
	ID                  string           `json:"id,omitempty"`
	EngagementID        string           `json:"engagementId,omitempty"`
	OrganizationID      string           `json:"organizationId,omitempty"`
	OrganizationName    string           `json:"organizationName,omitempty"`
	Name                string           `json:"name,omitempty"`
	ExternalReferenceID string           `json:"externalReferenceId,omitempty"`
	CreatedDateTime     string           `json:"createdDateTime,omitempty"`
	UpdatedDateTime     string           `json:"updatedDateTime,omitempty"`
	ExpirationDateTime  *string          `json:"expirationDateTime,omitempty"`
	AcceptedDateTime    *string          `json:"acceptedDateTime,omitempty"`
	ClosedDateTime      *string          `json:"closedDateTime,omitempty"`
	Status              string           `json:"status,omitempty"`
	Substatus           string           `json:"substatus,omitempty"`
	StatusReason        *string          `json:"statusReason,omitempty"`
	Type                string           `json:"type,omitempty"`
	Qualification       string           `json:"qualification,omitempty"`
	Direction           string           `json:"direction,omitempty"`
	SalesStage          string           `json:"salesStage,omitempty"`
	CampaignID          string           `json:"campaignId,omitempty"`
	ReferralProgram     string           `json:"referralProgram,omitempty"`
	Target              []Target         `json:"target,omitempty"`
	CustomerProfile     *CustomerProfile `json:"customerProfile,omitempty"`
	Consent             *Consent         `json:"consent,omitempty"`
	Details             *Details         `json:"details,omitempty"`
	Team                []Member         `json:"team,omitempty"`
	InviteContext       *InviteContext   `json:"inviteContext,omitempty"`
	TrackingInfo        *TrackingInfo    `json:"trackingInfo,omitempty"`
	Links               *Links           `json:"links,omitempty"`
	ETag                string           `json:"eTag,omitempty"`
}

// TrackingInfo holds Microsoft's own ids for the deal (seen in real payloads, partner-center.md §2):
// microsoftMsxId is Microsoft's CRM (MSX) id, filled once Microsoft accepts a co-sell referral.
type TrackingInfo struct {
	MicrosoftMsxID              string `json:"microsoftMsxId,omitempty"`
	MicrosoftUSFedOpportunityID string `json:"microsoftUSFedOpportunityId,omitempty"`
	MicrosoftUSFedLeadID        string `json:"microsoftUSFedLeadId,omitempty"`
}

// Target is a solution profile or business location a referral is addressed to.
type Target struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// CustomerProfile describes the customer of a referral.
type CustomerProfile struct {
	Name               string      `json:"name,omitempty"`
	Size               string      `json:"size,omitempty"`
	IsMatchingComplete *bool       `json:"isMatchingComplete,omitempty"`
	Address            *Address    `json:"address,omitempty"`
	Team               []Member    `json:"team,omitempty"`
	IDs                []ProfileID `json:"ids,omitempty"`
}

// Address is a customer address; Country is ISO-3166 alpha-2.
type Address struct {
	AddressLine1 string `json:"addressLine1,omitempty"`
	AddressLine2 string `json:"addressLine2,omitempty"`
	City         string `json:"city,omitempty"`
	State        string `json:"state,omitempty"`
	PostalCode   string `json:"postalCode,omitempty"`
	Country      string `json:"country,omitempty"`
	Region       string `json:"region,omitempty"`
}

// ProfileID is an external identity of the customer (DUNS, External).
type ProfileID struct {
	ProfileType string `json:"profileType"`
	ID          string `json:"id"`
}

// Member is a person on the customer's or a partner's team.
type Member struct {
	FirstName         string             `json:"firstName,omitempty"`
	LastName          string             `json:"lastName,omitempty"`
	PhoneNumber       string             `json:"phoneNumber,omitempty"`
	Email             string             `json:"email,omitempty"`
	Title             string             `json:"title,omitempty"`
	ContactPreference *ContactPreference `json:"contactPreference,omitempty"`
}

// ContactPreference is a member's locale and notification choice.
type ContactPreference struct {
	Locale               string `json:"locale,omitempty"`
	DisableNotifications bool   `json:"disableNotifications"`
}

// Consent holds the customer's and partner's sharing consents. The doubled "To" is Partner Center's spelling.
type Consent struct {
	ConsentToToShareInfoWithOthers              bool  `json:"consentToToShareInfoWithOthers"`
	ConsentToContact                            bool  `json:"consentToContact"`
	ConsentToShareReferralWithMicrosoftSellers  *bool `json:"consentToShareReferralWithMicrosoftSellers,omitempty"`
	ConsentToMicrosoftToContactSpecificPartners *bool `json:"consentToMicrosoftToContactSpecificPartners,omitempty"`
}

// Details holds the deal.
type Details struct {
	Notes                    string        `json:"notes,omitempty"`
	DealValue                *float64      `json:"dealValue,omitempty"`
	Currency                 string        `json:"currency,omitempty"`
	ClosingDateTime          string        `json:"closingDateTime,omitempty"`
	CustomerRequestedContact *bool         `json:"customerRequestedContact,omitempty"`
	CustomerAction           string        `json:"customerAction,omitempty"`
	IncentiveLevel           string        `json:"incentiveLevel,omitempty"`
	Requirements             *Requirements `json:"requirements,omitempty"`
}

// Requirements lists what the customer needs.
type Requirements struct {
	Industries []Tag      `json:"industries,omitempty"`
	Products   []Tag      `json:"products,omitempty"`
	Services   []Tag      `json:"services,omitempty"`
	Solutions  []Solution `json:"solutions,omitempty"`
}

// Tag is an industry, product or service id.
type Tag struct {
	ID string `json:"id"`
}

// Solution is a Microsoft or co-sell-ready solution on a referral.
type Solution struct {
	ID            string   `json:"id"`
	Name          string   `json:"name,omitempty"`
	Type          string   `json:"type,omitempty"`
	Price         *float64 `json:"price,omitempty"`
	Quantity      *float64 `json:"quantity,omitempty"`
	Currency      string   `json:"currency,omitempty"`
	PublisherName string   `json:"publisherName,omitempty"`
	SolutionType  string   `json:"solutionType,omitempty"`
}

// InviteContext says who shared the referral and what help was asked for.
type InviteContext struct {
	Notes                 string     `json:"notes,omitempty"`
	AssistanceRequestCode string     `json:"assistanceRequestCode,omitempty"`
	InvitedMpnID          string     `json:"invitedMpnId,omitempty"`
	InvitedBy             *InvitedBy `json:"invitedBy,omitempty"`
}

// InvitedBy is the organisation that shared a referral ("msft" for Microsoft).
type InvitedBy struct {
	OrganizationID   string `json:"organizationId,omitempty"`
	OrganizationName string `json:"organizationName,omitempty"`
}

// Links are the referral's related URIs.
type Links struct {
	RelatedReferrals *Link `json:"relatedReferrals,omitempty"`
	Self             *Link `json:"self,omitempty"`
}

// Link is one URI with its method.
type Link struct {
	URI    string `json:"uri"`
	Method string `json:"method"`
}

// ReferralList is a page of the list call.
type ReferralList struct {
	ODataContext  string     `json:"@odata.context,omitempty"`
	ODataCount    *int       `json:"@odata.count,omitempty"`
	Value         []Referral `json:"value"`
	ODataNextLink string     `json:"@odata.nextLink,omitempty"`
}

// PatchOp is one JSON Patch (RFC 6902) operation; Partner Center accepts "replace" and "add".
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Error is Partner Center's error body.
type Error struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inner error.
type ErrorDetail struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Target     string `json:"target,omitempty"`
	InnerError any    `json:"innerError,omitempty"`
}

// ErrorCodePreconditionFailed is the code of a 412: the If-Match eTag is no longer the referral's. A
// failed outcome with this code carries the referral as it is now, for the mapper to decide again.
const ErrorCodePreconditionFailed = "preconditionFailed"

// Webhook event names.
const (
	EventReferralCreated        = "referral-created"
	EventReferralUpdated        = "referral-updated"
	EventRelatedReferralCreated = "related-referral-created"
	EventRelatedReferralUpdated = "related-referral-updated"
	EventTestCreated            = "test-created"
)

// WebhookRegistration is the body of POST/PUT/GET /webhooks/v1/registration.
type WebhookRegistration struct {
	SubscriberID                      string   `json:"SubscriberId,omitempty"`
	WebhookURL                        string   `json:"WebhookUrl"`
	WebhookEvents                     []string `json:"WebhookEvents"`
	SignatureTokenToMsSignatureHeader bool     `json:"SignatureTokenToMsSignatureHeader,omitempty"`
}

// WebhookNotification is the body Partner Center POSTs to a registered URL.
type WebhookNotification struct {
	EventName    string  `json:"EventName"`
	ResourceURI  string  `json:"ResourceUri"`
	ResourceName string  `json:"ResourceName"`
	AuditURI     *string `json:"AuditUri"`
	// AuditURL is the spelling some Microsoft docs use for AuditUri; receivers accept either (pcwebhook).
	AuditURL              *string `json:"AuditUrl,omitempty"`
	ResourceChangeUTCDate string  `json:"ResourceChangeUtcDate"`
}

// Webhook signature headers.
const (
	HeaderCertificateURL     = "X-MS-Certificate-Url"
	HeaderSignatureAlgorithm = "X-MS-Signature-Algorithm"
	HeaderMSSignature        = "x-ms-signature"
)

// WebhookValidationStatus is the body of GET /webhooks/v1/registration/validationEvents/{correlationId}:
// the delivery record of one test-created event.
type WebhookValidationStatus struct {
	CorrelationID string                    `json:"correlationId"`
	PartnerID     string                    `json:"partnerId,omitempty"`
	Status        string                    `json:"status"`
	CallbackURL   string                    `json:"callbackUrl,omitempty"`
	Results       []WebhookValidationResult `json:"results"`
}

// WebhookValidationResult is one delivery attempt of a validation event.
type WebhookValidationResult struct {
	ResponseCode    string `json:"responseCode"`
	ResponseMessage string `json:"responseMessage"`
	SystemError     bool   `json:"systemError"`
	DateTimeUTC     string `json:"dateTimeUtc"`
}
