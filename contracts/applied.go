package contracts

import "time"

// PCCreateKeyPrefix starts the keys in BucketApplied under which pc-writer records its creates. pc-ingest
// follows the puts under it (PCCreateKeyPrefix + ">") to know the referral a webhook names is one of ours.
const PCCreateKeyPrefix = "pc-create."

// PCCreateKey is the key of the create record for an Opportunity.
func PCCreateKey(opportunityID string) string { return PCCreateKeyPrefix + Token(opportunityID) }

// PCCreate is pc-writer's record of a referral create for an Opportunity. It is written twice per create:
// before Partner Center is called (no ReferralID: a create is under way since AttemptAt) and once the
// created referral has been published as its observed snapshot and the create's outcome (ReferralID set), or the attempt failed
// (Failed set). It makes a create
// idempotent (a redelivery adopts ReferralID, or scans from StartedAt after a crash), and pc-ingest takes
// it as the sign that a referral-created webhook arriving meanwhile is about our own create, whose
// snapshot pc-writer is about to publish (so no read is needed).
type PCCreate struct {
	OpportunityID string `json:"opportunityId"`
	// StartedAt is the first attempt, before Partner Center was called (the floor of the recovery scan).
	StartedAt time.Time `json:"startedAt"`
	// AttemptAt is when the attempt under way began (the first one's is StartedAt).
	AttemptAt time.Time `json:"attemptAt,omitzero"`
	// ReferralID is set once the create returned and its snapshot was published.
	ReferralID string `json:"referralId,omitempty"`
	// Failed is why the last attempt failed, when it did: no attempt is under way until the next one.
	Failed string `json:"failed,omitempty"`
	// CommandID is the create command the record answers: with ReferralID set, that command is carried
	// out and its outcome published (pc-writer keeps no other applied mark for a create, so a replayed
	// create costs one read of this record and no call).
	CommandID string `json:"commandId,omitempty"`
}

// UnderWay reports whether the record announces an attempt not yet answered.
func (c PCCreate) UnderWay() bool { return c.ReferralID == "" && c.Failed == "" }

// Attempt is when the attempt under way began.
func (c PCCreate) Attempt() time.Time {
	if c.AttemptAt.IsZero() {
		return c.StartedAt
	}
	return c.AttemptAt
}
