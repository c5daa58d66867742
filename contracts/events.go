package contracts

import (
	"strings"
	"time"

	"github.com/cosell-dev/cosell/contracts/partnercenter"
)

// Version is an entity's version in its own system: Partner Center's eTag and updatedDateTime, or
// Salesforce's SystemModstamp. At orders versions of one entity; Tag tells equal timestamps apart.
type Version struct {
	Tag string    `json:"tag"`
	At  time.Time `json:"at"`
}

// Newer reports whether v is strictly newer than o. An empty o is older than anything.
func (v Version) Newer(o Version) bool {
	if o.At.IsZero() {
		return !v.At.IsZero() || v.Tag != o.Tag
	}
	return v.At.After(o.At)
}

// ReferralObserved is the data of TypeReferralObserved: a full referral snapshot as Partner Center returned it.
type ReferralObserved struct {
	Referral   partnercenter.Referral `json:"referral"`
	Version    Version                `json:"version"`
	ObservedAt time.Time              `json:"observedAt"`
	// Via says how the change was noticed: "webhook", "poll" or "writer" (read back after our own write).
	Via string `json:"via"`
}

// Opportunity is a Salesforce Opportunity snapshot: the fields the mapping reads, by API name, with the
// JSON values Salesforce returned (parent fields under "Account.Name" style keys), plus its children.
type Opportunity struct {
	ID          string         `json:"id"`
	Fields      map[string]any `json:"fields"`
	TeamMembers []TeamMember   `json:"teamMembers,omitempty"`
	// Contacts are the Opportunity's contact roles with their Contacts: the customer's contacts.
	Contacts  []ContactRole `json:"contacts,omitempty"`
	Solutions []Solution    `json:"solutions,omitempty"`
	Deleted   bool          `json:"deleted,omitempty"`
	// Object is "Lead" for a Lead's snapshot (its Fields are the Lead's), "" for an Opportunity's.
	Object string `json:"object,omitempty"`
	// ConvertedOpportunityID is the Opportunity a converted Lead became (Lead.ConvertedOpportunityId).
	ConvertedOpportunityID string `json:"convertedOpportunityId,omitempty"`
}

// TeamMember is an OpportunityTeamMember with its User's contact fields.
type TeamMember struct {
	UserID    string `json:"userId"`
	Role      string `json:"role,omitempty"`
	FirstName string `json:"firstName,omitempty"`
	LastName  string `json:"lastName,omitempty"`
	Email     string `json:"email,omitempty"`
	Phone     string `json:"phone,omitempty"`
}

// ContactRole is an OpportunityContactRole with its Contact's fields.
type ContactRole struct {
	ContactID string `json:"contactId"`
	Role      string `json:"role,omitempty"`
	Primary   bool   `json:"primary,omitempty"`
	FirstName string `json:"firstName,omitempty"`
	LastName  string `json:"lastName,omitempty"`
	Email     string `json:"email,omitempty"`
	Phone     string `json:"phone,omitempty"`
}

// Solution is a Microsoft Solution child record of an Opportunity.
type Solution struct {
	ID         string `json:"id,omitempty"`
	SolutionID string `json:"solutionId"`
	Name       string `json:"name,omitempty"`
}

// OpportunityObserved is the data of TypeOpportunityObserved.
type OpportunityObserved struct {
	Opportunity Opportunity `json:"opportunity"`
	Version     Version     `json:"version"`
	ObservedAt  time.Time   `json:"observedAt"`
	// Via says how the change was noticed: "cdc" (a Change Data Capture event), "poll" or "writer".
	Via string `json:"via"`
}

// Operations a write command asks for.
const (
	OpCreate = "create"
	OpUpdate = "update"
)

// ReferralCommand is the data of TypeReferralRequested: create or patch one referral.
type ReferralCommand struct {
	LinkID string `json:"linkId"`
	Op     string `json:"op"`
	// ReferralID is set for updates.
	ReferralID string `json:"referralId,omitempty"`
	// OpportunityID is the externalReferenceId: pc-writer looks it up before a create, so a redelivered
	// create adopts the referral it already made.
	OpportunityID string `json:"opportunityId"`
	// Create is the resource to POST (create only).
	Create *partnercenter.Referral `json:"create,omitempty"`
	// Patch holds the JSON Patch operations to send (update only): only changed fields.
	Patch []partnercenter.PatchOp `json:"patch,omitempty"`
	// Cause is the id of the event the mapper decided on.
	Cause string `json:"cause"`
	// CauseVersion is the source version that produced this command.
	CauseVersion Version `json:"causeVersion"`
	// BaseETag (update only) is the eTag, without quotes, of the referral version the patch was decided
	// against. pc-writer sends it as If-Match, so a Microsoft edit made since then fails the patch with
	// 412 and the mapper decides again instead of the edit being overwritten.
	BaseETag string `json:"baseETag,omitempty"`
	// Decision is the mapper's decision this command carries out (applied or created: the fields, each
	// before → after, the cause). It is on no audit subject of its own: pc-writer copies it into the
	// command's outcome, which is the audit record of the write.
	Decision *Decision `json:"decision,omitempty"`
}

