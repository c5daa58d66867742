package pcapi_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/clients/apicall"
	"github.com/cosell-dev/cosell/services/internal/clients/apicall/apicalltest"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

func TestEachClientReportsToItsOwnObserver(t *testing.T) {
	t.Parallel()
	emu, base := emutest.PartnerCenterServer(t, pcemu.Options{})
	client := func(obs apicall.Observer) *pcapi.Client {
		cfg := emutest.PartnerCenterConfig(emu, base)
		cfg.Observer = obs
		c, err := pcapi.New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var ra, rb apicalltest.Recorder
	a, b := client(ra.Observe), client(rb.Observe)
	created, err := a.CreateReferral(t.Context(), newReferral("Contoso", "sf-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetReferral(t.Context(), created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetReferral(t.Context(), "nope"); !pcapi.IsNotFound(err) {
		t.Fatalf("want 404, got %v", err)
	}
	if got, want := ra.Calls(), []apicall.Call{{Op: "token", Status: http.StatusOK}, {Op: "referrals.create", Status: http.StatusCreated}}; !slices.Equal(got, want) {
		t.Fatalf("client a's observer saw %+v, want %+v", got, want)
	}
	got := rb.Calls()
	if len(got) != 3 || got[0].Op != "token" || got[1] != (apicall.Call{Op: "referrals.get", Status: http.StatusOK}) ||
		got[2].Op != "referrals.get" || got[2].Status != http.StatusNotFound || got[2].Code == "" {
		t.Fatalf("client b's observer saw %+v, want token, a 200 and a 404 with its error code", got)
	}
}
