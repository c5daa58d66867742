package main

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// emulatorFlags are cosell emulator's settings.
type emulatorFlags struct {
	listen, caOut, loginListen, jwtCert, currency, pubsubListen string
	sandbox, singleCurrency, approve                            bool
	interval                                                    time.Duration
}

func newEmulatorCmd() *cobra.Command {
	var f emulatorFlags
	cmd := &cobra.Command{
		Use:   "emulator pc|sf",
		Short: "serve the Partner Center or Salesforce emulator on its own",
		Long: `Serve the Partner Center emulator (pc: Referrals API, webhooks API, Entra ID sign-in, signed webhook
deliveries) or the Salesforce emulator (sf: REST API, OAuth token endpoint, Pub/Sub API) on its own, for
development and tests. It prints its credentials; the real clients talk to it unchanged.`,
		Example:   "  cosell emulator pc --listen 127.0.0.1:8081 --approve-sign-ins\n  cosell emulator sf --listen 127.0.0.1:8082",
		ValidArgs: []string{"pc", "sf"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
	}
	fs := cmd.Flags()
	fs.StringVar(&f.listen, "listen", "", "address to listen on (default 127.0.0.1:8081 for pc, 127.0.0.1:8082 for sf)")
	fs.StringVar(&f.caOut, "ca-out", "", "pc only: write the webhook-signing CA certificate (PEM) here, for COSELL_PC_WEBHOOK_CA_FILE")
	fs.StringVar(&f.loginListen, "login-listen", "", "sf only: also serve the shared login host (as login.salesforce.com: no client credentials flow) on this address; --listen is the org's My Domain")
	fs.StringVar(&f.jwtCert, "jwt-cert", "", "sf only: the connected app's certificate (PEM) for the JWT bearer flow; without it JWT logins fail")
	fs.BoolVar(&f.sandbox, "sandbox", false, "sf only: emulate a sandbox (JWT audience https://test.salesforce.com)")
	fs.BoolVar(&f.singleCurrency, "single-currency", false, "sf only: emulate a single-currency org (no CurrencyIsoCode field anywhere)")
	fs.StringVar(&f.currency, "currency", "USD", "sf only: the org's corporate currency (Organization.DefaultCurrencyIsoCode)")
	fs.StringVar(&f.pubsubListen, "pubsub-listen", "127.0.0.1:8083", "sf only: serve the Pub/Sub API (gRPC, plaintext; Change Data Capture) on this address; \"\" turns it off")
	fs.DurationVar(&f.interval, "device-code-interval", 5*time.Second, "pc only: the polling interval the device-code sign-in asks for (Entra ID's is 5s)")
	fs.BoolVar(&f.approve, "approve-sign-ins", false, "pc only: sign every device code in as "+pcemu.DefaultUser+" at once, so cosell pc login needs no browser (development only)")
	out := addOutput(cmd)
	cmd.RunE = runE(func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return runEmulator(ctx, args[0], f, out, stdout, stderr)
	})
	return cmd
}

// emulatorInfo is what cosell emulator prints: where it serves and the credentials it accepts.
type emulatorInfo struct {
	Emulator     string `json:"emulator"`
	URL          string `json:"url"`
	Authority    string `json:"authority,omitempty"`
	DeviceLogin  string `json:"deviceLogin,omitempty"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret,omitempty"`
	User         string `json:"user"`
	Org          string `json:"org,omitempty"`
	LoginHost    string `json:"loginHost,omitempty"`
	PubSub       string `json:"pubSub,omitempty"`
}