// ReferralNotified is the data of TypeReferralNotified: one verified webhook notification.
type ReferralNotified struct {
	// EventName is the Partner Center event (referral-created, related-referral-updated, ...).
	EventName string `json:"eventName"`
	// ReferralID is the last segment of the notification's ResourceUri; for related-referral-* events
	// it names the related referral (e.g. Microsoft's), not necessarily one of the partner's.
	ReferralID string `json:"referralId"`
	// ChangedAt is the notification's ResourceChangeUtcDate.
	ChangedAt  time.Time `json:"changedAt"`
	ReceivedAt time.Time `json:"receivedAt"`
}

// OpportunityCommand is the data of TypeOpportunityRequested: upsert or update one Opportunity.
type OpportunityCommand struct {
	LinkID string `json:"linkId"`
	Op     string `json:"op"`
	// OpportunityID is set for updates.
	OpportunityID string `json:"opportunityId,omitempty"`
	// Object is the Salesforce object written: "" the Opportunity, "Lead" a Lead (its Fields are Lead
	// fields; no Account, solutions or contacts).
	Object string `json:"object,omitempty"`
	// ReferralID is the Referral Identifier external id: creates are upserts by it, so a redelivered
	// create can never make a second Opportunity.
	ReferralID string `json:"referralId,omitempty"`
	// Fields are Opportunity API field names and the values to write (only changed fields on update).
	Fields map[string]any `json:"fields"`
	// Account, when set on a create, is found (name + postal code, then name) or created and linked.
	Account *Account `json:"account,omitempty"`
	// Solutions, when SetSolutions is true, is the complete list of Microsoft Solution child records the
	// Opportunity must have afterwards (the writer adds the missing ones and removes the others).
	Solutions    []Solution `json:"solutions,omitempty"`
	SetSolutions bool       `json:"setSolutions,omitempty"`
	// Contacts, when SetContacts is true, is the complete list of the customer's contacts the Opportunity
	// must have contact roles for afterwards (the writer finds each Contact by e-mail or creates it under
	// the Opportunity's Account, adds the missing roles and removes the others; Contacts are never deleted).
	Contacts    []ContactRole `json:"contacts,omitempty"`
	SetContacts bool          `json:"setContacts,omitempty"`
	// Purpose says why: "sync" (mapped fields), "link" (write-back of referral id and link), "status"
	// (sync status ✔/✖) or "audit" (the Audit summary).
	Purpose      string  `json:"purpose,omitempty"`
	Cause        string  `json:"cause"`
	CauseVersion Version `json:"causeVersion"`
	// Decision is the mapper's decision this command carries out (applied or created), as on
	// ReferralCommand: sf-writer copies it into the outcome. Write-backs (link, status, Audit) carry none.
	Decision *Decision `json:"decision,omitempty"`
	// AuditSent is the id of the Audit summary text Fields carries (the id the auditor's own write of that
	// text would have, auditsummary.CommandID), when the mapper put the summary into this write; sf-writer
	// copies it into the outcome, so the auditor knows the text is on the Opportunity without rendering it.
	AuditSent string `json:"auditSent,omitempty"`
}

// PurposeAudit is the OpportunityCommand (and Outcome) purpose of the auditor's Audit summary write-back.
const PurposeAudit = "audit"

// PurposeLink is the OpportunityCommand (and Outcome) purpose of the mapper's write-back of a created
// referral's id and link to its Opportunity, which the create's outcome causes.
const PurposeLink = "link"

// Account is the customer account an Opportunity belongs to.
type Account struct {
	Name       string `json:"name"`
	Street     string `json:"street,omitempty"`
	City       string `json:"city,omitempty"`
	State      string `json:"state,omitempty"`
	PostalCode string `json:"postalCode,omitempty"`
	Country    string `json:"country,omitempty"`
	// IDs are the customer's ids in Partner Center (customerProfile.ids) by profile type (External, Duns),
	// for an Account match by external id.
	IDs map[string]string `json:"ids,omitempty"`
}

// Outcome statuses.
const (
	OutcomeWritten = "written"
	OutcomeFailed  = "failed"
)

