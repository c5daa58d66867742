package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// runFlags are cosell run's settings.
type runFlags struct {
	dataDir, status, pcAddr, sfAddr, pubsubAddr, hook, nats, level, cdc string
	demo                                                                bool
	poll, backstop                                                      time.Duration
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "start the whole system in one process with demo data and print its URLs and logins",
		Long: `Start embedded NATS, both emulators, the six stages and demo data in one process, and print every
URL (status page and API, metrics, both emulators, pc-ingest's webhook, NATS) with the logins and the
environment the admin commands need against it. Logs (JSON, one line per event) go to stderr.

Traces go where OpenTelemetry's standard variables say (read by its SDK, as for every stage; see a
stage's --help), e.g. OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cosell run`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&f.dataDir, "data", os.Getenv("COSELL_DATA_DIR"), "JetStream store directory to keep across runs (env COSELL_DATA_DIR); empty = a fresh temporary store, removed on exit, because the emulators start empty every time")
	fs.StringVar(&f.status, "status", env("COSELL_STATUS_ADDR", "127.0.0.1:8080"), "status page address (env COSELL_STATUS_ADDR)")
	fs.StringVar(&f.pcAddr, "pc-emulator", env("COSELL_PC_EMULATOR_ADDR", "127.0.0.1:8081"), "Partner Center emulator address (env COSELL_PC_EMULATOR_ADDR)")
	fs.StringVar(&f.sfAddr, "sf-emulator", env("COSELL_SF_EMULATOR_ADDR", "127.0.0.1:8082"), "Salesforce emulator address (env COSELL_SF_EMULATOR_ADDR)")
	fs.StringVar(&f.pubsubAddr, "sf-pubsub", env("COSELL_SF_PUBSUB_ADDR", "127.0.0.1:8083"), "Salesforce emulator's Pub/Sub API (gRPC, Change Data Capture) address (env COSELL_SF_PUBSUB_ADDR)")
	fs.StringVar(&f.hook, "webhook", env("COSELL_PC_WEBHOOK_LISTEN", "127.0.0.1:8090"), "pc-ingest webhook address (env COSELL_PC_WEBHOOK_LISTEN)")
	fs.StringVar(&f.nats, "nats", env("COSELL_NATS_LISTEN", "127.0.0.1:4222"), "embedded nats-server client address (env COSELL_NATS_LISTEN)")
	fs.BoolVar(&f.demo, "demo", true, "load demo data (two Microsoft referrals, two synced Opportunities)")
	fs.StringVar(&f.cdc, "sf-cdc", env("COSELL_SF_CDC", "on"), "on: sf-ingest follows the Salesforce emulator's Change Data Capture events over the Pub/Sub API (a seller's change reaches Partner Center in moments); off: it only polls (env COSELL_SF_CDC)")
	fs.DurationVar(&f.poll, "sf-poll", 2*time.Second, "sf-ingest poll interval with --sf-cdc=off")
	fs.DurationVar(&f.backstop, "sf-backstop", time.Minute, "with --sf-cdc=on, how often sf-ingest still polls as the backstop (and for Notes, which change events do not carry)")
	fs.StringVar(&f.level, "log-level", env("COSELL_LOG_LEVEL", "info"), "debug, info, warn or error (env COSELL_LOG_LEVEL)")
	_ = cmd.MarkFlagDirname("data")
	_ = cmd.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	out := addOutput(cmd)
	cmd.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		return runAll(ctx, f, out, stdout, stderr)
	})
	return cmd
}

