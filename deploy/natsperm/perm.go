package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cosell-dev/cosell/contracts"
)

// Account is the NATS account every cosell user lives in; KEDA's nats-jetstream scaler names it too.
const Account = "COSELL"

// AdminUser is the provisioning identity (the provisioning Job and `cosell doctor` / operators' CLI): it
// creates and updates streams, consumers and buckets, so the services can run with COSELL_PROVISION=false.
const AdminUser = "cosell-admin"

// UsersSecret is the Kubernetes Secret (in the NATS namespace) holding one password per user, keyed by
// user name; the NATS pods read them as environment variables.
const UsersSecret = "cosell-nats-users"

// ConfFile and ValuesFile are the generated files.
const (
	ConfFile   = "cosell-auth.conf"
	ValuesFile = "values-auth.yaml"
)

// User is one NATS user and what it may do. Nil Publish and Subscribe mean unrestricted in the account.
type User struct {
	Name      string
	Comment   string
	Publish   []string
	Subscribe []string
	// PublishDeny carves other stages' durables out of the wildcards an ordered-consumer reader needs.
	PublishDeny []string
}

// PasswordVar is the environment variable the NATS server reads the user's password from.
func (u User) PasswordVar() string {
	return "COSELL_NATS_PASSWORD_" + strings.ToUpper(strings.ReplaceAll(u.Name, "-", "_"))
}

// InboxPrefix is the reply-subject prefix a service's connection uses (runtime sets
// nats.CustomInboxPrefix to it), so no service can subscribe to another's replies — which would let it
// read the messages delivered to that service's pull consumers.
func InboxPrefix(stage string) string { return "_INBOX_" + contracts.Token(stage) }

// role is what a stage does on the bus beyond consuming its durables (those come from
// contracts.Consumers(), by Stage).
type role struct {
	stage string
	// publishes are subject roots the stage publishes events to (root + ".>").
	publishes []string
	// kvWrite are buckets read and written with compare-and-set; kvRead are only read.
	kvWrite, kvRead []string
	// kvList are buckets whose keys the stage lists (a KV watch: an ordered push consumer).
	kvList []string
	// kvFollow are bucket → key patterns whose puts the stage follows as they are written (a core
	// subscription on the bucket's subjects, platform.FollowKV): no consumer, no history.
	kvFollow map[string]string
	// streamReads are streams the stage reads with ephemeral ordered consumers (the auditor's dead letters).
	streamReads []string
	// subjectReads are streams whose subjects the stage reads one at a time without a consumer: batched
	// direct gets, and the leader's message get for a subject's last sequence (the auditor's timelines).
	subjectReads []string
	// streamInfo are streams whose info (depth) the stage reads.
	streamInfo []string
	// allLag: the stage reads every durable's info (the auditor's status page shows the lag of each).
	allLag bool
	// lastOf are subject roots whose last message per subject the stage reads (a direct get).
	lastOf []string
	// redrive: the stage re-drives dead letters (publishes each again on the subject it was parked from,
	// any event subject) and removes them from the dead-letter stream, one or all.
	redrive bool
}

// streamOf names the stream that holds a subject root.
func streamOf(root string) string {
	for _, s := range contracts.Streams() {
		for _, subj := range s.Subjects {
			if subj == root+".>" {
				return s.Name
			}
		}
	}
	return ""
}