// Outcome is the data of the written / failed events: what a writer did with one command.
type Outcome struct {
	CommandID string `json:"commandId"`
	LinkID    string `json:"linkId"`
	System    System `json:"system"`
	Op        string `json:"op"`
	Purpose   string `json:"purpose,omitempty"`
	Status    string `json:"status"`
	// Created is true when the write made a new record (false when a create adopted an existing one).
	Created       bool   `json:"created,omitempty"`
	ReferralID    string `json:"referralId,omitempty"`
	OpportunityID string `json:"opportunityId,omitempty"`
	// Version is the written record's version right after the write, when the writer knows it.
	Version Version `json:"version"`
	// Referral is the referral as Partner Center returned it after a create or patch, so the mapper
	// sees edits made on Partner Center just before ours without another read.
	Referral *partnercenter.Referral `json:"referral,omitempty"`
	Error    *Failure                `json:"error,omitempty"`
	At       time.Time               `json:"at"`
	// Decision is the decision the command carried (copied by the writer): with the status it makes the
	// outcome the audit record of the write, on the link's outcome subject, so the commanded path costs
	// no audit message of its own (the auditor shows both on the link's timeline).
	Decision *Decision `json:"decision,omitempty"`
	// CauseVersion is the command's: the source version of the change written, for the sync latency.
	CauseVersion Version `json:"causeVersion"`
	// AuditSent is the command's (OpportunityCommand.AuditSent): the Audit summary this write carried.
	AuditSent string `json:"auditSent,omitempty"`
}

// Failure is an upstream refusal, classified once at the writer.
type Failure struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	HTTPStatus int    `json:"httpStatus,omitempty"`
	// Permanent is true when retrying cannot help (validation, forbidden transition).
	Permanent bool `json:"permanent"`
}

// Decision kinds, the vocabulary of the audit trail.
const (
	DecisionApplied    = "applied"
	DecisionCreated    = "created"
	DecisionEcho       = "echo"
	DecisionStale      = "stale"
	DecisionNoChange   = "no-change"
	DecisionConflict   = "conflict"
	DecisionHeld       = "held"
	DecisionIgnored    = "ignored"
	DecisionWritten    = "written"
	DecisionFailed     = "failed"
	DecisionLinked     = "linked"
	DecisionDeadLetter = "dead-letter"
	// DecisionRedriven records that an operator re-drove a dead letter.
	DecisionRedriven = "re-driven"
	// DecisionPurged records that an operator removed a dead letter for good.
	DecisionPurged = "purged"
	// DecisionDriftFixed records that an operator healed a drift finding (cosell drift --fix).
	DecisionDriftFixed = "drift-fixed"
)

// Decision is the data of TypeDecision: one audited decision about one link.
type Decision struct {
	LinkID        string `json:"linkId"`
	ReferralID    string `json:"referralId,omitempty"`
	OpportunityID string `json:"opportunityId,omitempty"`
	Stage         string `json:"stage"`
	Kind          string `json:"kind"`
	// Target is the system the decision writes to, when it writes.
	Target System   `json:"target,omitempty"`
	Fields []string `json:"fields,omitempty"`
	// Changes are the values the decision sends, holds or parks, each field's agreed value before → the
	// value it takes, and the side that value came from (canonical values, as in the mapping).
	Changes []FieldChange `json:"changes,omitempty"`
	Detail  string        `json:"detail,omitempty"`
	// Cause is the id of the event decided on.
	Cause string `json:"cause"`
	// By is who made an operator's change (re-drive, purge, drift fix): "name (role, via)".
	By string    `json:"by,omitempty"`
	At time.Time `json:"at"`
}

// FieldChange is one field of a Decision: its value before (the last agreed value; absent when there was
// none) and after, and the side the new value came from.
type FieldChange struct {
	Field  string `json:"field"`
	Before any    `json:"before,omitempty"`
	After  any    `json:"after,omitempty"`
	From   System `json:"from"`
}

// DeadLetter is the data of TypeDeadLetter: a message a stage gave up on, with why, so it can be re-driven.
type DeadLetter struct {
	Stage      string              `json:"stage"`
	Stream     string              `json:"stream"`
	Consumer   string              `json:"consumer"`
	StreamSeq  uint64              `json:"streamSeq"`
	Subject    string              `json:"subject"`
	Header     map[string][]string `json:"header"`
	Data       []byte              `json:"data"`
	Reason     string              `json:"reason"`
	Deliveries uint64              `json:"deliveries"`
	At         time.Time           `json:"at"`
}

// Link states.
const (
	LinkCreatingReferral    = "creating-referral"
	LinkCreatingOpportunity = "creating-opportunity"
	LinkLinked              = "linked"
	LinkFailed              = "failed"
)

