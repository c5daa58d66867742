package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

const doctorSummary = "check Salesforce, Partner Center, the webhook and NATS before going live; print each fix"

// doctorGroups are the check groups, in the order they run.
var doctorGroups = []string{"sf", "pc", "webhook", "nats"}

// check is one prerequisite's verdict: Problem and Fix are empty when it holds.
type check struct {
	Group, Name, Problem, Fix string
}

// doctor runs the checks against the configured systems.
type doctor struct {
	out     []check
	webhook string
	pcWrite string
}

func (d *doctor) ok(group, name string) { d.out = append(d.out, check{Group: group, Name: name}) }

func (d *doctor) fail(group, name, problem, fix string) {
	d.out = append(d.out, check{Group: group, Name: name, Problem: problem, Fix: fix})
}

func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("doctor", doctorSummary+`

Configured by the same environment as the services: COSELL_SF_* (Salesforce), COSELL_PC_* (Partner Center),
COSELL_NATS_* (NATS; run it as the provisioning user cosell-admin, which may read every stream's settings).
Exit code 0 when every check passes, 1 otherwise`, stderr)
	only := fs.String("only", strings.Join(doctorGroups, ","), "check groups to run: "+strings.Join(doctorGroups, ","))
	webhookURL := fs.String("webhook-url", "", "this deployment's public webhook URL (e.g. https://cosell.example.com/webhooks/partner-center); required by the webhook check")
	pcWrite := fs.String("pc-write-referral", "", "also prove Partner Center write access: re-write this referral id's own notes unchanged (If-Match), changing nothing")
	provision := fs.Bool("provision", false, "create or update every stream, durable and KV bucket first (the provisioning Job does this as cosell-admin)")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if done, code := parse(fs, args); done {
		return code
	}
	groups := split(*only)
	for _, g := range groups {
		if !slices.Contains(doctorGroups, g) {
			fmt.Fprintf(stderr, "cosell doctor: unknown check group %q (use %s)\n", g, strings.Join(doctorGroups, ","))
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	d := &doctor{webhook: *webhookURL, pcWrite: *pcWrite}
	for _, g := range groups {
		switch g {
		case "sf":
			d.salesforce()
		case "pc":
			d.partnerCenter(ctx)
		case "webhook":
			d.webhookRegistration(ctx)
		case "nats":
			d.nats(ctx, *provision)
		}
	}
	return d.report(stdout)
}

func (d *doctor) report(w io.Writer) int {
	failed := 0
	for _, c := range d.out {
		if c.Problem == "" {
			fmt.Fprintf(w, "ok    %-8s %s\n", c.Group, c.Name)
			continue
		}
		failed++
		fmt.Fprintf(w, "FAIL  %-8s %s\n      problem: %s\n      fix:     %s\n", c.Group, c.Name, c.Problem, c.Fix)
	}
	if failed > 0 {
		fmt.Fprintf(w, "\n%d of %d checks failed\n", failed, len(d.out))
		return 1
	}
	fmt.Fprintf(w, "\nall %d checks passed\n", len(d.out))
	return 0
}

const fixMetadata = "deploy cosell's metadata to the org: sf project deploy start --source-dir deploy/salesforce/force-app --target-org <alias> (docs/deploy.md)"

// salesforce checks the login and that every object and field cosell reads is installed and readable:
// each query names them, so Salesforce itself names a missing one (INVALID_FIELD / INVALID_TYPE).
func (d *doctor) salesforce() {
	var cfg sfapi.Config
	if err := platform.LoadConfig(&cfg, nil); err != nil {
		d.fail("sf", "configuration", err.Error(), "set COSELL_SF_URL, COSELL_SF_CLIENT_ID and COSELL_SF_CLIENT_SECRET (the Secret cosell-salesforce)")
		return
	}
	client, err := sfapi.New(cfg)
	if err != nil {
		d.fail("sf", "credentials ("+cfg.Domain+")", err.Error(),
			"check the connected app's consumer key and secret (Secret cosell-salesforce), that the client-credentials flow is enabled with a run-as integration user, and that COSELL_SF_URL is the org's My Domain (test.salesforce.com for a sandbox)")
		return
	}
	d.ok("sf", "credentials ("+cfg.Domain+")")
	queries := []struct{ name, soql, fix string }{
		{"Opportunity custom fields", "SELECT Id, " + strings.Join([]string{sf.FieldSyncWithPartnerCenter, sf.FieldReferralIdentifier,
			sf.FieldReferralLink, sf.FieldHowCanMicrosoftHelp, sf.FieldSyncStatus, sf.FieldAudit}, ", ") + " FROM Opportunity LIMIT 1",
			fixMetadata + "; then give the integration user read/edit field-level security on them"},
		{"Microsoft Partner Center Solutions object", "SELECT Id, Name, Solution_Id__c, Opportunity__c FROM " + sf.ObjectMicrosoftSolution + " LIMIT 1",
			fixMetadata + "; then give the integration user read/create/edit on " + sf.ObjectMicrosoftSolution},
		{"Opportunity Teams", "SELECT Id, OpportunityId, UserId, TeamMemberRole FROM " + sf.ObjectOpportunityTeamMember + " LIMIT 1",
			"enable team selling: Setup → Opportunity Team Settings → Enable Team Selling, and give the integration user read on Opportunity Team Members"},
		{"Notes", "SELECT Id, Title, Body, ParentId FROM Note LIMIT 1",
			"give the integration user read/create on Notes (cosell syncs the Opportunity's Notes)"},
	}
	for _, q := range queries {
		if _, err := client.Query(q.soql); err != nil {
			d.fail("sf", q.name, err.Error(), q.fix)
			continue
		}
		d.ok("sf", q.name)
	}
}

func (d *doctor) pcClient(ctx context.Context, group string) *pcapi.Client {
	var cfg stage.PCConfig
	if err := platform.LoadConfig(&cfg, nil); err != nil {
		d.fail(group, "configuration", err.Error(), "set COSELL_PC_TOKEN_URL, COSELL_PC_CLIENT_ID and COSELL_PC_CLIENT_SECRET (the Secret cosell-partner-center)")
		return nil
	}
	client, err := cfg.Client(ctx, slog.New(slog.DiscardHandler))
	if err != nil {
		d.fail(group, "client", err.Error(), "check COSELL_PC_URL, COSELL_PC_WEBHOOKS_URL and COSELL_PC_TOKEN_URL")
		return nil
	}
	return client
}

// partnerCenter checks the app registration can read referrals, and write them when asked to.
func (d *doctor) partnerCenter(ctx context.Context) {
	client := d.pcClient(ctx, "pc")
	if client == nil {
		return
	}
	errStop := errors.New("one is enough")
	err := client.ListReferrals(ctx, pcapi.ListOptions{Top: 1}, func(pc.Referral) error { return errStop })
	if err != nil && !errors.Is(err, errStop) {
		d.fail("pc", "credentials and referral read", err.Error(),
			"check the Entra ID app registration (COSELL_PC_CLIENT_ID / COSELL_PC_CLIENT_SECRET, tenant in COSELL_PC_TOKEN_URL) and that it is added to Partner Center with the Referral admin role")
		return
	}
	d.ok("pc", "credentials and referral read")
	if d.pcWrite == "" {
		d.ok("pc", "referral write not checked (give --pc-write-referral ID to prove it)")
		return
	}
	r, err := client.GetReferral(ctx, d.pcWrite)
	if err != nil {
		d.fail("pc", "referral write", "cannot read referral "+d.pcWrite+": "+err.Error(), "pass the id of a referral this partner owns")
		return
	}
	notes := ""
	if r.Details != nil {
		notes = r.Details.Notes
	}
	if _, err := client.PatchReferral(ctx, r.ID, r.ETag, []pc.PatchOp{{Op: "replace", Path: "/details/notes", Value: notes}}); err != nil {
		d.fail("pc", "referral write", err.Error(), "give the app registration the Referral admin role in Partner Center (write access to referrals)")
		return
	}
	d.ok("pc", "referral write (referral "+r.ID+" re-written unchanged)")
}

// webhookRegistration checks Partner Center posts all four referral events to this deployment.
func (d *doctor) webhookRegistration(ctx context.Context) {
	events := split(defaultEvents)
	fix := "cosell pc webhook register --url " + orPlaceholder(d.webhook) + " --overwrite"
	if d.webhook == "" {
		d.fail("webhook", "registration", "--webhook-url was not given, so the registration cannot be compared with this deployment",
			"re-run with --webhook-url https://<your ingress host>/webhooks/partner-center")
		return
	}
	client := d.pcClient(ctx, "webhook")
	if client == nil {
		return
	}
	reg, err := client.GetWebhook(ctx)
	if pcapi.IsNotFound(err) {
		d.fail("webhook", "registration", "no webhook is registered", fix)
		return
	}
	if err != nil {
		d.fail("webhook", "registration", err.Error(), "check the Partner Center credentials (cosell doctor --only pc)")
		return
	}
	if reg.WebhookURL != d.webhook {
		d.fail("webhook", "registration URL", fmt.Sprintf("Partner Center posts to %s, not to %s", reg.WebhookURL, d.webhook), fix)
	} else {
		d.ok("webhook", "registration URL "+reg.WebhookURL)
	}
	var missing []string
	for _, e := range events {
		if !slices.Contains(reg.WebhookEvents, e) {
			missing = append(missing, e)
		}
	}
	if len(missing) > 0 {
		d.fail("webhook", "registered events", "not registered for "+strings.Join(missing, ", "), fix)
		return
	}
	d.ok("webhook", "registered events "+strings.Join(events, ", "))
}

func orPlaceholder(s string) string {
	if s == "" {
		return "https://<host>/webhooks/partner-center"
	}
	return s
}

const fixProvision = "run the provisioning Job (kubectl -n <ns> delete job cosell-provision --ignore-not-found && kubectl apply -k deploy/k8s/overlays/<env>), or `cosell doctor --provision --only nats` as cosell-admin"

// nats checks every stream, durable and bucket exists with the settings Provision applies.
func (d *doctor) nats(ctx context.Context, provision bool) {
	var cfg platform.BusConfig
	if err := platform.LoadConfig(&cfg, nil); err != nil {
		d.fail("nats", "configuration", err.Error(), "fix the COSELL_NATS_* / COSELL_STREAM_* variables")
		return
	}
	if cfg.URL == "" {
		d.fail("nats", "configuration", "COSELL_NATS_URL is empty (the doctor checks a running NATS, not an embedded one)",
			"set COSELL_NATS_URL, e.g. nats://nats.nats.svc.cluster.local:4222, and COSELL_NATS_USER=cosell-admin with its password")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	bus, err := platform.Connect(cctx, cfg, "cosell-doctor", nil, nil)
	if err != nil {
		d.fail("nats", "connection", err.Error(),
			"check COSELL_NATS_URL, that the NetworkPolicy allows port 4222 to the nats namespace, and the user/password (Secret cosell-nats)")
		return
	}
	defer bus.Close()
	d.ok("nats", "connection "+bus.Conn.ConnectedUrlRedacted())
	if provision {
		if err := bus.Provision(ctx); err != nil {
			d.fail("nats", "provision", err.Error(), "provision as the admin user cosell-admin (COSELL_NATS_USER), which may create streams")
			return
		}
		d.ok("nats", "provisioned streams, durables and buckets")
	}
	for _, s := range contracts.Streams() {
		d.stream(ctx, bus, s)
	}
	for _, c := range contracts.Consumers() {
		d.consumer(ctx, bus, c)
	}
	for _, b := range contracts.Buckets() {
		d.bucket(ctx, bus, b)
	}
}

func (d *doctor) stream(ctx context.Context, bus *platform.Bus, spec contracts.StreamSpec) {
	name := "stream " + spec.Name
	st, err := bus.JS.Stream(ctx, spec.Name)
	if err != nil {
		d.fail("nats", name, err.Error(), fixProvision)
		return
	}
	info, err := st.Info(ctx)
	if err != nil {
		d.fail("nats", name, err.Error(), "grant the doctor's NATS user $JS.API.STREAM.INFO (run it as cosell-admin)")
		return
	}
	got, want := info.Config, bus.StreamConfig(spec)
	var diffs []string
	diff := func(field string, g, w any) {
		if fmt.Sprint(g) != fmt.Sprint(w) {
			diffs = append(diffs, fmt.Sprintf("%s is %v, want %v", field, g, w))
		}
	}
	diff("subjects", got.Subjects, want.Subjects)
	diff("retention", got.Retention, want.Retention)
	diff("storage", got.Storage, want.Storage)
	diff("replicas", got.Replicas, want.Replicas)
	diff("max age", got.MaxAge, want.MaxAge)
	diff("duplicate window", got.Duplicates, want.Duplicates)
	diff("allow direct", got.AllowDirect, want.AllowDirect)
	if info.Cluster != nil && len(info.Cluster.Replicas)+1 < got.Replicas {
		diffs = append(diffs, fmt.Sprintf("only %d of %d replicas are placed", len(info.Cluster.Replicas)+1, got.Replicas))
	}
	if len(diffs) > 0 {
		d.fail("nats", name, strings.Join(diffs, "; "), fixProvision+" (COSELL_STREAM_REPLICAS / COSELL_STREAM_MAX_AGE / COSELL_DUPLICATE_WINDOW set what is wanted)")
		return
	}
	d.ok("nats", fmt.Sprintf("%s (R%d, max age %s)", name, got.Replicas, got.MaxAge))
}

func (d *doctor) consumer(ctx context.Context, bus *platform.Bus, spec contracts.ConsumerSpec) {
	name := "durable " + spec.Stream + "/" + spec.Durable
	cons, err := bus.JS.Consumer(ctx, spec.Stream, spec.Durable)
	if err != nil {
		d.fail("nats", name, err.Error(), fixProvision)
		return
	}
	got, want := cons.CachedInfo().Config, bus.ConsumerConfig(spec)
	var diffs []string
	diff := func(field string, g, w any) {
		if fmt.Sprint(g) != fmt.Sprint(w) {
			diffs = append(diffs, fmt.Sprintf("%s is %v, want %v", field, g, w))
		}
	}
	filters := got.FilterSubjects
	if len(filters) == 0 && got.FilterSubject != "" {
		filters = []string{got.FilterSubject}
	}
	diff("filter subjects", filters, want.FilterSubjects)
	diff("ack policy", got.AckPolicy, want.AckPolicy)
	diff("ack wait", got.AckWait, want.AckWait)
	diff("max deliver", got.MaxDeliver, want.MaxDeliver)
	diff("max ack pending", got.MaxAckPending, want.MaxAckPending)
	if len(diffs) > 0 {
		d.fail("nats", name, strings.Join(diffs, "; "), fixProvision+" (COSELL_ACK_WAIT / COSELL_MAX_DELIVER set what is wanted)")
		return
	}
	d.ok("nats", name)
}

func (d *doctor) bucket(ctx context.Context, bus *platform.Bus, bucket string) {
	name := "bucket " + bucket
	kv, err := bus.JS.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		d.fail("nats", name, "does not exist", fixProvision)
		return
	}
	if err != nil {
		d.fail("nats", name, err.Error(), fixProvision)
		return
	}
	st, err := kv.Status(ctx)
	if err != nil {
		d.fail("nats", name, err.Error(), "run the doctor as cosell-admin")
		return
	}
	want := bus.Config().Replicas
	if want < 1 {
		want = 1
	}
	if got := st.Config().Replicas; got != want {
		d.fail("nats", name, fmt.Sprintf("replicas are %d, want %d", got, want), fixProvision)
		return
	}
	d.ok("nats", fmt.Sprintf("%s (R%d, history %d)", name, want, st.History()))
}