func (i emulatorInfo) print(w io.Writer) {
	if i.Emulator == "pc" {
		fmt.Fprintf(w, "Partner Center emulator on %s\n  authority %s (COSELL_PC_AUTHORITY), client id %s\n"+
			"  sign in: cosell pc login, then approve the code at %s as %s\n", i.URL, i.Authority, i.ClientID, i.DeviceLogin, i.User)
		return
	}
	fmt.Fprintf(w, "Salesforce emulator on %s (the org's My Domain; %s)\n  client id %s, secret %s, user %s\n", i.URL,
		i.Org, i.ClientID, i.ClientSecret, i.User)
	if i.LoginHost != "" {
		fmt.Fprintf(w, "  login host on %s (as login.salesforce.com)\n", i.LoginHost)
	}
	if i.PubSub != "" {
		fmt.Fprintf(w, "  Pub/Sub API (gRPC) on %s: COSELL_SF_PUBSUB_URL=http://%s\n", i.PubSub, i.PubSub)
	}
}

func runEmulator(ctx context.Context, which string, f emulatorFlags, out *output, stdout, stderr io.Writer) int {
	if f.listen == "" {
		f.listen = map[string]string{"pc": "127.0.0.1:8081", "sf": "127.0.0.1:8082"}[which]
	}
	log := platform.NewLogger(stderr, "info", "emulator-"+which)
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		fmt.Fprintf(stderr, "cosell emulator %s: %v\n", which, err)
		return 1
	}
	base := "http://" + ln.Addr().String()
	info := emulatorInfo{Emulator: which, URL: base}
	var h http.Handler
	var pubsub func(context.Context) // serves the Salesforce emulator's Pub/Sub API until the context ends
	switch which {
	case "pc":
		e, err := pcemu.New(pcemu.Options{BaseURL: base, Logger: log, DeviceCodeInterval: f.interval, ApproveSignIns: f.approve})
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer e.Close()
		if f.caOut != "" {
			b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.CACert().Raw})
			if err := os.WriteFile(f.caOut, b, 0o644); err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
		}
		info.Authority, info.ClientID, info.DeviceLogin, info.User = e.Authority(), e.ClientID(), base+"/_emulator/devicelogin", pcemu.DefaultUser
		h = e
	case "sf":
		opts := sfemu.Options{Logger: log, Sandbox: f.sandbox, SingleCurrency: f.singleCurrency, Currency: f.currency}
		if f.jwtCert != "" {
			key, err := sfemu.ReadCertificateKey(f.jwtCert)
			if err != nil {
				fmt.Fprintf(stderr, "cosell emulator sf: --jwt-cert: %v\n", err)
				return 1
			}
			opts.JWTPublicKey = key
		}
		e, err := sfemu.New(opts)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		shape := "multi-currency, corporate currency " + f.currency
		if f.singleCurrency {
			shape = "single-currency, " + f.currency
		}
		info.Org, info.ClientID, info.ClientSecret, info.User = shape, sfemu.DefaultClientID, sfemu.DefaultClientSecret, sfemu.DefaultUsername
		if f.loginListen != "" {
			lln, err := net.Listen("tcp", f.loginListen)
			if err != nil {
				fmt.Fprintf(stderr, "cosell emulator sf: --login-listen: %v\n", err)
				return 1
			}
			login := &http.Server{Handler: e.LoginHost(base), ReadHeaderTimeout: 10 * time.Second}
			defer login.Close()
			go func() { _ = login.Serve(lln) }()
			info.LoginHost = "http://" + lln.Addr().String()
		}
		if f.pubsubListen != "" {
			pln, err := net.Listen("tcp", f.pubsubListen)
			if err != nil {
				fmt.Fprintf(stderr, "cosell emulator sf: --pubsub-listen: %v\n", err)
				return 1
			}
			info.PubSub = pln.Addr().String()
			pubsub = func(ctx context.Context) {
				if err := e.ServePubSub(ctx, pln); err != nil {
					log.Error("pub/sub api server stopped", "err", err)
				}
			}
		}
		h = e
	}
	out.print(stdout, info, info.print)
	ctx, stop := platform.RunUntilSignal(ctx)
	defer stop()
	if pubsub != nil {
		go pubsub(ctx)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
