package contracts

import (
	"fmt"
	"strings"
	"time"
)

// Prefix starts every subject and event type, so cosell can share a NATS account with other systems.
const Prefix = "cosell"

// System names one of the two synchronised systems.
type System string

// The two systems cosell keeps in sync.
const (
	PartnerCenter System = "pc"
	Salesforce    System = "sf"
)

// Other returns the system on the far side of a link.
func (s System) Other() System {
	if s == PartnerCenter {
		return Salesforce
	}
	return PartnerCenter
}

// CloudEvent types. The version suffix changes only with an incompatible payload change.
const (
	TypeReferralObserved     = "cosell.pc.referral.observed.v1"
	TypeReferralNotified     = "cosell.pc.referral.notified.v1"
	TypeOpportunityObserved  = "cosell.sf.opportunity.observed.v1"
	TypeReferralRequested    = "cosell.pc.referral.requested.v1"
	TypeOpportunityRequested = "cosell.sf.opportunity.requested.v1"
	TypeReferralWritten      = "cosell.pc.referral.written.v1"
	TypeReferralFailed       = "cosell.pc.referral.failed.v1"
	TypeOpportunityWritten   = "cosell.sf.opportunity.written.v1"
	TypeOpportunityFailed    = "cosell.sf.opportunity.failed.v1"
	TypeDecision             = "cosell.audit.decision.v1"
	TypeDeadLetter           = "cosell.dlq.message.v1"
)

// Subject roots; the entity (or link) id is always the last token.
const (
	SubjectReferralObserved = "cosell.pc.referral.observed"
	// SubjectReferralNotified carries verified Partner Center webhook notifications from pc-ingest's
	// endpoint to its own fetcher: a durable hand-off, so the endpoint answers at once and loses nothing.
	SubjectReferralNotified     = "cosell.pc.referral.notified"
	SubjectOpportunityObserved  = "cosell.sf.opportunity.observed"
	SubjectReferralRequested    = "cosell.pc.referral.requested"
	SubjectOpportunityRequested = "cosell.sf.opportunity.requested"
	SubjectReferralWritten      = "cosell.pc.referral.written"
	SubjectReferralFailed       = "cosell.pc.referral.failed"
	SubjectOpportunityWritten   = "cosell.sf.opportunity.written"
	SubjectOpportunityFailed    = "cosell.sf.opportunity.failed"
	SubjectAudit                = "cosell.audit"
	SubjectDeadLetter           = "cosell.dlq"
)

// Subject joins a subject root and an entity id. Characters NATS treats specially in a token
// ('.', '*', '>', white space) are replaced by '_', so any id makes one valid token.
func Subject(root, id string) string {
	return root + "." + Token(id)
}

// OutcomeSubjects is the filter of every outcome subject of one link (written and failed, both systems):
// on StreamOutcomes it matches exactly the link's outcomes, the audit records of its writes.
func OutcomeSubjects(linkID string) string {
	return Prefix + ".*.*.*." + Token(linkID)
}

// Token makes id safe to use as one subject token or KV key segment.
func Token(id string) string {
	if id == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '=':
			return r
		}
		return '_'
	}, id)
}

// Stream names. Every stream uses Limits retention so any consumer can be rewound for replay.
const (
	StreamObserved   = "COSELL_OBSERVED"
	StreamRequested  = "COSELL_REQUESTED"
	StreamOutcomes   = "COSELL_OUTCOMES"
	StreamAudit      = "COSELL_AUDIT"
	StreamDeadLetter = "COSELL_DLQ"
)

// StreamSpec describes a stream cosell provisions; replicas, MaxAge and the duplicate window come from config.
type StreamSpec struct {
	Name     string
	Subjects []string
	// PerSubjectHistory caps the messages kept per subject (0 = no cap beyond MaxAge).
	PerSubjectHistory int64
}

// Streams lists every stream in provisioning order.
func Streams() []StreamSpec {
	return []StreamSpec{
		{Name: StreamObserved, Subjects: []string{SubjectReferralObserved + ".>", SubjectOpportunityObserved + ".>",
			SubjectReferralNotified + ".>"}},
		{Name: StreamRequested, Subjects: []string{SubjectReferralRequested + ".>", SubjectOpportunityRequested + ".>"}},
		{Name: StreamOutcomes, Subjects: []string{
			SubjectReferralWritten + ".>", SubjectReferralFailed + ".>",
			SubjectOpportunityWritten + ".>", SubjectOpportunityFailed + ".>",
		}},
		{Name: StreamAudit, Subjects: []string{SubjectAudit + ".>"}},
		{Name: StreamDeadLetter, Subjects: []string{SubjectDeadLetter + ".>"}},
	}
}

// ConsumerSpec is a durable pull consumer; every replica of a stage binds to the same durable.
type ConsumerSpec struct {
	Stream         string
	Durable        string
	FilterSubjects []string
	// Stage is the service that reads through this consumer.
	Stage string
}

// Stage (service) names, also used as the `source` of the events each one publishes.
const (
	StagePCIngest = "pc-ingest"
	StageSFIngest = "sf-ingest"
	StageMapper   = "mapper"
	StagePCWriter = "pc-writer"
	StageSFWriter = "sf-writer"
	StageAuditor  = "auditor"
)

// Stages lists the six services.
func Stages() []string {
	return []string{StagePCIngest, StageSFIngest, StageMapper, StagePCWriter, StageSFWriter, StageAuditor}
}

