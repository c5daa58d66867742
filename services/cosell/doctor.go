package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/sforg"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

const doctorSummary = "check Salesforce, Partner Center, the webhook and NATS before going live; print each fix"

// doctorGroups are the check groups, in the order they run.
var doctorGroups = []string{"sf", "pc", "webhook", "nats"}

// check is one prerequisite's verdict: Problem and Fix are empty when it holds.
type check struct {
	Group   string `json:"group"`
	Name    string `json:"name"`
	Problem string `json:"problem,omitempty"`
	Fix     string `json:"fix,omitempty"`
}

// doctorReport is cosell doctor as data.
type doctorReport struct {
	Passed bool    `json:"passed"`
	Failed int     `json:"failed"`
	Checks []check `json:"checks"`
}

// doctor runs the checks against the configured systems.
type doctor struct {
	// lookup reads a setting: --nats / --nats-creds / --nats-login / --config, then the environment.
	lookup  func(string) (string, bool)
	out     []check
	webhook string
	pcWrite string
}

func (d *doctor) ok(group, name string) { d.out = append(d.out, check{Group: group, Name: name}) }

func (d *doctor) fail(group, name, problem, fix string) {
	d.out = append(d.out, check{Group: group, Name: name, Problem: problem, Fix: fix})
}

func newDoctorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: doctorSummary,
		Long: doctorSummary + `

Configured by the same environment as the services (or --config, --nats …): COSELL_SF_* (Salesforce),
COSELL_PC_* (Partner Center), COSELL_NATS_* (NATS; run it as the provisioning user cosell-admin, which may
read every stream's settings).
Exit code 0 when every check passes, 1 otherwise.`,
		Example: "  cosell doctor --only sf,pc\n  cosell doctor --webhook-url https://cosell.example.com/webhooks/partner-center\n  cosell doctor --provision --only nats",
		Args:    noArgs,
	}
	fs := cmd.Flags()
	af := addAdminFlags(fs)
	only := fs.StringSlice("only", doctorGroups, "check groups to run: "+strings.Join(doctorGroups, ","))
	webhookURL := fs.String("webhook-url", "", "this deployment's public webhook URL (e.g. https://cosell.example.com/webhooks/partner-center); required by the webhook check")
	pcWrite := fs.String("pc-write-referral", "", "also prove Partner Center write access: re-write this referral id's own notes unchanged (If-Match), changing nothing")
	provision := fs.Bool("provision", false, "create or update every stream, durable and KV bucket first (the provisioning Job does this as cosell-admin)")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	_ = cmd.RegisterFlagCompletionFunc("only", cobra.FixedCompletions(doctorGroups, cobra.ShellCompDirectiveNoFileComp))
	out := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		for _, g := range *only {
			if !slices.Contains(doctorGroups, g) {
				return usagef("unknown check group %q (use %s)", g, strings.Join(doctorGroups, ","))
			}
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), *timeout)
		defer cancel()
		d := &doctor{lookup: af.lookup, webhook: *webhookURL, pcWrite: *pcWrite}
		for _, g := range *only {
			switch g {
			case "sf":
				d.salesforce(ctx)
			case "pc":
				d.partnerCenter(ctx)
			case "webhook":
				d.webhookRegistration(ctx)
			case "nats":
				d.nats(ctx, *provision)
			}
		}
		if code := d.report(cmd.OutOrStdout(), out); code != exitOK {
			return exitCode(code)
		}
		return nil
	}
	return cmd
}

