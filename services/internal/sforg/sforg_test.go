package sforg

import (
	"errors"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
	"reflect"
	"strings"
	"testing"
	"time"

	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
)

// discover runs Discover over HTTP against an emulated org of the given shape.
func discover(t *testing.T, opts sfemu.Options) *Org {
	t.Helper()
	_, c := emutest.Salesforce(t, opts)
	o, err := Discover(t.Context(), c, sf.ObjectOpportunity)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestSelectFollowsTheOrgShape(t *testing.T) {
	t.Parallel()
	wanted := []string{sf.FieldID, sf.FieldAmount, sf.FieldCurrencyIsoCode, sf.FieldReferralIdentifier, "Account.Name", "Account.CurrencyIsoCode"}
	multi := discover(t, sfemu.Options{Currency: "EUR"})
	got, fallback, err := multi.Select(t.Context(), sf.ObjectOpportunity, wanted)
	if err != nil || !reflect.DeepEqual(got, wanted) || len(fallback) != 0 || !multi.MultiCurrency(t.Context()) || multi.Currency != "EUR" {
		t.Fatalf("multi-currency: %v %v %v (multi %v, %s)", got, fallback, err, multi.MultiCurrency(t.Context()), multi.Currency)
	}
	single := discover(t, sfemu.Options{SingleCurrency: true, Currency: "GBP"})
	got, fallback, err = single.Select(t.Context(), sf.ObjectOpportunity, wanted)
	want := []string{sf.FieldID, sf.FieldAmount, sf.FieldReferralIdentifier, "Account.Name"}
	if err != nil || !reflect.DeepEqual(got, want) || single.MultiCurrency(t.Context()) {
		t.Fatalf("single-currency: %v, want %v (%v)", got, want, err)
	}
	if fallback[sf.FieldCurrencyIsoCode] != "GBP" || fallback["Account.CurrencyIsoCode"] != "GBP" {
		t.Fatalf("fallbacks %v, want the org's GBP", fallback)
	}
}

func TestMissingFieldIsAClearError(t *testing.T) {
	t.Parallel()
	o := discover(t, sfemu.Options{})
	_, _, err := o.Select(t.Context(), sf.ObjectOpportunity, []string{sf.FieldName, "Deal_Size__c", "Account.Nope__c", "Nobody.Name"})
	var mf *MissingFields
	if !errors.As(err, &mf) || !reflect.DeepEqual(mf.Fields, []string{"Account.Nope__c", "Deal_Size__c", "Nobody.Name"}) {
		t.Fatalf("err %v", err)
	}
	for _, part := range []string{"Opportunity field Account.Nope__c, Deal_Size__c, Nobody.Name", "sf project deploy start", "Cosell_Integration", "COSELL_MAPPING_FILE"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
}

func TestFitDropsOnlyWhatTheOrgImplies(t *testing.T) {
	t.Parallel()
	single := discover(t, sfemu.Options{SingleCurrency: true, Currency: "USD"})
	in := map[string]any{sf.FieldName: "x", sf.FieldCurrencyIsoCode: "usd", sf.FieldAmount: 10.0}
	out, err := single.Fit(t.Context(), sf.ObjectOpportunity, in)
	if err != nil || !reflect.DeepEqual(out, map[string]any{sf.FieldName: "x", sf.FieldAmount: 10.0}) || in[sf.FieldCurrencyIsoCode] != "usd" {
		t.Fatalf("fit %v %v (input %v)", out, err, in)
	}
	_, err = single.Fit(t.Context(), sf.ObjectOpportunity, map[string]any{sf.FieldCurrencyIsoCode: "EUR"})
	if !errors.Is(err, ErrCurrencyMismatch) || !strings.Contains(err.Error(), "Opportunity.CurrencyIsoCode is EUR but the org is single-currency (USD)") {
		t.Fatalf("EUR into a USD org: %v", err)
	}
	multi := discover(t, sfemu.Options{})
	if out, err := multi.Fit(t.Context(), sf.ObjectOpportunity, map[string]any{sf.FieldCurrencyIsoCode: "EUR"}); err != nil || out[sf.FieldCurrencyIsoCode] != "EUR" {
		t.Fatalf("multi-currency fit: %v %v", out, err)
	}
}

func TestWaitOutlastsAnOutage(t *testing.T) {
	t.Parallel()
	e, c := emutest.Salesforce(t, sfemu.Options{})
	e.FailNextCalls(2)
	o, err := Wait(t.Context(), c, 10*time.Millisecond, nil, sf.ObjectOpportunity)
	if err != nil || o.Currency != "USD" {
		t.Fatalf("Wait: %v %v", o, err)
	}
	if _, err := Wait(t.Context(), c, 10*time.Millisecond, nil, "Nope__c"); err == nil || sfapi.IsTransient(err) {
		t.Fatalf("unknown object: %v", err)
	}
}
