// Package emutest serves the emulators over real HTTP on 127.0.0.1 for tests and hands back the real
// clients logged in to them, so a test talks to an emulator exactly as a stage does.
package emutest

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
)

// Salesforce starts a Salesforce emulator with opts on a free loopback port (closed by t.Cleanup) and logs
// a client into it with the emulator's default connected app.
func Salesforce(t testing.TB, opts sfemu.Options) (*sfemu.Emulator, *sfapi.Client) {
	t.Helper()
	emu, err := sfemu.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	client, err := sfapi.New(t.Context(), sfapi.Config{Domain: srv.URL, ClientID: sfemu.DefaultClientID,
		ClientSecret: sfemu.DefaultClientSecret, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return emu, client
}