// roles is who publishes what; consumers come from contracts. Keep it in step with the services: the
// services/deploytest tests run every stage under these users and fail on a missing permission.
func roles() []role {
	return []role{
		// pc-ingest's webhook endpoint publishes verified notifications, its fetcher (a durable) turns them
		// into full referral snapshots.
		// It reads a referral's last snapshot to skip publishing one it already has, and follows pc-writer's
		// create records so the webhook about our own create waits for pc-writer's snapshot. Its replicas
		// share the tenant's read rate: each announces itself in the leases bucket and follows the others.
		// Both Partner Center stages read the shared refresh token and write back its rotations.
		{stage: contracts.StagePCIngest, publishes: []string{contracts.SubjectReferralNotified, contracts.SubjectReferralObserved},
			kvWrite: []string{contracts.BucketCheckpoints, contracts.BucketLeases, contracts.BucketPCCredentials}, lastOf: []string{contracts.SubjectReferralObserved},
			kvFollow: map[string]string{contracts.BucketApplied: contracts.PCCreateKeyPrefix + ">", contracts.BucketLeases: "pc-ingest.>"}},
		// sf-ingest reads a record's last snapshot to build the next one from a change event.
		{stage: contracts.StageSFIngest, publishes: []string{contracts.SubjectOpportunityObserved},
			kvWrite: []string{contracts.BucketCheckpoints, contracts.BucketLeases}, lastOf: []string{contracts.SubjectOpportunityObserved}},
		{stage: contracts.StageMapper,
			publishes: []string{contracts.SubjectReferralRequested, contracts.SubjectOpportunityRequested, contracts.SubjectAudit},
			kvWrite:   []string{contracts.BucketLinks}},
		// pc-writer also publishes the referral its create or patch returned as the observed snapshot, so
		// pc-ingest does not read it again behind the webhook about our own write.
		// Its replicas share the tenant's rate: each announces itself in the leases bucket and follows the others.
		{stage: contracts.StagePCWriter, publishes: []string{contracts.SubjectReferralWritten, contracts.SubjectReferralFailed, contracts.SubjectReferralObserved},
			kvWrite:  []string{contracts.BucketApplied, contracts.BucketPCCredentials, contracts.BucketLeases},
			kvFollow: map[string]string{contracts.BucketLeases: "pc-writer.>"}},
		// sf-writer reads the commands stored after an update on its link's subject (direct gets), so an
		// older command delivered late does not write over what a newer one carries.
		{stage: contracts.StageSFWriter, publishes: []string{contracts.SubjectOpportunityWritten, contracts.SubjectOpportunityFailed},
			kvWrite: []string{contracts.BucketApplied}, subjectReads: []string{contracts.StreamRequested}},
		// The auditor puts its own decisions on the audit trail and writes the Audit field summary back
		// through sf-writer; it reads timelines one subject at a time with direct gets (and through an
		// ordered consumer when a follower was behind), dead letters and outcomes with ordered consumers,
		// and every stream's and durable's info for its lag metrics. The status page's operators (signed in, the
		// operator role, audited with their name) re-drive and purge dead letters through it, so it may
		// publish a parked message again on any event subject and delete from the dead-letter stream.
		{stage: contracts.StageAuditor, redrive: true,
			publishes:   []string{contracts.SubjectAudit, contracts.SubjectOpportunityRequested},
			kvRead:      []string{contracts.BucketLinks},
			kvList:      []string{contracts.BucketLinks},
			streamReads: []string{contracts.StreamAudit, contracts.StreamDeadLetter, contracts.StreamOutcomes},
			// a link's timeline: its audit subject and its outcome subjects (the writes' audit records)
			subjectReads: []string{contracts.StreamAudit, contracts.StreamOutcomes},
			streamInfo:   streamNames(),
			allLag:       true},
	}
}

// Users is the whole permission set: one user per stage, in contracts.Stages() order, then the admin.
func Users() []User {
	var out []User
	for _, r := range roles() {
		out = append(out, r.user())
	}
	out = append(out, User{Name: AdminUser,
		Comment: "provisioning Job and operators' CLI (cosell doctor, replay, dlq): unrestricted in the account"})
	return out
}