func (d *doctor) report(w io.Writer, out *output) int {
	failed := 0
	for _, c := range d.out {
		if c.Problem != "" {
			failed++
		}
	}
	if out.structured() {
		out.print(w, doctorReport{Checks: d.out, Failed: failed, Passed: failed == 0}, nil)
		if failed > 0 {
			return exitFailure
		}
		return exitOK
	}
	for _, c := range d.out {
		if c.Problem == "" {
			fmt.Fprintf(w, "ok    %-8s %s\n", c.Group, c.Name)
			continue
		}
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

// salesforce checks the login settings before calling (the combinations Salesforce refuses), the login
// itself (each refusal of the token endpoint with its fix), the org's shape from describe (every field cosell
// and the mapping read; multi- or single-currency against the mapping's currency), and that every object
// and field cosell reads is readable: each query names them, so Salesforce itself names a missing one.
func (d *doctor) salesforce(ctx context.Context) {
	var cfg sfapi.Config
	if err := platform.LoadConfig(&cfg, d.lookup); err != nil {
		d.fail("sf", "configuration", err.Error(), "set COSELL_SF_URL, COSELL_SF_CLIENT_ID and the login flow's settings (docs/connect.md#salesforce; the Secret cosell-salesforce)")
		return
	}
	var se *sfapi.SettingsError
	if err := cfg.CheckLogin(); errors.As(err, &se) {
		d.fail("sf", "login settings", se.Problem, se.Fix)
		return
	}
	d.ok("sf", "login settings ("+cfg.Flow()+" at "+cfg.Domain+")")
	client, err := sfapi.New(ctx, cfg)
	if err != nil {
		var le *sfapi.LoginError
		fix := "check COSELL_SF_URL, COSELL_SF_CLIENT_ID and the login flow's settings (docs/connect.md#salesforce)"
		if errors.As(err, &le) && le.Fix != "" {
			fix = le.Fix
		}
		d.fail("sf", "login ("+cfg.Domain+")", err.Error(), fix)
		return
	}
	d.ok("sf", "login ("+cfg.Domain+")")
	d.salesforceOrg(ctx, client)
	queries := []struct{ name, soql, fix string }{
		{"Opportunity custom fields", "SELECT Id, " + strings.Join([]string{sf.FieldSyncWithPartnerCenter, sf.FieldReferralIdentifier,
			sf.FieldReferralLink, sf.FieldHowCanMicrosoftHelp, sf.FieldSyncStatus, sf.FieldAudit, sf.FieldReferralVisibility,
			sf.FieldMicrosoftCRMIdentifier}, ", ") + " FROM Opportunity LIMIT 1",
			fixMetadata + "; then give the integration user read/edit field-level security on them"},
		{"Microsoft Partner Center Solutions object", "SELECT Id, Name, Solution_Id__c, Opportunity__c FROM " + sf.ObjectMicrosoftSolution + " LIMIT 1",
			fixMetadata + "; then give the integration user read/create/edit on " + sf.ObjectMicrosoftSolution},
		{"Opportunity Teams", "SELECT Id, OpportunityId, UserId, TeamMemberRole FROM " + sf.ObjectOpportunityTeamMember + " LIMIT 1",
			"enable team selling: Setup → Opportunity Team Settings → Enable Team Selling, and give the integration user read on Opportunity Team Members"},
		{"Notes", "SELECT Id, Title, Body, ParentId FROM Note LIMIT 1",
			"give the integration user read/create on Notes (cosell syncs the Opportunity's Notes)"},
	}
	for _, q := range queries {
		if _, err := client.Query(ctx, q.soql); err != nil {
			d.fail("sf", q.name, err.Error(), q.fix)
			continue
		}
		d.ok("sf", q.name)
	}
}

// salesforceOrg checks the org's shape against what cosell and the mapping read (the same fit sf-ingest
// makes at start-up) and its currencies against the mapping's default currency.
func (d *doctor) salesforceOrg(ctx context.Context, client *sfapi.Client) {
	var mc mapping.Config
	if err := platform.LoadConfig(&mc, d.lookup); err != nil {
		d.fail("sf", "mapping", err.Error(), "fix COSELL_MAPPING_FILE / the COSELL_STAGE_* settings")
		return
	}
	m, err := mapping.Load(mc)
	if err != nil {
		d.fail("sf", "mapping", err.Error(), "cosell mapping validate "+mc.File)
		return
	}
	org, err := sforg.Discover(ctx, client, sf.ObjectOpportunity)
	if err != nil {
		d.fail("sf", "org describe", err.Error(), "give the integration user the permission set Cosell_Integration (API Enabled, read on Opportunity)")
		return
	}
	var mf *sforg.MissingFields
	if _, err := observed.Fit(ctx, org, m.SalesforceFields()); errors.As(err, &mf) {
		d.fail("sf", "fields cosell and the mapping read", fmt.Sprintf("the org has no %s field %s", mf.Object, strings.Join(mf.Fields, ", ")), sforg.FixMissingField)
	} else if err != nil {
		d.fail("sf", "fields cosell and the mapping read", err.Error(), "check the integration user's access (permission set Cosell_Integration)")
	} else {
		d.ok("sf", "fields cosell and the mapping read")
	}
	switch {
	case org.MultiCurrency(ctx):
		d.ok("sf", "currencies (multi-currency org, corporate currency "+org.Currency+")")
	case !strings.EqualFold(m.DefaultCurrency, org.Currency):
		d.fail("sf", "currencies", fmt.Sprintf("the org is single-currency (%s) but the mapping's default currency is %s: Opportunities created from referrals without a currency would be refused", org.Currency, m.DefaultCurrency),
			fmt.Sprintf("set defaultCurrency: %s in the mapping (or COSELL_DEFAULT_CURRENCY=%s), or enable multiple currencies in Setup → Company Information → Currencies", org.Currency, org.Currency))
	default:
		d.ok("sf", "currencies (single-currency org, "+org.Currency+"; referrals in other currencies are refused with the reason)")
	}
}

func (d *doctor) pcClient(ctx context.Context, group string) *pcapi.Client {
	client, _, err := pcClient(ctx, d.lookup, d.connect)
	if err != nil {
		problem, fix := pcConfigFix(err)
		d.fail(group, "configuration", problem, fix)
		return nil
	}
	return client
}

// connect opens the NATS connection the doctor reads the Partner Center token store over.
func (d *doctor) connect(ctx context.Context) (*platform.Bus, error) {
	var cfg platform.BusConfig
	if err := platform.LoadConfig(&cfg, d.lookup); err != nil {
		return nil, err
	}
	if cfg.URL == "" {
		return nil, errors.New("COSELL_NATS_URL is empty")
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return platform.Connect(cctx, cfg, "cosell-doctor", nil, nil)
}

// pcConfigFix names the fix for a Partner Center configuration the client refuses.
func pcConfigFix(err error) (problem, fix string) {
	msg := err.Error()
	switch {
	case errors.Is(err, stage.ErrAppOnly):
		return "app-only (client credentials) configuration: COSELL_PC_TOKEN_URL is set, and the Referrals API refuses app-only tokens",
			"unset COSELL_PC_TOKEN_URL, set COSELL_PC_AUTHORITY=https://login.microsoftonline.com/<tenant id>, then sign in once: cosell pc login (docs/connect.md)"
	case strings.Contains(msg, "COSELL_PC_AUTHORITY"), strings.Contains(msg, "COSELL_PC_CLIENT_ID"):
		return msg, "set COSELL_PC_AUTHORITY=https://login.microsoftonline.com/<tenant id> and COSELL_PC_CLIENT_ID=<the app registration's Application (client) ID> (docs/connect.md)"
	case strings.Contains(msg, "COSELL_PC_AUTH"):
		return msg, "set COSELL_PC_AUTH=refresh-token and run cosell pc login (or password with COSELL_PC_USERNAME / COSELL_PC_PASSWORD for an account without MFA)"
	case strings.Contains(msg, "NATS"), strings.Contains(msg, contracts.BucketPCCredentials):
		return msg, "set COSELL_NATS_URL (and COSELL_NATS_USER=cosell-admin with its password): the Partner Center refresh token is kept in the " +
			contracts.BucketPCCredentials + " bucket; create it with cosell doctor --provision --only nats"
	}
	return msg, "check the COSELL_PC_* settings (docs/connect.md)"
}

// pcCallFix names the fix for a Partner Center call refused for authentication reasons.
func pcCallFix(err error) (problem, fix string) {
	var auth *pcapi.AuthError
	if errors.As(err, &auth) {
		if auth.Code == "no_refresh_token" {
			return "no Partner Center refresh token is stored", "sign in once as the Referrals Admin user: cosell pc login"
		}
		fix := auth.Fix
		if fix == "" {
			fix = "cosell pc login"
		}
		problem := *auth
		problem.Fix = ""
		return problem.Error(), fix
	}
	var api *pcapi.APIError
	if errors.As(err, &api) {
		switch {
		case api.Status == http.StatusForbidden && strings.Contains(api.Message, "App-only"):
			return "Partner Center refused an app-only token: " + api.Message,
				"use delegated credentials: unset COSELL_PC_TOKEN_URL, set COSELL_PC_AUTH=refresh-token and run cosell pc login"
		case api.Status == http.StatusUnauthorized && strings.Contains(api.Message, "audience"):
			return "wrong token audience: " + api.Message,
				"COSELL_PC_URL must be the Referrals host (https://api.partner.microsoft.com) and COSELL_PC_WEBHOOKS_URL the webhooks host (https://api.partnercenter.microsoft.com), not swapped"
		case api.Status == http.StatusForbidden:
			return err.Error(), "give the signed-in user the Referrals Admin role in Partner Center (Account settings → User management), then cosell pc login as that user"
		case api.Status == http.StatusUnauthorized:
			return err.Error(), "check that the app registration has the delegated Partner Center user_impersonation permission with admin consent, then cosell pc login"
		}
	}
	return err.Error(), "check COSELL_PC_URL and the network path to Partner Center"
}

// pcSignIn reports the stored refresh token: present, not refused, and not about to expire.
func (d *doctor) pcSignIn(ctx context.Context) {
	var cfg stage.PCConfig
	if err := platform.LoadConfig(&cfg, d.lookup); err != nil || cfg.Auth != string(pcapi.AuthRefreshToken) || cfg.TokenURL != "" {
		if err == nil && cfg.Auth == string(pcapi.AuthPassword) {
			d.ok("pc", "sign-in: password grant for "+cfg.Username+" (works only without MFA; prefer COSELL_PC_AUTH=refresh-token and cosell pc login)")
		}
		return
	}
	bus, err := d.connect(ctx)
	if err != nil {
		return // reported by the configuration check
	}
	defer bus.Close()
	store, err := stage.TokenStore(ctx, bus)
	if err != nil {
		return
	}
	st, _, err := store.Load(ctx)
	switch {
	case errors.Is(err, pcapi.ErrNoRefreshToken):
		d.fail("pc", "sign-in", "no Partner Center refresh token is stored in "+contracts.BucketPCCredentials,
			"sign in once as the Referrals Admin user: cosell pc login (docs/connect.md)")
		return
	case err != nil:
		d.fail("pc", "sign-in", err.Error(), "cosell pc login")
		return
	case st.ClientID != "" && st.ClientID != cfg.ClientID:
		d.fail("pc", "sign-in", fmt.Sprintf("the stored refresh token was issued to client %s, but COSELL_PC_CLIENT_ID is %s", st.ClientID, cfg.ClientID),
			"run cosell pc login with this COSELL_PC_CLIENT_ID")
		return
	case st.LastError != "":
		d.fail("pc", "sign-in", "Entra ID refused the stored refresh token: "+st.LastError,
			"sign in again as the Referrals Admin user: cosell pc login")
		return
	}
	left := time.Until(st.ExpiresAt())
	if left < pcRefreshWarn {
		d.fail("pc", "sign-in", fmt.Sprintf("the refresh token of %s expires %s (unused for 90 days since %s)", orUnknown(st.User),
			st.ExpiresAt().UTC().Format(time.RFC3339), st.RotatedAt.UTC().Format(time.RFC3339)),
			"start pc-ingest or pc-writer (each use renews it) or sign in again: cosell pc login")
		return
	}
	d.ok("pc", fmt.Sprintf("sign-in: refresh token of %s, renewed %s, expires if unused %s", orUnknown(st.User),
		st.RotatedAt.UTC().Format(time.RFC3339), st.ExpiresAt().UTC().Format("2006-01-02")))
}

// pcRefreshWarn is how early the doctor (and the alert rule) warns before the refresh token expires.
const pcRefreshWarn = 14 * 24 * time.Hour

func orUnknown(s string) string {
	if s == "" {
		return "the signed-in user"
	}
	return s
}

// partnerCenter checks the configuration and sign-in, that the delegated token reads referrals (Referrals host
// audience) and the webhook registration (webhooks host audience), and writes referrals when asked to.
func (d *doctor) partnerCenter(ctx context.Context) {
	client := d.pcClient(ctx, "pc")
	if client == nil {
		return
	}
	d.pcSignIn(ctx) // before the first call, which renews the token: report how close to expiry it was
	errStop := errors.New("one is enough")
	err := client.ListReferrals(ctx, pcapi.ListOptions{Top: 1}, func(pc.Referral) error { return errStop })
	if err != nil && !errors.Is(err, errStop) {
		problem, fix := pcCallFix(err)
		d.fail("pc", "referral read (api.partner.microsoft.com audience)", problem, fix)
		return
	}
	d.ok("pc", "referral read (api.partner.microsoft.com audience)")
	if _, err := client.GetWebhook(ctx); err != nil && !pcapi.IsNotFound(err) {
		problem, fix := pcCallFix(err)
		d.fail("pc", "webhook API (api.partnercenter.microsoft.com audience)", problem, fix)
	} else {
		d.ok("pc", "webhook API (api.partnercenter.microsoft.com audience)")
	}
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
		d.fail("pc", "referral write", err.Error(), "give the signed-in user the Referrals Admin role in Partner Center (write access to referrals), then cosell pc login as that user")
		return
	}
	d.ok("pc", "referral write (referral "+r.ID+" re-written unchanged)")
}

// webhookRegistration checks Partner Center posts all four referral events to this deployment.
func (d *doctor) webhookRegistration(ctx context.Context) {
	events := defaultEvents
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
	if err := platform.LoadConfig(&cfg, d.lookup); err != nil {
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
	d.ok("nats", "connection "+bus.ConnectedURL())
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
	info, err := bus.StreamInfo(ctx, spec.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		d.fail("nats", name, err.Error(), fixProvision)
		return
	}
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
	info, err := bus.ConsumerInfo(ctx, spec.Durable)
	if err != nil {
		d.fail("nats", name, err.Error(), fixProvision)
		return
	}
	got, want := info.Config, bus.ConsumerConfig(spec)
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
	kv, err := bus.KV(ctx, bucket)
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
