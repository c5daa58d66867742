package stage

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/pcwebhook"
)

// PCConfig is the Partner Center connection, read from the environment. Partner Center's Referrals API takes
// App+User (delegated) tokens only: the stages use the refresh token `cosell pc login` stored in the
// cosell_pc_credentials bucket (COSELL_PC_AUTH=refresh-token), or, for an account without MFA, the password
// grant (COSELL_PC_AUTH=password). docs/connect.md walks through the set-up.
type PCConfig struct {
	ReferralsURL string `env:"COSELL_PC_URL" default:"https://api.partner.microsoft.com" validate:"url" help:"Referrals API base URL"`
	WebhooksURL  string `env:"COSELL_PC_WEBHOOKS_URL" default:"https://api.partnercenter.microsoft.com" validate:"url" help:"Webhooks API base URL"`
	Authority    string `env:"COSELL_PC_AUTHORITY" required:"true" validate:"url" help:"the tenant's Entra ID authority, https://login.microsoftonline.com/<tenant id>"`
	ClientID     string `env:"COSELL_PC_CLIENT_ID" required:"true" help:"the Entra ID app registration's Application (client) ID (delegated Partner Center user_impersonation, admin-consented)"`
	ClientSecret string `env:"COSELL_PC_CLIENT_SECRET" help:"the app registration's client secret, if it is a web (confidential) app; a public client has none"`
	Auth         string `env:"COSELL_PC_AUTH" default:"refresh-token" help:"refresh-token (the token cosell pc login stored; MFA-compatible) or password (an account without MFA)"`
	Username     string `env:"COSELL_PC_USERNAME" help:"COSELL_PC_AUTH=password only: the Referrals Admin user's sign-in name"`
	Password     string `env:"COSELL_PC_PASSWORD" help:"COSELL_PC_AUTH=password only: that user's password"`
	// TokenURL is the removed client-credentials setting; set, it is refused with the fix.
	TokenURL string `env:"COSELL_PC_TOKEN_URL" help:"removed: app-only client credentials are refused by the Referrals API; set COSELL_PC_AUTHORITY and run cosell pc login"`
}

// ErrAppOnly is the configuration of the removed client-credentials path.
var ErrAppOnly = fmt.Errorf("COSELL_PC_TOKEN_URL is set: app-only (client credentials) tokens are refused by the Partner Center " +
	"Referrals API, which takes App+User tokens only; unset it, set COSELL_PC_AUTHORITY=https://login.microsoftonline.com/<tenant id> " +
	"and sign in once with cosell pc login (docs/connect.md)")

// KVOpener opens a JetStream KV bucket (*platform.Bus does).
type KVOpener interface {
	KV(ctx context.Context, bucket string) (jetstream.KeyValue, error)
}

// TokenStore is the shared refresh-token store in the cosell_pc_credentials bucket.
func TokenStore(ctx context.Context, kv KVOpener) (pcapi.TokenStore, error) {
	b, err := kv.KV(ctx, contracts.BucketPCCredentials)
	if err != nil {
		return nil, fmt.Errorf("partner center token store: %w (provision the bucket: cosell doctor --provision)", err)
	}
	return pcapi.KVTokenStore{KV: b}, nil
}

// Client builds a Partner Center client with an HTTP client of its own; kv opens the shared token store (nil
// with COSELL_PC_AUTH=password); its calls and sign-in health are reported into m (nil: nowhere).
func (c PCConfig) Client(ctx context.Context, log *slog.Logger, kv KVOpener, m *ClientMetrics) (*pcapi.Client, error) {
	cfg, err := c.ClientConfig(ctx, kv)
	if err != nil {
		return nil, err
	}
	cfg.Logger = log
	cfg.Observer = m.Observer(contracts.PartnerCenter)
	cfg.OnRefresh = m.onPCRefresh()
	return pcapi.New(ctx, cfg)
}

// ClientConfig is the pcapi configuration c describes.
func (c PCConfig) ClientConfig(ctx context.Context, kv KVOpener) (pcapi.Config, error) {
	if c.TokenURL != "" {
		return pcapi.Config{}, ErrAppOnly
	}
	cfg := pcapi.Config{ReferralsBaseURL: c.ReferralsURL, WebhooksBaseURL: c.WebhooksURL, Authority: c.Authority,
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, Auth: pcapi.AuthMethod(c.Auth),
		Username: c.Username, Password: c.Password}
	if cfg.Auth == pcapi.AuthRefreshToken {
		if kv == nil {
			return pcapi.Config{}, fmt.Errorf("COSELL_PC_AUTH=refresh-token needs the NATS connection for the %s bucket", contracts.BucketPCCredentials)
		}
		st, err := TokenStore(ctx, kv)
		if err != nil {
			return pcapi.Config{}, err
		}
		cfg.Tokens = st
	}
	return cfg, nil
}

// WebhookTrust says which certificates pc-ingest accepts on notifications.
type WebhookTrust struct {
	TrustedHosts []string `env:"COSELL_PC_WEBHOOK_TRUSTED_HOSTS" default:"3psostorageacct.blob.core.windows.net" help:"hosts the X-MS-Certificate-Url may point at"`
	CAFile       string   `env:"COSELL_PC_WEBHOOK_CA_FILE" help:"PEM file of extra trusted roots (the emulator's CA in development)"`
	AllowHTTP    bool     `env:"COSELL_PC_WEBHOOK_ALLOW_HTTP" default:"false" help:"accept an http:// certificate URL (development only)"`
	PathPrefix   string   `env:"COSELL_PC_WEBHOOK_CERT_PATH_PREFIX" help:"also accept certificate paths under this prefix (the emulator's /_emulator/cert/)"`
	// The certificate URL serves the leaf only; its issuer comes from this bundle or from the leaf's AIA URL.
	IntermediatesFile string   `env:"COSELL_PC_WEBHOOK_INTERMEDIATES_FILE" help:"PEM bundle of intermediate CAs for the signing certificate's chain (then none is fetched)"`
	IntermediateHosts []string `env:"COSELL_PC_WEBHOOK_INTERMEDIATE_HOSTS" default:"www.microsoft.com,cacerts.digicert.com" help:"hosts the signing certificate's issuer (its AIA URL) may be fetched from"`
}

// Verifier builds the notification verifier.
func (w WebhookTrust) Verifier() (*pcwebhook.Verifier, error) {
	v := &pcwebhook.Verifier{TrustedHosts: w.TrustedHosts, AllowInsecureHTTP: w.AllowHTTP, AllowedPathPrefix: w.PathPrefix,
		IntermediateHosts: w.IntermediateHosts}
	if w.IntermediatesFile != "" {
		pem, err := os.ReadFile(w.IntermediatesFile)
		if err != nil {
			return nil, fmt.Errorf("COSELL_PC_WEBHOOK_INTERMEDIATES_FILE: %w", err)
		}
		v.Intermediates = x509.NewCertPool()
		if !v.Intermediates.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("COSELL_PC_WEBHOOK_INTERMEDIATES_FILE: %s holds no PEM certificate", w.IntermediatesFile)
		}
	}
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
	for i, h := range v.IntermediateHosts {
		v.IntermediateHosts[i] = strings.TrimSpace(h)
	}
	return v, nil
}