func runAll(ctx context.Context, f runFlags, out *output, stdout, stderr io.Writer) int {
	// No stage attribute of its own: each stage's lines carry the stage's name, as in its own process.
	log := slog.New(slog.NewJSONHandler(stderr, platform.LogHandlerOptions(f.level)))
	ctx, stop := platform.RunUntilSignal(ctx)
	defer stop()
	// One tracer provider for the six stages in this process (service cosell-run); the stages' spans are
	// named after them. Deferred before the stack's Stop, so it flushes after the stages drained.
	shutdownTracing, err := platform.SetupTracing(ctx, "run")
	if err != nil {
		fmt.Fprintf(stderr, "cosell run: %v\n", err)
		return exitUsage
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(ctx)) }()
	s, err := stack.Start(ctx, stack.Options{
		DataDir: f.dataDir, NATSListen: f.nats, NATSLogin: true, PCEmulatorAddr: f.pcAddr, SFEmulatorAddr: f.sfAddr,
		SFPubSubAddr: f.pubsubAddr, WebhookAddr: f.hook, StatusAddr: f.status, Log: log,
		Vars: map[string]string{"COSELL_SF_POLL_INTERVAL": f.poll.String(), "COSELL_AUDIT_SUMMARY_INTERVAL": "5s",
			"COSELL_SF_CDC": f.cdc, "COSELL_SF_BACKSTOP_INTERVAL": f.backstop.String()},
	})
	if err != nil {
		fmt.Fprintf(stderr, "cosell run: %v\n", err)
		return exitFailure
	}
	defer s.Stop()
	// The login of the embedded NATS, also where the CLI and a stage on this machine find it from the URL
	// alone (platform.RunLoginFile), so `COSELL_NATS_URL=nats://127.0.0.1:4222 cosell links get ID` works.
	loginFile := filepath.Join(s.DataDir(), platform.LoginFileName)
	if run := platform.RunLoginFile(s.NATSLogin.URL); run != "" {
		if err := s.NATSLogin.WriteFile(run); err != nil {
			log.Warn("nats login file for the CLI", "err", err)
		} else {
			loginFile = run
			defer os.Remove(run)
		}
	}
	info := describeRun(s, loginFile, f.cdc)
	out.print(stdout, info, func(w io.Writer) { info.print(w) })
	if f.demo {
		if err := loadDemo(s); err != nil {
			log.Warn("demo data", "err", err)
		} else if !out.structured() {
			fmt.Fprintln(stdout, "Demo data loaded: 2 referrals from Microsoft, 2 Opportunities with Sync with Partner Center on.")
		}
	}
	<-ctx.Done()
	if !out.structured() {
		fmt.Fprintln(stdout, "stopping: draining the stages…")
	}
	return exitOK
}

// runInfo is what cosell run prints: every address, the logins, and the settings the admin commands and
// the README's curl commands need against this run.
type runInfo struct {
	StatusPage string `json:"statusPage"`
	StatusAPI  string `json:"statusAPI"`
	Metrics    string `json:"metrics"`
	Operator   login  `json:"operator"`
	Viewer     login  `json:"viewer"`
	// PCEmulator is the Partner Center emulator (Referrals, webhooks and Entra ID sign-in in one host).
	PCEmulator string `json:"pcEmulator"`
	SFEmulator string `json:"sfEmulator"`
	SFLogin    string `json:"sfLoginHost"`
	// SFPubSub is the Salesforce emulator's Pub/Sub API (gRPC, plaintext); SFIngest says how sf-ingest
	// follows the org (change events, or polling only).
	SFPubSub string `json:"sfPubSub"`
	SFIngest string `json:"sfIngest"`
	Webhook  string `json:"webhook"`
	NATS     string `json:"nats"`
	// NATSUser and NATSPassword are the embedded server's generated login; NATSLoginFile holds it (the
	// cosell commands on this machine find it from COSELL_NATS_URL alone).
	NATSUser      string `json:"natsUser"`
	NATSPassword  string `json:"natsPassword"`
	NATSLoginFile string `json:"natsLoginFile"`
	// Env holds the variables that point the admin commands at this run, in the order they are printed.
	Env []envVar `json:"env"`
}

type login struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

type envVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func describeRun(s *stack.Stack, loginFile, cdc string) runInfo {
	info := runInfo{StatusPage: s.Status + "/", StatusAPI: s.Status + "/api/status", Metrics: s.Status + "/metrics",
		Operator: login{s.Operator.Name, s.Operator.Secret}, Viewer: login{s.Viewer.Name, s.Viewer.Secret},
		PCEmulator: s.PCURL, SFEmulator: s.SFURL, SFLogin: s.SFLoginURL, SFPubSub: strings.TrimPrefix(s.SFPubSubURL, "http://"), SFIngest: sfIngestMode(cdc), Webhook: s.Webhook, NATS: s.NATSLogin.URL,
		NATSUser: s.NATSLogin.User, NATSPassword: s.NATSLogin.Password, NATSLoginFile: loginFile}
	for _, kv := range [][2]string{
		{"COSELL_NATS_URL", info.NATS},
		{"COSELL_SF_URL", s.SFURL}, {"COSELL_SF_CLIENT_ID", stack.SFClientID}, {"COSELL_SF_CLIENT_SECRET", stack.SFClientSecret},
		{"COSELL_PC_URL", s.PCURL}, {"COSELL_PC_WEBHOOKS_URL", s.PCURL}, {"COSELL_PC_AUTHORITY", s.PC.Authority()}, {"COSELL_PC_CLIENT_ID", s.PC.ClientID()},
	} {
		info.Env = append(info.Env, envVar{kv[0], kv[1]})
	}
	return info
}

