package stage

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/pcwebhook"
)

// PCConfig is the Partner Center connection, read from the environment.
type PCConfig struct {
	ReferralsURL string   `env:"COSELL_PC_URL" default:"https://api.partner.microsoft.com" validate:"url" help:"Referrals API base URL"`
	WebhooksURL  string   `env:"COSELL_PC_WEBHOOKS_URL" default:"https://api.partnercenter.microsoft.com" validate:"url" help:"Webhooks API base URL"`
	TokenURL     string   `env:"COSELL_PC_TOKEN_URL" required:"true" validate:"url" help:"Entra ID token endpoint, e.g. https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token"`
	ClientID     string   `env:"COSELL_PC_CLIENT_ID" required:"true" help:"the Entra ID app registration's client id"`
	ClientSecret string   `env:"COSELL_PC_CLIENT_SECRET" required:"true" help:"the app registration's client secret"`
	Scopes       []string `env:"COSELL_PC_SCOPES" default:"https://api.partner.microsoft.com/.default"`
}

// Client builds the Partner Center client.
func (c PCConfig) Client(ctx context.Context, log *slog.Logger) (*pcapi.Client, error) {
	return pcapi.New(ctx, pcapi.Config{
		ReferralsBaseURL: c.ReferralsURL, WebhooksBaseURL: c.WebhooksURL, TokenURL: c.TokenURL,
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, Scopes: c.Scopes, Logger: log,
	})
}

// WebhookTrust says which certificates pc-ingest accepts on notifications.
type WebhookTrust struct {
	TrustedHosts []string `env:"COSELL_PC_WEBHOOK_TRUSTED_HOSTS" default:"3psostorageacct.blob.core.windows.net" help:"hosts the X-MS-Certificate-Url may point at"`
	CAFile       string   `env:"COSELL_PC_WEBHOOK_CA_FILE" help:"PEM file of extra trusted roots (the emulator's CA in development)"`
	AllowHTTP    bool     `env:"COSELL_PC_WEBHOOK_ALLOW_HTTP" default:"false" help:"accept an http:// certificate URL (development only)"`
	PathPrefix   string   `env:"COSELL_PC_WEBHOOK_CERT_PATH_PREFIX" help:"also accept certificate paths under this prefix (the emulator's /_emulator/cert/)"`
}

// Verifier builds the notification verifier.
func (w WebhookTrust) Verifier() (*pcwebhook.Verifier, error) {
	v := &pcwebhook.Verifier{TrustedHosts: w.TrustedHosts, AllowInsecureHTTP: w.AllowHTTP, AllowedPathPrefix: w.PathPrefix}
	if w.CAFile != "" {
		pem, err := os.ReadFile(w.CAFile)
		if err != nil {
			return nil, fmt.Errorf("COSELL_PC_WEBHOOK_CA_FILE: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("COSELL_PC_WEBHOOK_CA_FILE: %s holds no PEM certificate", w.CAFile)
		}
		v.Roots = pool
	}
	for i, h := range v.TrustedHosts {
		v.TrustedHosts[i] = strings.TrimSpace(h)
	}
	return v, nil
}
