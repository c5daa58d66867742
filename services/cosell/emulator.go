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

	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

func cmdEmulator(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "pc" && args[0] != "sf") {
		fmt.Fprintln(stderr, "usage: cosell emulator pc|sf [--listen ADDR] [--ca-out FILE] [--login-listen ADDR] [--jwt-cert FILE] [--sandbox] [--single-currency] [--currency ISO] [--pubsub-listen ADDR]")
		return 2
	}
	which := args[0]
	fs := flags("emulator "+which, "serve the "+map[string]string{"pc": "Partner Center", "sf": "Salesforce"}[which]+" emulator", stderr)
	def := map[string]string{"pc": "127.0.0.1:8081", "sf": "127.0.0.1:8082"}[which]
	listen := fs.String("listen", def, "address to listen on")
	caOut := fs.String("ca-out", "", "pc only: write the webhook-signing CA certificate (PEM) here, for COSELL_PC_WEBHOOK_CA_FILE")
	loginListen := fs.String("login-listen", "", "sf only: also serve the shared login host (as login.salesforce.com: no client credentials flow) on this address; --listen is the org's My Domain")
	jwtCert := fs.String("jwt-cert", "", "sf only: the connected app's certificate (PEM) for the JWT bearer flow; without it JWT logins fail")
	sandbox := fs.Bool("sandbox", false, "sf only: emulate a sandbox (JWT audience https://test.salesforce.com)")
	singleCurrency := fs.Bool("single-currency", false, "sf only: emulate a single-currency org (no CurrencyIsoCode field anywhere)")
	currency := fs.String("currency", "USD", "sf only: the org's corporate currency (Organization.DefaultCurrencyIsoCode)")
	pubsubListen := fs.String("pubsub-listen", "127.0.0.1:8083", "sf only: serve the Pub/Sub API (gRPC, plaintext; Change Data Capture) on this address; \"\" turns it off")
	interval := fs.Duration("device-code-interval", 5*time.Second, "pc only: the polling interval the device-code sign-in asks for (Entra ID's is 5s)")
	approve := fs.Bool("approve-sign-ins", false, "pc only: sign every device code in as "+pcemu.DefaultUser+" at once, so cosell pc login needs no browser (development only)")
	if done, code := parse(fs, args[1:]); done {
		return code
	}
	log := platform.NewLogger(stderr, "info", "emulator-"+which)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "cosell emulator %s: %v\n", which, err)
		return 1
	}
	base := "http://" + ln.Addr().String()
	var h http.Handler
	var pubsub func(context.Context) // serves the Salesforce emulator's Pub/Sub API until the context ends
	switch which {
	case "pc":
		e, err := pcemu.New(pcemu.Options{BaseURL: base, Logger: log, DeviceCodeInterval: *interval, ApproveSignIns: *approve})
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer e.Close()
		if *caOut != "" {
			b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.CACert().Raw})
			if err := os.WriteFile(*caOut, b, 0o644); err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
		}
		fmt.Fprintf(stdout, "Partner Center emulator on %s\n  authority %s (COSELL_PC_AUTHORITY), client id %s\n"+
			"  sign in: cosell pc login, then approve the code at %s/_emulator/devicelogin as %s\n", base, e.Authority(), e.ClientID(), base, pcemu.DefaultUser)
		h = e
	case "sf":
		opts := sfemu.Options{Logger: log, Sandbox: *sandbox, SingleCurrency: *singleCurrency, Currency: *currency}
		if *jwtCert != "" {
			key, err := sfemu.ReadCertificateKey(*jwtCert)
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
		shape := "multi-currency, corporate currency " + *currency
		if *singleCurrency {
			shape = "single-currency, " + *currency
		}
		fmt.Fprintf(stdout, "Salesforce emulator on %s (the org's My Domain; %s)\n  client id %s, secret %s, user %s\n", base,
			shape, sfemu.DefaultClientID, sfemu.DefaultClientSecret, sfemu.DefaultUsername)
		if *loginListen != "" {
			lln, err := net.Listen("tcp", *loginListen)
			if err != nil {
				fmt.Fprintf(stderr, "cosell emulator sf: --login-listen: %v\n", err)
				return 1
			}
			login := &http.Server{Handler: e.LoginHost(base), ReadHeaderTimeout: 10 * time.Second}
			defer login.Close()
			go func() { _ = login.Serve(lln) }()
			fmt.Fprintf(stdout, "  login host on http://%s (as login.salesforce.com)\n", lln.Addr())
		}
		if *pubsubListen != "" {
			pln, err := net.Listen("tcp", *pubsubListen)
			if err != nil {
				fmt.Fprintf(stderr, "cosell emulator sf: --pubsub-listen: %v\n", err)
				return 1
			}
			fmt.Fprintf(stdout, "  Pub/Sub API (gRPC) on %s: COSELL_SF_PUBSUB_URL=http://%s\n", pln.Addr(), pln.Addr())
			pubsub = func(ctx context.Context) {
				if err := e.ServePubSub(ctx, pln); err != nil {
					log.Error("pub/sub api server stopped", "err", err)
				}
			}
		}
		h = e
	}
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