func (r runInfo) print(w io.Writer) {
	fmt.Fprintf(w, `cosell is running.
  status page           %s   (sign in: %s / %s operator, %s / %s viewer)
  status API            curl -H 'Authorization: Bearer %s' %s
  metrics               %s
  Partner Center emu    %s   (act as a Microsoft seller: POST %s/_emulator/referrals)
  Salesforce emulator   %s   (act as a user: POST %s/_emulator/sobjects/Opportunity; login host %s)
  Salesforce Pub/Sub    %s   (Change Data Capture, gRPC; sf-ingest: %s)
  pc-ingest webhook     %s
  NATS                  %s   (user %s, password %s; login file %s, found by cosell commands on this machine)
The admin commands against this run (cosell status, links, dlq, drift, plan, doctor, pc webhook …), from another shell:
`, r.StatusPage, r.Operator.Name, r.Operator.Secret, r.Viewer.Name, r.Viewer.Secret, r.Viewer.Secret, r.StatusAPI, r.Metrics,
		r.PCEmulator, r.PCEmulator, r.SFEmulator, r.SFEmulator, r.SFLogin, r.SFPubSub, r.SFIngest, r.Webhook, r.NATS, r.NATSUser, r.NATSPassword, r.NATSLoginFile)
	// One export line per system: COSELL_NATS_*, COSELL_SF_*, COSELL_PC_*.
	system := func(name string) string { return strings.SplitN(name, "_", 3)[1] }
	line := "  export"
	for i, v := range r.Env {
		if i > 0 && system(v.Name) != system(r.Env[i-1].Name) {
			fmt.Fprintln(w, line)
			line = "  export"
		}
		line += " " + v.Name + "=" + v.Value
	}
	fmt.Fprintln(w, line)
	fmt.Fprintln(w, "Press Ctrl-C to stop (in-flight work is finished and acknowledged first).")
}

// sfIngestMode says how sf-ingest follows Salesforce under COSELL_SF_CDC=mode.
func sfIngestMode(mode string) string {
	if mode == "off" {
		return "polls only (--sf-cdc=off)"
	}
	return "follows its change events, polling as the backstop"
}

// loadDemo acts as a Microsoft seller and as a Salesforce user once each way.
func loadDemo(s *stack.Stack) error {
	for i, d := range []struct {
		name, customer, city, zip string
		value                     float64
	}{
		{"Contoso data platform", "Contoso Ltd", "Redmond", "98052", 125000},
		{"Northwind analytics", "Northwind Traders", "Seattle", "98101", 42000},
	} {
		v := d.value
		_, err := s.PC.SellerCreate(pc.Referral{
			Name: d.name,
			CustomerProfile: &pc.CustomerProfile{Name: d.customer, Address: &pc.Address{
				AddressLine1: fmt.Sprintf("%d Main St", i+1), City: d.city, State: "WA", PostalCode: d.zip, Country: "US"}},
			Consent: &pc.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true},
			Details: &pc.Details{DealValue: &v, Currency: "USD", ClosingDateTime: time.Now().AddDate(0, 3, 0).UTC().Format("2006-01-02") + "T00:00:00Z",
				Notes: "Shared by a Microsoft seller (demo)"},
		})
		if err != nil {
			return err
		}
	}
	for _, d := range []struct {
		name, account, country, zip string
		amount                      float64
	}{
		{"Fabrikam landing zone", "Fabrikam GmbH", "DE", "10115", 48000},
		{"Tailspin modernisation", "Tailspin Toys", "GB", "EC1A 1BB", 76000},
	} {
		acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": d.account, "BillingCountry": d.country, "BillingPostalCode": d.zip})
		if err != nil {
			return err
		}
		if _, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{
			"Name": d.name, "AccountId": acc, "Amount": d.amount, "CurrencyIsoCode": "EUR",
			"CloseDate": time.Now().AddDate(0, 4, 0).Format("2006-01-02"), "StageName": "Qualification",
			sf.FieldSyncWithPartnerCenter: true, "Description": "Created by a Salesforce user (demo)",
		}); err != nil {
			return err
		}
	}
	return nil
}
