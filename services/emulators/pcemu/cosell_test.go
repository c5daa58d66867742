package pcemu

import (
	"errors"
	"testing"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// TestCoSellNeedsACustomerContact: a referral asking Microsoft for help (an assistance code other than
// Unknown) is refused without a customer contact, on create and on a patch that removes the last one.
func TestCoSellNeedsACustomerContact(t *testing.T) {
	t.Parallel()
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	value := 1000.0
	in := pc.Referral{Name: "Co-sell", Type: pc.TypeIndependent, CustomerProfile: &pc.CustomerProfile{Name: "Contoso"},
		Consent: &pc.Consent{}, Details: &pc.Details{DealValue: &value, Currency: "USD"},
		InviteContext: &pc.InviteContext{AssistanceRequestCode: "QuotesOrLicensing"}}
	var ae *apiError
	if _, err := e.create(in, false); !errors.As(err, &ae) || ae.target != "customerProfile.team" {
		t.Fatalf("co-sell without a customer contact: %v", err)
	}
	in.CustomerProfile.Team = []pc.Member{{FirstName: "Sue", LastName: "Smith", Email: "sue@contoso.com"}}
	r, err := e.create(in, false)
	if err != nil {
		t.Fatalf("co-sell with a customer contact: %v", err)
	}
	if _, _, err := e.patch(r.ID, "", []pc.PatchOp{{Op: "replace", Path: "/customerProfile/team", Value: []any{}}}); !errors.As(err, &ae) || ae.target != "customerProfile.team" {
		t.Fatalf("patch removing the last customer contact of a co-sell referral: %v", err)
	}
	in.InviteContext.AssistanceRequestCode, in.CustomerProfile.Team = "Unknown", nil
	if _, err := e.create(in, false); err != nil {
		t.Fatalf("a referral asking no help needs no contact: %v", err)
	}
}