func (r role) user() User {
	pub := set{}
	sub := set{}
	inbox := InboxPrefix(r.stage) + ".>"
	sub.add(inbox)
	var consumes []string
	for _, c := range contracts.Consumers() {
		if c.Stage != r.stage {
			continue
		}
		consumes = append(consumes, c.Durable)
		pub.add("$JS.API.CONSUMER.INFO." + c.Stream + "." + c.Durable)
		pub.add("$JS.API.CONSUMER.MSG.NEXT." + c.Stream + "." + c.Durable)
		pub.add("$JS.ACK." + c.Stream + "." + c.Durable + ".>")
	}
	if len(consumes) > 0 {
		// The consumer loop parks poison messages under the stage's own dead-letter subjects.
		pub.add(contracts.SubjectDeadLetter + "." + contracts.Token(r.stage) + ".>")
	}
	for _, root := range r.publishes {
		pub.add(root + ".>")
	}
	for _, b := range append(append([]string{}, r.kvWrite...), r.kvRead...) {
		pub.add("$JS.API.STREAM.INFO.KV_" + b)
		pub.add("$JS.API.DIRECT.GET.KV_" + b + ".>")
		pub.add("$JS.API.STREAM.MSG.GET.KV_" + b)
	}
	for _, b := range r.kvWrite {
		pub.add("$KV." + b + ".>")
	}
	for b, keys := range r.kvFollow {
		sub.add("$KV." + b + "." + keys)
	}
	for _, b := range r.kvList {
		stream := "KV_" + b
		pub.add("$JS.API.CONSUMER.CREATE." + stream + ".>")
		pub.add("$JS.API.CONSUMER.DELETE." + stream + ".>")
		pub.add("$JS.API.CONSUMER.INFO." + stream + ".>")
		pub.add("$JS.FC." + stream + ".>")
	}
	for _, s := range r.streamReads {
		pub.add("$JS.API.STREAM.INFO." + s)
		pub.add("$JS.API.CONSUMER.CREATE." + s + ".>")
		pub.add("$JS.API.CONSUMER.DELETE." + s + ".>")
		pub.add("$JS.API.CONSUMER.INFO." + s + ".>")
		pub.add("$JS.API.CONSUMER.MSG.NEXT." + s + ".>")
	}
	for _, s := range r.subjectReads {
		pub.add("$JS.API.STREAM.INFO." + s)
		pub.add("$JS.API.DIRECT.GET." + s)
		pub.add("$JS.API.STREAM.MSG.GET." + s)
	}
	deny := set{}
	for _, s := range r.streamReads {
		// Ephemeral ordered consumers need wildcards on the stream; never let them reach another stage's
		// durable (pulling from it would steal that stage's messages, creating it would change it).
		for _, c := range contracts.Consumers() {
			if c.Stream != s || c.Stage == r.stage {
				continue
			}
			for _, api := range []string{"CONSUMER.MSG.NEXT", "CONSUMER.CREATE", "CONSUMER.DURABLE.CREATE", "CONSUMER.DELETE"} {
				deny.add("$JS.API." + api + "." + s + "." + c.Durable)
			}
			deny.add("$JS.API.CONSUMER.CREATE." + s + "." + c.Durable + ".>")
			deny.add("$JS.ACK." + s + "." + c.Durable + ".>")
		}
	}
	for _, root := range r.lastOf {
		st := streamOf(root)
		pub.add("$JS.API.STREAM.INFO." + st)
		pub.add("$JS.API.DIRECT.GET." + st + "." + root + ".>")
	}
	for _, s := range r.streamInfo {
		pub.add("$JS.API.STREAM.INFO." + s)
	}
	if r.redrive {
		for _, st := range contracts.Streams() {
			if st.Name == contracts.StreamDeadLetter {
				continue
			}
			for _, subj := range st.Subjects {
				pub.add(subj)
			}
		}
		dlq := contracts.StreamDeadLetter
		for _, api := range []string{"STREAM.MSG.GET.", "DIRECT.GET.", "STREAM.MSG.DELETE.", "STREAM.PURGE.", "STREAM.INFO."} {
			pub.add("$JS.API." + api + dlq)
		}
	}
	if r.allLag {
		for _, c := range contracts.Consumers() {
			pub.add("$JS.API.CONSUMER.INFO." + c.Stream + "." + c.Durable)
		}
	}
	comment := r.stage + ": publishes " + orNone(r.publishes)
	if r.redrive {
		comment += "; re-drives and purges dead letters (any event subject)"
	}
	if len(consumes) > 0 {
		comment += "; consumes " + strings.Join(consumes, ", ")
	}
	if kv := append(append([]string{}, r.kvWrite...), r.kvRead...); len(kv) > 0 {
		comment += "; KV " + strings.Join(kv, ", ")
	}
	u := User{Name: r.stage, Comment: comment, Publish: pub.sorted(), Subscribe: sub.sorted()}
	if len(deny) > 0 {
		u.PublishDeny = deny.sorted()
	}
	return u
}