// Link is the record that pairs one referral with one opportunity, stored in BucketLinks under LinkKey.
// It is only ever changed by compare-and-set on its KV revision.
type Link struct {
	ID            string `json:"id"`
	Origin        System `json:"origin"`
	ReferralID    string `json:"referralId,omitempty"`
	OpportunityID string `json:"opportunityId,omitempty"`
	// SFObject is "Lead" while the link's Salesforce side is a Lead (OpportunityID then holds the Lead's
	// id); converting the Lead moves the link to its Opportunity and clears it.
	SFObject string `json:"sfObject,omitempty"`
	State    string `json:"state"`
	// Synced holds the agreed value of every mapped field (canonical names) as of the last decision: the
	// base of the three-way merge.
	Synced map[string]any `json:"synced,omitempty"`
	PC     Side           `json:"pc"`
	SF     Side           `json:"sf"`
	// LastError is the latest write failure on either side, cleared by the next success.
	LastError string `json:"lastError,omitempty"`
	// Review holds the fields whose conflict a mapping rule (owner both-with-review) parked for a person,
	// by canonical name: nothing is written for them until one side is edited again or both agree.
	Review map[string]Review `json:"review,omitempty"`
	// Paused is set while the Opportunity of a link has Sync with Partner Center off: its changes are not
	// sent to Partner Center (Partner Center's still reach it); ticking the flag again resumes the link.
	Paused bool `json:"paused,omitempty"`
	// Held is what cosell holds back and why, as last audited: a snapshot that holds back the same values
	// for the same reason is not audited again.
	Held *Held `json:"held,omitempty"`
	// Status is the sync status last written to the Opportunity (✔, ⏸ …, ✖ …); empty reads as ✔.
	Status string `json:"status,omitempty"`
	// Folded remembers the writers' outcomes already folded into the link, so an outcome handled again
	// (a replay of the outcomes stream, past the duplicate window too) changes nothing.
	Folded *Folded `json:"folded,omitempty"`
	// Audit is the link's trail for the Opportunity's Audit field, kept by the mapper: its Salesforce
	// writes carry the text, so the Audit summary costs no command of its own.
	Audit     *AuditTrail `json:"audit,omitempty"`
	UpdatedAt time.Time   `json:"updatedAt"`
}

// AuditTrail is what the Audit field shows of a link: the lines of the latest decisions it summarises
// (oldest first), how many it summarised in all, and the id of the Audit command whose text (the id names
// it) the mapper last carried in a Salesforce write; the auditor writes a text only when it is another.
type AuditTrail struct {
	Lines []string `json:"lines,omitempty"`
	Total int      `json:"total,omitempty"`
	Sent  string   `json:"sent,omitempty"`
}

// Folded is what a link remembers of the outcomes folded into it: a short hash of each of the latest
// (command id, status) pairs, and, once older ones had to be forgotten, a write time well before which
// every outcome counts as folded.
type Folded struct {
	IDs    []string  `json:"ids,omitempty"`
	Before time.Time `json:"before,omitempty"`
}

// Held is a change cosell holds back: the reason (hold stage, referral closed, paused), the fields, and
// a fingerprint of the held values, so the same held change is decided once.
type Held struct {
	Reason      string    `json:"reason"`
	Fields      []string  `json:"fields,omitempty"`
	Fingerprint string    `json:"fingerprint"`
	Since       time.Time `json:"since"`
}

// Review is a conflict parked for a person: both sides' values when it was parked.
type Review struct {
	PC any       `json:"pc"`
	SF any       `json:"sf"`
	At time.Time `json:"at"`
}

// Side is what cosell knows about one side of a link.
type Side struct {
	// Seen is the newest version observed and decided on; older snapshots are stale.
	Seen Version `json:"seen"`
	// WrittenFingerprint is the fingerprint of the mapped values we last asked to be written to this
	// side: an observed snapshot with the same fingerprint is our own echo.
	WrittenFingerprint string `json:"writtenFingerprint,omitempty"`
	// Pending is the id of a write command sent to this side and not yet answered by an outcome.
	Pending string `json:"pending,omitempty"`
	// InFlight holds the values (canonical names) cosell asked to be written to this side and has not yet
	// seen there: a snapshot still showing the older value predates our write and is not an edit.
	InFlight map[string]any `json:"inFlight,omitempty"`
	// Latest holds the mapped values (canonical names) of the newest snapshot observed on this side, so a
	// change that had to wait (the other side not created yet, or locked) can be sent once it may be.
	Latest map[string]any `json:"latest,omitempty"`
}

// ReferralVersion is a referral's version: its eTag (without quotes) and updatedDateTime.
func ReferralVersion(r partnercenter.Referral) Version {
	at, _ := time.Parse(time.RFC3339Nano, r.UpdatedDateTime)
	return Version{Tag: strings.Trim(r.ETag, `"`), At: at.UTC()}
}
