package pcapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

func float(v float64) *float64 { return &v }

func newReferral(name, ext string) pc.Referral {
	return pc.Referral{
		Name: name, ExternalReferenceID: ext, Type: pc.TypeShared,
		CustomerProfile: &pc.CustomerProfile{Name: "Fabrikam", Address: &pc.Address{Country: "US"}},
		Consent:         &pc.Consent{ConsentToContact: true},
		Details:         &pc.Details{DealValue: float(1000), Currency: "USD"},
		Status:          pc.StatusNew, Substatus: pc.SubstatusPending,
	}
}

func TestTokenFlowAndUnauthenticated(t *testing.T) {
	t.Parallel()
	emu, c := emutest.PartnerCenter(t, pcemu.Options{})
	if _, err := c.GetReferral(context.Background(), "nope"); !pcapi.IsNotFound(err) {
		t.Fatalf("want 404, got %v", err)
	}
	if emu.Counts()["token"] != 1 {
		t.Fatalf("token calls = %v", emu.Counts())
	}

	// No bearer at all.
	resp, err := http.Get(strings.TrimSuffix(emu.TokenURL(), "/"+emu.TenantID()+"/oauth2/v2.0/token") + "/v1.0/engagements/referrals")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: status %d", resp.StatusCode)
	}

}

func TestTokenExpiryIsRefreshed(t *testing.T) {
	t.Parallel()
	emu, c := emutest.PartnerCenter(t, pcemu.Options{})
	ctx := context.Background()
	r, err := c.CreateReferral(ctx, newReferral("deal", "006A"))
	if err != nil {
		t.Fatal(err)
	}
	emu.ExpireTokens()
	if _, err := c.GetReferral(ctx, r.ID); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if got := emu.Counts()["token"]; got != 2 {
		t.Fatalf("token calls = %d, want 2", got)
	}
	if got := c.Calls()["referrals.get 401"]; got != 1 {
		t.Fatalf("calls = %v", c.Calls())
	}
}

