package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("run", "start embedded NATS, both emulators, the six stages and demo data in one process\n\n"+
		"Traces go where OpenTelemetry's standard variables say, as for every stage (see a stage's --help), e.g.\n"+
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cosell run", stderr)
	dataDir := fs.String("data", os.Getenv("COSELL_DATA_DIR"), "JetStream store directory to keep across runs (env COSELL_DATA_DIR); empty = a fresh temporary store, removed on exit, because the emulators start empty every time")
	status := fs.String("status", env("COSELL_STATUS_ADDR", "127.0.0.1:8080"), "status page address")
	pcAddr := fs.String("pc-emulator", env("COSELL_PC_EMULATOR_ADDR", "127.0.0.1:8081"), "Partner Center emulator address")
	sfAddr := fs.String("sf-emulator", env("COSELL_SF_EMULATOR_ADDR", "127.0.0.1:8082"), "Salesforce emulator address")
	hook := fs.String("webhook", env("COSELL_PC_WEBHOOK_LISTEN", "127.0.0.1:8090"), "pc-ingest webhook address")
	nats := fs.String("nats", env("COSELL_NATS_LISTEN", "127.0.0.1:4222"), "embedded nats-server client address")
	demo := fs.Bool("demo", true, "load demo data (two Microsoft referrals, two synced Opportunities)")
	poll := fs.Duration("sf-poll", 2*time.Second, "sf-ingest poll interval")
	level := fs.String("log-level", env("COSELL_LOG_LEVEL", "info"), "debug, info, warn or error")
	if done, code := parse(fs, args); done {
		return code
	}
	// No stage attribute of its own: each stage's lines carry the stage's name, as in its own process.
	log := slog.New(slog.NewJSONHandler(stderr, platform.LogHandlerOptions(*level)))
	ctx, stop := platform.RunUntilSignal(ctx)
	defer stop()
	// One tracer provider for the six stages in this process (service cosell-run); the stages' spans are
	// named after them. Deferred before the stack's Stop, so it flushes after the stages drained.
	shutdownTracing, err := platform.SetupTracing(ctx, "run")
	if err != nil {
		fmt.Fprintf(stderr, "cosell run: %v\n", err)
		return 2
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(ctx)) }()
	s, err := stack.Start(ctx, stack.Options{
		DataDir: *dataDir, NATSListen: *nats, NATSLogin: true, PCEmulatorAddr: *pcAddr, SFEmulatorAddr: *sfAddr,
		WebhookAddr: *hook, StatusAddr: *status, Log: log,
		Vars: map[string]string{"COSELL_SF_POLL_INTERVAL": poll.String(), "COSELL_AUDIT_SUMMARY_INTERVAL": "5s"},
	})
	if err != nil {
		fmt.Fprintf(stderr, "cosell run: %v\n", err)
		return 1
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
	fmt.Fprintf(stdout, `cosell is running.
  status page           %s/   (sign in: %s / %s operator, %s / %s viewer)
  status API            curl -H 'Authorization: Bearer %s' %s/api/status
  Partner Center emu    %s   (act as a Microsoft seller: POST %s/_emulator/referrals)
  Salesforce emulator   %s   (act as a user: POST %s/_emulator/sobjects/Opportunity)
  pc-ingest webhook     %s
  NATS                  %s   (user %s, password %s; login file %s, found by cosell commands on this machine)
Press Ctrl-C to stop (in-flight work is finished and acknowledged first).
`, s.Status, s.Operator.Name, s.Operator.Secret, s.Viewer.Name, s.Viewer.Secret, s.Viewer.Secret, s.Status, s.PCURL, s.PCURL, s.SFURL, s.SFURL, s.Webhook, s.NATSLogin.URL, s.NATSLogin.User, s.NATSLogin.Password, loginFile)
	if *demo {
		if err := loadDemo(s); err != nil {
			log.Warn("demo data", "err", err)
		} else {
			fmt.Fprintln(stdout, "Demo data loaded: 2 referrals from Microsoft, 2 Opportunities with Sync with Partner Center on.")
		}
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping: draining the stages…")
	return 0
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
