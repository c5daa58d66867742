package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// cmdPCLogin is `cosell pc login`: the one-time, MFA-compatible sign-in of the Referrals Admin user with the
// OAuth 2.0 device-code flow against the tenant's Entra authority (Microsoft's Secure Application Model). It
// prints the URL and code, waits for the sign-in, and stores the refresh token in the cosell_pc_credentials
// bucket, where pc-ingest and pc-writer read it and keep its rotations. No password is kept.
func newPCLoginCmd(af *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "login", Short: "sign in once as the Partner Center Referrals Admin user (device code) and store the refresh token",
		Long: `Sign in once as the Partner Center Referrals Admin user (OAuth device code) and store the refresh token.

Reads COSELL_PC_AUTHORITY (https://login.microsoftonline.com/<tenant id>), COSELL_PC_CLIENT_ID and, for a web
app registration, COSELL_PC_CLIENT_SECRET; stores the token over COSELL_NATS_URL (as cosell-admin) in the
` + contracts.BucketPCCredentials + ` bucket. Sign in with the user that holds the Referrals Admin role; run it
again whenever cosell doctor reports the sign-in expired or revoked.`,
		Args: noArgs}
	timeout := cmd.Flags().Duration("timeout", 15*time.Minute, "give up waiting for the sign-in after this long")
	cmd.RunE = runE(func(ctx context.Context, _ []string, stdout, stderr io.Writer) int {
		return pcLogin(ctx, af, *timeout, stdout, stderr)
	})
	return cmd
}

func pcLogin(ctx context.Context, af *adminFlags, timeout time.Duration, stdout, stderr io.Writer) int {
	var cfg stage.PCConfig
	if err := platform.LoadConfig(&cfg, af.lookup); err != nil {
		fmt.Fprintf(stderr, "cosell pc login: %v\n", err)
		return 2
	}
	if cfg.TokenURL != "" {
		fmt.Fprintf(stderr, "cosell pc login: %v\n", stage.ErrAppOnly)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	bus, err := af.bus(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "cosell pc login: the refresh token is stored in NATS: %v\n", err)
		return 2
	}
	defer bus.Close()
	store, err := stage.TokenStore(ctx, bus)
	if err != nil {
		fmt.Fprintf(stderr, "cosell pc login: %v\n", err)
		return 1
	}
	st, err := pcapi.Login(ctx, pcapi.LoginConfig{Authority: cfg.Authority, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		HTTPClient: &http.Client{Timeout: time.Minute}}, store, func(da *oauth2.DeviceAuthResponse) {
		fmt.Fprintf(stdout, "To sign in as the Partner Center Referrals Admin user, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
		fmt.Fprintln(stdout, "waiting for the sign-in…")
	})
	if err != nil {
		fmt.Fprintf(stderr, "cosell pc login: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "signed in as %s; the refresh token is stored in NATS bucket %s (renewed on every use, expires if unused by %s)\n",
		orUnknown(st.User), contracts.BucketPCCredentials, st.ExpiresAt().UTC().Format("2006-01-02"))
	fmt.Fprintln(stdout, "next: cosell doctor --only pc")
	return 0
}