func streamNames() []string {
	var out []string
	for _, s := range contracts.Streams() {
		out = append(out, s.Name)
	}
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "no events"
	}
	return strings.Join(s, ", ")
}

type set map[string]struct{}

func (s set) add(v string) { s[v] = struct{}{} }

func (s set) sorted() []string {
	out := make([]string, 0, len(s))
	for v := range s {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

const header = "Code generated by `go run ./deploy/natsperm` from contracts/; DO NOT EDIT."

// Conf renders the NATS server config fragment: the COSELL account with JetStream and its users.
// Passwords are variable references resolved from the server's environment, never values.
func Conf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", header)
	b.WriteString("# One user per cosell service, allowed exactly its subjects, durable consumers and KV buckets.\n")
	fmt.Fprintf(&b, "# Passwords come from the environment (the Secret %s), never from this file.\n", UsersSecret)
	fmt.Fprintf(&b, "accounts {\n  %s {\n    jetstream: enabled\n    users: [\n", Account)
	for _, u := range Users() {
		fmt.Fprintf(&b, "      # %s\n", u.Comment)
		fmt.Fprintf(&b, "      {\n        user: %q\n        password: $%s\n", u.Name, u.PasswordVar())
		if u.Publish != nil || u.Subscribe != nil {
			b.WriteString("        permissions: {\n")
			writeList(&b, "publish", u.Publish, u.PublishDeny)
			writeList(&b, "subscribe", u.Subscribe, nil)
			b.WriteString("        }\n")
		}
		b.WriteString("      }\n")
	}
	b.WriteString("    ]\n  }\n}\n")
	return b.String()
}

func writeList(b *strings.Builder, name string, allow, deny []string) {
	fmt.Fprintf(b, "          %s: {\n", name)
	for _, l := range []struct {
		key      string
		subjects []string
	}{{"allow", allow}, {"deny", deny}} {
		if len(l.subjects) == 0 {
			continue
		}
		fmt.Fprintf(b, "            %s: [\n", l.key)
		for _, s := range l.subjects {
			fmt.Fprintf(b, "              %q\n", s)
		}
		b.WriteString("            ]\n")
	}
	b.WriteString("          }\n")
}

// Values renders Helm values for the official NATS chart (1.x) that mount Conf() and pass each user's
// password from the Secret into the server's environment.
func Values() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", header)
	b.WriteString("# Use together with values.yaml: helm upgrade --install nats nats/nats -n nats -f values.yaml -f values-auth.yaml\n")
	fmt.Fprintf(&b, "config:\n  merge:\n    $include: %s\n", ConfFile)
	fmt.Fprintf(&b, "configMap:\n  merge:\n    data:\n      %s: |\n", ConfFile)
	for _, line := range strings.Split(strings.TrimSuffix(Conf(), "\n"), "\n") {
		if line == "" {
			b.WriteString("\n")
			continue
		}
		fmt.Fprintf(&b, "        %s\n", line)
	}
	b.WriteString("container:\n  env:\n")
	for _, u := range Users() {
		fmt.Fprintf(&b, "    %s:\n      valueFrom:\n        secretKeyRef:\n          name: %s\n          key: %s\n",
			u.PasswordVar(), UsersSecret, u.Name)
	}
	return b.String()
}

// Files maps each generated file name to its content.
func Files() map[string]string {
	return map[string]string{ConfFile: Conf(), ValuesFile: Values()}
}
