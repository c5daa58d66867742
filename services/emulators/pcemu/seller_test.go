package pcemu

import (
	"encoding/json"
	"reflect"
	"testing"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// A seller's edit merges as an RFC 7386 merge patch of the edit's JSON into the referral's JSON would (how the
// emulator applied it before, kept here as the oracle): a nested object merged member by member, an array
// replaced whole (a stored team member's other fields do not survive), a member the edit's JSON carries
// without omitempty (a consent flag) set even when false. The stored version is left as it was.
func TestSellerEditMergesAsAJSONMergePatch(t *testing.T) {
	str := func(s string) *string { return &s }
	num := func(f float64) *float64 { return &f }
	yes := true
	stored := pc.Referral{ID: "r1", Name: "Contoso", Status: pc.StatusNew, Substatus: pc.SubstatusPending,
		StatusReason: str("none"),
		CustomerProfile: &pc.CustomerProfile{Name: "Contoso Ltd", Size: "Size1to9Employees",
			Address: &pc.Address{AddressLine1: "1 Way", City: "Redmond", Country: "US"},
			Team:    []pc.Member{{FirstName: "Ann", LastName: "Lee", PhoneNumber: "555", Email: "ann@contoso.com"}}},
		Consent: &pc.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true, ConsentToShareReferralWithMicrosoftSellers: &yes},
		Details: &pc.Details{Notes: "first", DealValue: num(1000), Currency: "USD"},
		Team:    []pc.Member{{FirstName: "Bo", Email: "bo@partner.com", Title: "AE"}, {FirstName: "Cy"}},
		Target:  []pc.Target{{Type: "SolutionProfile", ID: "s1"}},
	}
	edits := map[string]pc.Referral{
		"deal value":       {Details: &pc.Details{DealValue: num(2500)}},
		"notes and status": {Status: pc.StatusActive, Substatus: pc.SubstatusAccepted, Details: &pc.Details{Notes: "second"}},
		"address city":     {CustomerProfile: &pc.CustomerProfile{Address: &pc.Address{City: "Seattle"}}},
		"customer team":    {CustomerProfile: &pc.CustomerProfile{Team: []pc.Member{{FirstName: "Dee", Email: "dee@contoso.com"}}}},
		"partner team":     {Team: []pc.Member{{FirstName: "Bo"}}},
		"consent":          {Consent: &pc.Consent{ConsentToContact: true}},
		"new object":       {TrackingInfo: &pc.TrackingInfo{MicrosoftMsxID: "msx-1"}},
		"targets":          {Target: []pc.Target{{Type: "SolutionProfile", ID: "s2"}, {Type: "BusinessLocation"}}},
		"nothing":          {},
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			before := clone(&stored)
			got := stored
			mergeFields(reflect.ValueOf(&got).Elem(), reflect.ValueOf(clone(&edit)))
			if want := jsonMergePatch(t, stored, edit); !reflect.DeepEqual(clone(&got), want) {
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				t.Fatalf("merged\n got %s\nwant %s", gb, wb)
			}
			if !reflect.DeepEqual(clone(&stored), before) {
				t.Fatal("the edit changed the stored version in place")
			}
		})
	}
}

// jsonMergePatch is RFC 7386 applied to the JSON of doc and patch, decoded back.
func jsonMergePatch(t *testing.T, doc, patch pc.Referral) pc.Referral {
	t.Helper()
	var d, p map[string]any
	db, _ := json.Marshal(doc)
	pb, _ := json.Marshal(patch)
	if json.Unmarshal(db, &d) != nil || json.Unmarshal(pb, &p) != nil {
		t.Fatal("unreadable JSON")
	}
	var merge func(doc, patch map[string]any)
	merge = func(doc, patch map[string]any) {
		for k, v := range patch {
			pm, isMap := v.(map[string]any)
			dm, hasMap := doc[k].(map[string]any)
			switch {
			case v == nil:
				delete(doc, k)
			case isMap && hasMap:
				merge(dm, pm)
			default:
				doc[k] = v
			}
		}
	}
	merge(d, p)
	mb, _ := json.Marshal(d)
	var out pc.Referral
	if err := json.Unmarshal(mb, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
