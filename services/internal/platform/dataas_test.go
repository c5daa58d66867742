package platform

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/cosell-dev/cosell/contracts"
)

// TestDataAsAgreesWithEncodingJSON: DataAs (JSON v2 under encoding/json's rules) reads an event's data as
// encoding/json does: the same value, or an error for the same data, whatever the producer wrote (other
// cases of a name, a name twice, invalid UTF-8, unknown fields, nulls, wrong types).
func TestDataAsAgreesWithEncodingJSON(t *testing.T) {
	ev := func(data string) Event {
		e, err := NewEvent("id/"+data, contracts.TypeReferralObserved, contracts.StagePCIngest, "R", json.RawMessage(data))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	referrals := []Event{
		ev(`{"referral":{"id":"R-data","name":"Outbox R-data","status":"New","eTag":"e2","updatedDateTime":"2026-11-01T12:00:02Z",` +
			`"customerProfile":{"name":"Outbox Customer","address":{"city":"Redmond","postalCode":"98052","country":"US"}},` +
			`"consent":{"consentToToShareInfoWithOthers":true,"consentToContact":true},` +
			`"details":{"dealValue":2000,"currency":"USD","closingDateTime":"2027-02-15T00:00:00Z"}},` +
			`"version":{"tag":"e2","at":"2026-11-01T12:00:02Z"},"observedAt":"2026-11-01T12:00:02Z"}`),
		ev(`{"referral":{"id":"R1","ID":"R2","details":{"dealValue":12.5}},"unknown":{"x":[1,2]},"version":null}`),
		ev("{\"referral\":{\"id\":\"R3\",\"name\":\"raw \xff\xfe bytes\"}}"),
		ev(`{"REFERRAL":{"Id":"R4","customerProfile":null}}`),
		ev(`{"referral":{"id":5}}`),
		ev(`[]`),
	}
	for _, e := range referrals {
		var want contracts.ReferralObserved
		werr := json.Unmarshal(e.Data(), &want)
		got, gerr := DataAs[contracts.ReferralObserved](e)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%s: encoding/json error %v, DataAs's %v", e.Data(), werr, gerr)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", e.Data(), got, want)
		}
	}
	out := ev(`{"linkId":"pc-R","commandId":"c","system":"pc","op":"create","status":"written","referral":{"id":"R","details":{"dealValue":1}},"version":{"tag":"t","at":"2026-11-01T12:00:00Z"},"at":"2026-11-01T12:00:01.5Z"}`)
	var want contracts.Outcome
	werr := json.Unmarshal(out.Data(), &want)
	got, gerr := DataAs[contracts.Outcome](out)
	if werr != nil || gerr != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("outcome: got %+v (%v), want %+v (%v)", got, gerr, want, werr)
	}
}
