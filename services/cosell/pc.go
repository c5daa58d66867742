package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
)

// defaultEvents are the four events Microsoft's connector registers.
var defaultEvents = []string{pc.EventReferralCreated, pc.EventReferralUpdated,
	pc.EventRelatedReferralCreated, pc.EventRelatedReferralUpdated}

const pcLong = `Partner Center takes App+User (delegated) tokens only. COSELL_PC_AUTHORITY (https://login.microsoftonline.com/<tenant id>)
and COSELL_PC_CLIENT_ID (plus COSELL_PC_CLIENT_SECRET for a web app) name the app registration; "cosell pc login"
signs in once as the Referrals Admin user and stores the refresh token in NATS (bucket cosell_pc_credentials), where
the stages and these commands read it (COSELL_NATS_URL, as cosell-admin). COSELL_PC_AUTH=password with
COSELL_PC_USERNAME / COSELL_PC_PASSWORD is the option for an account without MFA. COSELL_PC_URL /
COSELL_PC_WEBHOOKS_URL point at the emulator. See docs/connect.md.`

func newPCCmd() *cobra.Command {
	cmd := group("pc", "Partner Center: login, webhook register|show|delete|test", pcLong)
	af := addAdminFlags(cmd.PersistentFlags())
	cmd.AddCommand(newPCLoginCmd(af), newWebhookCmd(af))
	return cmd
}

func newWebhookCmd(af *adminFlags) *cobra.Command {
	cmd := group("webhook", "the Partner Center webhook registration: register | show | delete | test",
		`Partner Center posts referral events to one registered URL per tenant: pc-ingest's public webhook endpoint.`)

	register := &cobra.Command{Use: "register --url URL", Short: "register pc-ingest's URL for the referral events",
		Long: `Register pc-ingest's public URL for the referral events (by default the four Microsoft's connector
registers: ` + strings.Join(defaultEvents, ", ") + `). Partner Center keeps one URL per event: an existing
registration of another URL (maybe Microsoft's Power Automate connector) is replaced only with --overwrite.
Add test-created to the events to be able to send the validation event (cosell pc webhook test).`,
		Example: "  cosell pc webhook register --url https://cosell.example.com/webhooks/partner-center\n" +
			"  cosell pc webhook register --url https://cosell.example.com/webhooks/partner-center --events " + strings.Join(defaultEvents, ",") + "," + pc.EventTestCreated + " --overwrite",
		Args: noArgs}
	url := register.Flags().String("url", "", "the public URL of pc-ingest's webhook endpoint (required)")
	events := register.Flags().StringSlice("events", defaultEvents, "comma-separated events")
	overwrite := register.Flags().Bool("overwrite", false, "replace an existing registration (Partner Center keeps one URL per event)")
	_ = register.MarkFlagRequired("url")
	_ = register.RegisterFlagCompletionFunc("events", cobra.FixedCompletions(append(slices.Clone(defaultEvents), pc.EventTestCreated), cobra.ShellCompDirectiveNoFileComp))
	regOut := addOutput(register)
	register.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		client, err := af.pc(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook register: %v\n", err)
			return exitFailure
		}
		if cur, err := client.GetWebhook(ctx); err == nil && cur.WebhookURL != "" && cur.WebhookURL != *url && !*overwrite {
			fmt.Fprintf(stderr, "cosell pc webhook register: %s is already registered for %s — maybe Microsoft's Power Automate connector.\n"+
				"Partner Center keeps one URL per event: re-run with --overwrite to replace it.\n", cur.WebhookURL, strings.Join(cur.WebhookEvents, ", "))
			return exitFailure
		}
		reg, err := client.RegisterWebhook(ctx, *url, *events, *overwrite)
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook register: %v\n", err)
			return exitFailure
		}
		regOut.print(stdout, reg, func(w io.Writer) { fmt.Fprint(w, "registered\n"); printRegistration(w, reg) })
		return exitOK
	})

	show := &cobra.Command{Use: "show", Short: "show the registration (URL and events)", Args: noArgs}
	showOut := addOutput(show)
	show.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		client, err := af.pc(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook show: %v\n", err)
			return exitFailure
		}
		reg, err := client.GetWebhook(ctx)
		if pcapi.IsNotFound(err) {
			if showOut.structured() {
				showOut.print(stdout, nil, nil)
			} else {
				fmt.Fprintln(stdout, "no webhook registered")
			}
			return exitOK
		}
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook show: %v\n", err)
			return exitFailure
		}
		showOut.print(stdout, reg, func(w io.Writer) { printRegistration(w, reg) })
		return exitOK
	})

	del := &cobra.Command{Use: "delete", Short: "delete the registration (Partner Center stops posting events)", Args: noArgs}
	del.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		client, err := af.pc(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook delete: %v\n", err)
			return exitFailure
		}
		if err := client.DeleteWebhook(ctx); err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook delete: %v\n", err)
			return exitFailure
		}
		fmt.Fprintln(stdout, "webhook registration deleted")
		return exitOK
	})

	cmd.AddCommand(register, show, del, newWebhookTestCmd(af))
	return cmd
}