// Durable consumer names.
const (
	ConsumerMapperObserved = "mapper-observed"
	ConsumerMapperOutcomes = "mapper-outcomes"
	ConsumerPCWriter       = "pc-writer"
	ConsumerSFWriter       = "sf-writer"
	ConsumerAuditor        = "auditor"
	// ConsumerAuditorOutcomes hands the auditor the writers' outcomes: each is the audit record of its
	// write (the decision its command carried and what the write did), for the timelines and the summary.
	ConsumerAuditorOutcomes = "auditor-outcomes"
	// ConsumerAuditorDeadLetters lets the auditor put every dead letter on its link's timeline.
	ConsumerAuditorDeadLetters = "auditor-dlq"
	// ConsumerPCIngestNotified is pc-ingest's fetcher: it reads the notifications its webhook endpoint
	// accepted and publishes each referral's snapshot.
	ConsumerPCIngestNotified = "pc-ingest-notified"
)

// Consumers lists every durable consumer.
func Consumers() []ConsumerSpec {
	return []ConsumerSpec{
		{Stream: StreamObserved, Durable: ConsumerMapperObserved, Stage: StageMapper,
			FilterSubjects: []string{SubjectReferralObserved + ".>", SubjectOpportunityObserved + ".>"}},
		{Stream: StreamOutcomes, Durable: ConsumerMapperOutcomes, Stage: StageMapper,
			FilterSubjects: []string{SubjectReferralWritten + ".>", SubjectReferralFailed + ".>",
				SubjectOpportunityWritten + ".>", SubjectOpportunityFailed + ".>"}},
		{Stream: StreamRequested, Durable: ConsumerPCWriter, Stage: StagePCWriter,
			FilterSubjects: []string{SubjectReferralRequested + ".>"}},
		{Stream: StreamRequested, Durable: ConsumerSFWriter, Stage: StageSFWriter,
			FilterSubjects: []string{SubjectOpportunityRequested + ".>"}},
		{Stream: StreamAudit, Durable: ConsumerAuditor, Stage: StageAuditor,
			FilterSubjects: []string{SubjectAudit + ".>"}},
		{Stream: StreamOutcomes, Durable: ConsumerAuditorOutcomes, Stage: StageAuditor,
			FilterSubjects: []string{SubjectReferralWritten + ".>", SubjectReferralFailed + ".>",
				SubjectOpportunityWritten + ".>", SubjectOpportunityFailed + ".>"}},
		{Stream: StreamObserved, Durable: ConsumerPCIngestNotified, Stage: StagePCIngest,
			FilterSubjects: []string{SubjectReferralNotified + ".>"}},
		{Stream: StreamDeadLetter, Durable: ConsumerAuditorDeadLetters, Stage: StageAuditor,
			FilterSubjects: []string{SubjectDeadLetter + ".>"}},
	}
}

// ConsumerFor finds the durable consumer named durable among Consumers(); false when contracts names no
// such durable.
func ConsumerFor(durable string) (ConsumerSpec, bool) {
	for _, c := range Consumers() {
		if c.Durable == durable {
			return c, true
		}
	}
	return ConsumerSpec{}, false
}

// KV buckets.
const (
	// BucketLinks holds Link records and the indexes that find them from either side's id.
	BucketLinks = "cosell_links"
	// BucketCheckpoints holds ingest watermarks.
	BucketCheckpoints = "cosell_checkpoints"
	// BucketApplied remembers which write commands a writer already carried out, so a replayed
	// command costs no external write.
	BucketApplied = "cosell_applied"
	// BucketLeases holds the leases that keep one poller active per source (sf-ingest, pc-ingest's
	// reconcile poll) however many replicas run; a key lives LeaseTTL unless its holder renews it.
	BucketLeases = "cosell_leases"
	// BucketPCCredentials holds the Partner Center refresh token `cosell pc login` stored and every rotation of
	// it, shared by the replicas of the stages that call Partner Center (pc-ingest, pc-writer) and no others.
	BucketPCCredentials = "cosell_pc_credentials"
)

// LeaseTTL is how long a poller's lease outlives its last renewal: a replica that dies is replaced within it.
const LeaseTTL = 15 * time.Second

// Buckets lists every KV bucket.
func Buckets() []string {
	return []string{BucketLinks, BucketCheckpoints, BucketApplied, BucketLeases, BucketPCCredentials}
}

// Link keys. A link is stored once under LinkKey(id); IndexKey entries map each side's entity id to it.
func LinkKey(linkID string) string { return "link." + Token(linkID) }

// IndexKey is the key that maps a system's entity id to its link id.
func IndexKey(sys System, entityID string) string {
	return "idx." + string(sys) + "." + Token(entityID)
}

// LinkIDFor derives a deterministic link id from the side that originated the pair, so a redelivered
// or replayed first event finds the link it already made instead of making another.
func LinkIDFor(origin System, entityID string) string {
	return string(origin) + "-" + Token(entityID)
}

// EventID builds a deterministic event id from its parts (system, entity, version, ...), which is also
// the Nats-Msg-Id, so a re-publish inside the duplicate window is dropped by the server.
func EventID(parts ...string) string {
	return strings.Join(parts, "/")
}

// ReferralObservedID is the event id of a referral snapshot (TypeReferralObserved): pc/<referralId>/<eTag>.
// Whoever publishes a version (pc-ingest's webhook fetch or poll, cosell drift --fix) gives it this id,
// so the server keeps one copy and the mapper decides on it once.
func ReferralObservedID(referralID string, v Version) string {
	return EventID("pc", referralID, v.Tag)
}

// OpportunityObservedID is the event id of an Opportunity snapshot (TypeOpportunityObserved):
// sf/<opportunityId>/<newest SystemModstamp of the Opportunity and its children, RFC 3339>.
func OpportunityObservedID(opportunityID string, v Version) string {
	return EventID("sf", opportunityID, v.At.UTC().Format(time.RFC3339Nano))
}

// CheckpointKey names an ingest watermark.
func CheckpointKey(stage, name string) string { return fmt.Sprintf("%s.%s", Token(stage), Token(name)) }
