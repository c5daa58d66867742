// Package emuenv is the configuration that points cosell's stages at the two emulators, the way a
// deployment points them at Partner Center and Salesforce: the same COSELL_* variables, read by the same
// loader. The in-process system (stack) and the process fleet (fleet) both configure their stages with it.
package emuenv

import (
	"net/url"
	"sort"
)

// Emulators is where the emulators listen and what they accept.
type Emulators struct {
	// PCURL is the Partner Center emulator's base URL; PCAuthority its Entra ID authority (the tenant);
	// PCClientID the app registration it knows.
	PCURL, PCAuthority, PCClientID string
	// SFURL is the Salesforce emulator's base URL; SFClientID and SFClientSecret its connected app.
	SFURL, SFClientID, SFClientSecret string
	// SFPubSubURL is the Salesforce emulator's Pub/Sub API (http://host:port: plaintext gRPC), for Change
	// Data Capture; "" leaves sf-ingest to poll only.
	SFPubSubURL string
	// CAFile holds the Partner Center emulator's webhook-signing root (PEM).
	CAFile string
	// WebhookListen is the address pc-ingest listens on for notifications.
	WebhookListen string
}

// Vars are the variables, by name.
func (e Emulators) Vars() map[string]string {
	host := e.PCURL
	if u, err := url.Parse(e.PCURL); err == nil {
		host = u.Host
	}
	vars := map[string]string{
		"COSELL_PC_URL": e.PCURL, "COSELL_PC_WEBHOOKS_URL": e.PCURL,
		"COSELL_PC_AUTHORITY": e.PCAuthority, "COSELL_PC_CLIENT_ID": e.PCClientID,
		"COSELL_SF_URL": e.SFURL, "COSELL_SF_CLIENT_ID": e.SFClientID, "COSELL_SF_CLIENT_SECRET": e.SFClientSecret,
		// The emulator signs notifications with its own CA and serves the certificates over http from
		// /_emulator/cert/; Partner Center's are on 3psostorageacct.blob.core.windows.net over https.
		"COSELL_PC_WEBHOOK_TRUSTED_HOSTS": host, "COSELL_PC_WEBHOOK_INTERMEDIATE_HOSTS": host,
		"COSELL_PC_WEBHOOK_CA_FILE": e.CAFile, "COSELL_PC_WEBHOOK_ALLOW_HTTP": "true",
		"COSELL_PC_WEBHOOK_CERT_PATH_PREFIX": "/_emulator/cert/",
		"COSELL_PC_WEBHOOK_LISTEN":           e.WebhookListen,
		// The status page links each record into the emulators, which show it (the real pages are on
		// partner.microsoft.com and the org's Lightning domain).
		"COSELL_STATUS_REFERRAL_URL":    e.PCURL + "/_emulator/referrals/%s",
		"COSELL_STATUS_OPPORTUNITY_URL": e.SFURL + "/_emulator/sobjects/Opportunity/%s",
	}
	if e.SFPubSubURL != "" {
		vars["COSELL_SF_PUBSUB_URL"] = e.SFPubSubURL
	}
	return vars
}

// Env is Vars as KEY=VALUE lines for a process's environment, sorted by name.
func (e Emulators) Env() []string {
	vars := e.Vars()
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