func newWebhookTestCmd(af *adminFlags) *cobra.Command {
	test := &cobra.Command{Use: "test", Short: "send Partner Center's validation event (test-created) to the registered URL and report its delivery",
		Long: `Ask Partner Center to send its validation event (test-created) to the registered URL, then read the
delivery record until Partner Center reports it (up to --wait). Partner Center sends the validation event only
to a registration that subscribes to ` + pc.EventTestCreated + `: with --register the command adds it to the
registration (keeping its URL and events); without, it says how. Partner Center allows two validation
events a minute. Exit code 0 when pc-ingest answered 2xx, 1 otherwise.`,
		Example: "  cosell pc webhook test --register", Args: noArgs}
	add := test.Flags().Bool("register", false, "add "+pc.EventTestCreated+" to the registration if it lacks it")
	wait := test.Flags().Duration("wait", 30*time.Second, "how long to wait for the delivery record (0: send and return)")
	out := addOutput(test)
	test.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		client, err := af.pc(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook test: %v\n", err)
			return exitFailure
		}
		reg, err := client.GetWebhook(ctx)
		if pcapi.IsNotFound(err) {
			fmt.Fprintf(stderr, "cosell pc webhook test: no webhook is registered; register pc-ingest's URL with the validation event first:\n"+
				"  cosell pc webhook register --url https://<your ingress host>/webhooks/partner-center --events %s,%s\n", strings.Join(defaultEvents, ","), pc.EventTestCreated)
			return exitFailure
		}
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook test: %v\n", err)
			return exitFailure
		}
		if !slices.Contains(reg.WebhookEvents, pc.EventTestCreated) {
			if !*add {
				fmt.Fprintf(stderr, "cosell pc webhook test: Partner Center sends the validation event only to a registration that subscribes to %s;\n"+
					"the registration of %s has %s. Add it, keeping the URL and the events:\n"+
					"  cosell pc webhook test --register\n"+
					"or: cosell pc webhook register --url %s --events %s,%s --overwrite\n",
					pc.EventTestCreated, reg.WebhookURL, strings.Join(reg.WebhookEvents, ", "), reg.WebhookURL, strings.Join(reg.WebhookEvents, ","), pc.EventTestCreated)
				return exitFailure
			}
			reg.WebhookEvents = append(reg.WebhookEvents, pc.EventTestCreated)
			if reg, err = client.UpdateWebhook(ctx, pc.WebhookRegistration{WebhookURL: reg.WebhookURL, WebhookEvents: reg.WebhookEvents,
				SignatureTokenToMsSignatureHeader: reg.SignatureTokenToMsSignatureHeader}); err != nil {
				fmt.Fprintf(stderr, "cosell pc webhook test: add %s to the registration: %v\n", pc.EventTestCreated, err)
				return exitFailure
			}
			fmt.Fprintf(stderr, "added %s to the registration of %s (events now %s)\n", pc.EventTestCreated, reg.WebhookURL, strings.Join(reg.WebhookEvents, ", "))
		}
		id, err := client.SendValidationEvent(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook test: %v\n", err)
			if d, ok := pcapi.IsThrottled(err); ok {
				fmt.Fprintf(stderr, "Partner Center allows two validation events a minute: try again in %s\n", d)
			}
			return exitFailure
		}
		st := pc.WebhookValidationStatus{CorrelationID: id, Status: "sent", CallbackURL: reg.WebhookURL}
		deadline := time.Now().Add(*wait)
		for *wait > 0 {
			cur, err := client.GetValidationEvent(ctx, id)
			if err != nil {
				fmt.Fprintf(stderr, "cosell pc webhook test: read the delivery of validation event %s: %v\n", id, err)
				return exitFailure
			}
			st = cur
			if delivered(st) || !strings.EqualFold(st.Status, "pending") || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return exitFailure
			case <-time.After(500 * time.Millisecond):
			}
		}
		out.print(stdout, st, func(w io.Writer) {
			fmt.Fprintf(w, "validation event %s sent to %s: %s\n", id, reg.WebhookURL, st.Status)
			if len(st.Results) > 0 {
				tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ATTEMPT\tAT\tRESPONSE\tMESSAGE")
				for i, r := range st.Results {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", i+1, r.DateTimeUTC, r.ResponseCode, r.ResponseMessage)
				}
				tw.Flush()
			}
		})
		switch {
		case delivered(st):
			return exitOK
		case *wait == 0:
			fmt.Fprintf(stderr, "sent; not waiting for its delivery record (correlation id %s)\n", id)
			return exitOK
		}
		fmt.Fprintf(stderr, "cosell pc webhook test: pc-ingest did not acknowledge the validation event (status %s); check that %s reaches pc-ingest and its logs\n", st.Status, reg.WebhookURL)
		return exitFailure
	})
	return test
}

// delivered is true when one delivery attempt of the validation event was answered 2xx. Partner Center
// records the receiver's answer as the status text ("OK"), as in Microsoft's sample delivery record.
func delivered(st pc.WebhookValidationStatus) bool {
	for _, r := range st.Results {
		for code := 200; code < 300; code++ {
			if t := http.StatusText(code); t != "" && strings.EqualFold(r.ResponseCode, t) {
				return true
			}
		}
	}
	return false
}

func printRegistration(w io.Writer, reg pc.WebhookRegistration) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "URL\t%s\nEVENTS\t%s\n", reg.WebhookURL, strings.Join(reg.WebhookEvents, ", "))
	if reg.SubscriberID != "" {
		fmt.Fprintf(tw, "SUBSCRIBER\t%s\n", reg.SubscriberID)
	}
	tw.Flush()
}
