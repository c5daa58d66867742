package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
)

// defaultEvents are the four events Microsoft's connector registers.
var defaultEvents = strings.Join([]string{pc.EventReferralCreated, pc.EventReferralUpdated,
	pc.EventRelatedReferralCreated, pc.EventRelatedReferralUpdated}, ",")

func cmdPC(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const help = `usage: cosell pc login [--nats URL]
       cosell pc webhook register --url URL [--events a,b] [--overwrite]
       cosell pc webhook show | delete | test
Partner Center takes App+User (delegated) tokens only. COSELL_PC_AUTHORITY (https://login.microsoftonline.com/<tenant id>)
and COSELL_PC_CLIENT_ID (plus COSELL_PC_CLIENT_SECRET for a web app) name the app registration; "cosell pc login"
signs in once as the Referrals Admin user and stores the refresh token in NATS (bucket cosell_pc_credentials), where
the stages and these commands read it (COSELL_NATS_URL, as cosell-admin). COSELL_PC_AUTH=password with
COSELL_PC_USERNAME / COSELL_PC_PASSWORD is the option for an account without MFA. COSELL_PC_URL /
COSELL_PC_WEBHOOKS_URL point at the emulator. See docs/connect.md.`
	if len(args) > 0 && args[0] == "login" {
		return cmdPCLogin(ctx, args[1:], stdout, stderr)
	}
	if len(args) < 2 || args[0] != "webhook" {
		fmt.Fprintln(stderr, help)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	verb := args[1]
	fs := flags("pc webhook "+verb, "manage the Partner Center webhook registration", stderr)
	url := fs.String("url", "", "register: the public URL of pc-ingest's webhook endpoint")
	events := fs.String("events", defaultEvents, "register: comma-separated events")
	overwrite := fs.Bool("overwrite", false, "register: replace an existing registration (Partner Center keeps one URL per event)")
	af := addAdminFlags(fs)
	if done, code := parse(fs, args[2:]); done {
		return code
	}
	client, err := af.pc(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "cosell pc: %v\n", err)
		return 1
	}
	switch verb {
	case "register":
		if *url == "" {
			fmt.Fprintln(stderr, "cosell pc webhook register: --url is required (pc-ingest's public URL, e.g. https://cosell.example.com/webhooks/partner-center)")
			return 2
		}
		if cur, err := client.GetWebhook(ctx); err == nil && cur.WebhookURL != "" && cur.WebhookURL != *url && !*overwrite {
			fmt.Fprintf(stderr, "cosell pc webhook register: %s is already registered for %s — maybe Microsoft's Power Automate connector.\n"+
				"Partner Center keeps one URL per event: re-run with --overwrite to replace it.\n", cur.WebhookURL, strings.Join(cur.WebhookEvents, ", "))
			return 1
		}
		reg, err := client.RegisterWebhook(ctx, *url, split(*events), *overwrite)
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook register: %v\n", err)
			return 1
		}
		printJSON(stdout, reg)
	case "show":
		reg, err := client.GetWebhook(ctx)
		if pcapi.IsNotFound(err) {
			fmt.Fprintln(stdout, "no webhook registered")
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook show: %v\n", err)
			return 1
		}
		printJSON(stdout, reg)
	case "delete":
		if err := client.DeleteWebhook(ctx); err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook delete: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "webhook registration deleted")
	case "test":
		id, err := client.SendValidationEvent(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "cosell pc webhook test: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "validation event sent; correlation id %s\n", id)
	default:
		fmt.Fprintln(stderr, help)
		return 2
	}
	return 0
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