func TestCreateGetAndValidation(t *testing.T) {
	t.Parallel()
	_, c := emutest.PartnerCenter(t, pcemu.Options{})
	ctx := context.Background()
	r, err := c.CreateReferral(ctx, newReferral("deal", "006A"))
	if err != nil {
		t.Fatal(err)
	}
	if r.ID == "" || r.EngagementID == "" || r.ETag == "" || r.Links == nil || r.Status != pc.StatusActive ||
		r.Substatus != pc.SubstatusAccepted || r.Direction != pc.DirectionOutgoing || r.OrganizationID == "" {
		t.Fatalf("created: %+v", r)
	}
	if !strings.HasPrefix(r.ETag, `"`) {
		t.Fatalf("eTag not quoted: %s", r.ETag)
	}
	got, err := c.GetReferral(ctx, r.ID)
	if err != nil || got.ETag != r.ETag || got.Name != "deal" {
		t.Fatalf("get: %+v %v", got, err)
	}

	for _, tc := range []struct {
		name   string
		edit   func(*pc.Referral)
		target string
	}{
		{"no type", func(r *pc.Referral) { r.Type = "" }, "type"},
		{"no name", func(r *pc.Referral) { r.Name = "" }, "name"},
		{"no customer", func(r *pc.Referral) { r.CustomerProfile = nil }, "customerProfile"},
		{"no customer name", func(r *pc.Referral) { r.CustomerProfile.Name = "" }, "customerProfile.name"},
		{"no consent", func(r *pc.Referral) { r.Consent = nil }, "consent"},
		{"no details", func(r *pc.Referral) { r.Details = nil }, "details"},
		{"currency", func(r *pc.Referral) { r.Details.Currency = "usd" }, "details.currency"},
		{"country", func(r *pc.Referral) { r.CustomerProfile.Address.Country = "USA" }, "customerProfile.address.country"},
		{"deal value", func(r *pc.Referral) { r.Details.DealValue = float(-1) }, "details.dealValue"},
	} {
		in := newReferral("x", "y")
		tc.edit(&in)
		_, err := c.CreateReferral(ctx, in)
		var ae *pcapi.APIError
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != "invalidRequest" {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if pcapi.IsTransient(err) {
			t.Errorf("%s: 400 is not transient", tc.name)
		}
	}
}

func TestListFilterOrderPaging(t *testing.T) {
	t.Parallel()
	emu, c := emutest.PartnerCenter(t, pcemu.Options{})
	ctx := context.Background()
	var ids []string
	for i := range 130 {
		r, err := c.CreateReferral(ctx, newReferral(fmt.Sprintf("deal %d", i), fmt.Sprintf("EXT-%03d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	in, err := emu.SellerCreate(pc.Referral{Name: "from msft"})
	if err != nil {
		t.Fatal(err)
	}

	var all []pc.Referral
	if err := c.ListReferrals(ctx, pcapi.ListOptions{}, func(r pc.Referral) error { all = append(all, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) != 131 || emu.Counts()["referrals.list"] != 2 {
		t.Fatalf("listed %d in %d calls", len(all), emu.Counts()["referrals.list"])
	}

	var desc []pc.Referral
	err = c.ListReferrals(ctx, pcapi.ListOptions{Filter: "direction eq 'Outgoing' and status eq 'Active'", OrderBy: "createdDateTime desc", Top: 50},
		func(r pc.Referral) error { desc = append(desc, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(desc) != 130 || desc[0].ID != ids[129] || desc[129].ID != ids[0] {
		t.Fatalf("desc: %d items", len(desc))
	}

	var incoming []pc.Referral
	err = c.ListReferrals(ctx, pcapi.ListOptions{Filter: "(direction eq 'Incoming' and substatus eq 'Pending')"},
		func(r pc.Referral) error { incoming = append(incoming, r); return nil })
	if err != nil || len(incoming) != 1 || incoming[0].ID != in.ID {
		t.Fatalf("incoming: %v %v", incoming, err)
	}

	// Incremental pull on an unquoted datetime.
	var since []pc.Referral
	err = c.ListReferrals(ctx, pcapi.ListOptions{Filter: "updatedDateTime gt " + all[127].UpdatedDateTime, OrderBy: "updatedDateTime asc"},
		func(r pc.Referral) error { since = append(since, r); return nil })
	if err != nil || len(since) != 3 {
		t.Fatalf("since: %d %v", len(since), err)
	}

	// A property the docs do not list as filterable is refused, as an OData service does.
	err = c.ListReferrals(ctx, pcapi.ListOptions{Filter: "externalReferenceId eq 'EXT-042'"}, func(pc.Referral) error { return nil })
	var ae *pcapi.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "externalReferenceId") {
		t.Fatalf("undocumented filter: %v", err)
	}

	stop := errors.New("stop")
	if err := c.ListReferrals(ctx, pcapi.ListOptions{}, func(pc.Referral) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("fn error: %v", err)
	}
	for _, bad := range []pcapi.ListOptions{{Top: 101}, {Filter: "nope eq 'x'"}, {OrderBy: "name asc"}, {Filter: "status eq"}} {
		if err := c.ListReferrals(ctx, bad, func(pc.Referral) error { return nil }); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestPatch(t *testing.T) {
	t.Parallel()
	emu, c := emutest.PartnerCenter(t, pcemu.Options{})
	ctx := context.Background()
	r, err := c.CreateReferral(ctx, newReferral("deal", "006A"))
	if err != nil {
		t.Fatal(err)
	}
	up, err := c.PatchReferral(ctx, r.ID, r.ETag, []pc.PatchOp{
		{Op: "replace", Path: "/details/dealValue", Value: 2500},
		{Op: "add", Path: "/team/-", Value: map[string]any{"firstName": "Ann", "email": "ann@contoso.com"}},
		{Op: "add", Path: "/details/requirements/solutions/-", Value: map[string]any{"id": "SOL-1", "name": "One"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *up.Details.DealValue != 2500 || up.ETag == r.ETag || up.UpdatedDateTime <= r.UpdatedDateTime ||
		len(up.Team) != 1 || len(up.Details.Requirements.Solutions) != 1 {
		t.Fatalf("patched: %+v", up)
	}

	// Stale eTag.
	_, err = c.PatchReferral(ctx, r.ID, r.ETag, []pc.PatchOp{{Op: "replace", Path: "/details/notes", Value: "x"}})
	if !pcapi.IsPreconditionFailed(err) || pcapi.IsTransient(err) {
		t.Fatalf("stale eTag: %v", err)
	}
	if !strings.Contains(err.Error(), r.ID) || !strings.Contains(err.Error(), "412") || !strings.Contains(err.Error(), "referrals.patch") {
		t.Fatalf("error text: %v", err)
	}

	for _, tc := range []struct {
		name string
		ops  []pc.PatchOp
	}{
		{"remove op", []pc.PatchOp{{Op: "remove", Path: "/details/notes"}}},
		{"customer name", []pc.PatchOp{{Op: "replace", Path: "/customerProfile/name", Value: "x"}}},
		{"type", []pc.PatchOp{{Op: "replace", Path: "/type", Value: "Independent"}}},
		{"active to new", []pc.PatchOp{{Op: "replace", Path: "/status", Value: "New"}, {Op: "replace", Path: "/substatus", Value: "Pending"}}},
		{"substatus mismatch", []pc.PatchOp{{Op: "replace", Path: "/status", Value: "Closed"}, {Op: "replace", Path: "/substatus", Value: "Accepted"}}},
		{"partner expires", []pc.PatchOp{{Op: "replace", Path: "/status", Value: "Closed"}, {Op: "replace", Path: "/substatus", Value: "Expired"}}},
		{"bad currency", []pc.PatchOp{{Op: "replace", Path: "/details/currency", Value: "XXX1"}}},
		{"bad type", []pc.PatchOp{{Op: "replace", Path: "/details/dealValue", Value: "lots"}}},
	} {
		_, err := c.PatchReferral(ctx, r.ID, "", tc.ops)
		var ae *pcapi.APIError
		if !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("%s: %v", tc.name, err)
		}
	}

	won, err := c.PatchReferral(ctx, r.ID, "", []pc.PatchOp{{Op: "replace", Path: "/status", Value: "Closed"}, {Op: "replace", Path: "/substatus", Value: "Won"}})
	if err != nil || won.Status != pc.StatusClosed || won.ClosedDateTime == nil {
		t.Fatalf("won: %+v %v", won, err)
	}
	_, err = c.PatchReferral(ctx, r.ID, "", []pc.PatchOp{{Op: "replace", Path: "/details/notes", Value: "after"}})
	if !pcapi.IsConflict(err) || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("closed edit: %v", err)
	}
	if _, err := emu.SellerUpdate(r.ID, pc.Referral{Name: "x"}); err == nil {
		t.Fatal("seller edited a closed referral")
	}

	// Incoming: New/Pending → Active/Accepted is allowed; New/Received too.
	in, err := emu.SellerCreate(pc.Referral{Name: "msft"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchReferral(ctx, in.ID, in.ETag, []pc.PatchOp{{Op: "replace", Path: "/substatus", Value: "Received"}}); err != nil {
		t.Fatal(err)
	}
	acc, err := c.PatchReferral(ctx, in.ID, "", []pc.PatchOp{{Op: "replace", Path: "/status", Value: "Active"}, {Op: "replace", Path: "/substatus", Value: "Accepted"}})
	if err != nil || acc.AcceptedDateTime == nil {
		t.Fatalf("accept: %+v %v", acc, err)
	}
}

func TestThrottlingAndFaults(t *testing.T) {
	t.Parallel()
	emu, c := emutest.PartnerCenter(t, pcemu.Options{RateLimit: 0.5})
	ctx := context.Background()
	if _, err := c.GetReferral(ctx, "a"); !pcapi.IsNotFound(err) {
		t.Fatal(err)
	}
	_, err := c.GetReferral(ctx, "a")
	d, ok := pcapi.IsThrottled(err)
	if !ok || d < time.Second || !pcapi.IsTransient(err) {
		t.Fatalf("throttled: %v %v %v", d, ok, err)
	}

	emu2, c2 := emutest.PartnerCenter(t, pcemu.Options{})
	emu2.SetFaults(pcemu.Faults{Fail5xx: 1, Throttle429: 1})
	_, err = c2.GetReferral(ctx, "a")
	if _, ok := pcapi.IsThrottled(err); !ok {
		t.Fatalf("fault 429: %v", err)
	}
	_, err = c2.GetReferral(ctx, "a")
	var ae *pcapi.APIError
	if !errors.As(err, &ae) || ae.Status != 503 || !pcapi.IsTransient(err) || ae.RetryAfter != time.Second {
		t.Fatalf("fault 503: %v", err)
	}
	if _, err := c2.GetReferral(ctx, "a"); !pcapi.IsNotFound(err) {
		t.Fatalf("after faults: %v", err)
	}
	_ = emu
}

func TestNetworkErrorIsTransient(t *testing.T) {
	t.Parallel()
	emu, base := emutest.PartnerCenterServer(t, pcemu.Options{})
	cfg := emutest.PartnerCenterConfig(emu, base)
	cfg.ReferralsBaseURL = "http://127.0.0.1:1"
	c, err := pcapi.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetReferral(context.Background(), "x")
	if err == nil || !pcapi.IsTransient(err) {
		t.Fatalf("network: %v", err)
	}
}
