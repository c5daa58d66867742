package pcapi

import (
	"encoding/json"
	"reflect"
	"testing"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// The client reads every response as encoding/json would: the same referral from each body, whatever the
// spelling of its names, the members it does not know, a name given twice or a null.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	bodies := map[string]string{
		"referral":              sampleReferral,
		"names in another case": `{"ID":"r1","Name":"a","DETAILS":{"DealValue":5,"Currency":"EUR"},"Status":"New"}`,
		"a name twice":          `{"id":"r1","name":"first","name":"second","details":{"dealValue":1},"details":{"currency":"USD"}}`,
		"nulls":                 `{"id":"r1","details":null,"team":null,"customerProfile":{"address":null},"statusReason":null}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			var got, want pc.Referral
			if err := decode("referrals.get", "r1", []byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(body), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				gb, _ := json.Marshal(got)
				wb, _ := json.Marshal(want)
				t.Fatalf("decoded\n got %s\nwant %s", gb, wb)
			}
		})
	}
	var r pc.Referral
	if err := decode("referrals.get", "r1", []byte(`{"id":`), &r); err == nil {
		t.Fatal("a truncated body decoded without an error")
	}
}

// sampleReferral is a referral as Partner Center answers a read of it, every section filled.
const sampleReferral = `{"@odata.context":"https://api.partner.microsoft.com/v1.0/engagements/referrals/$metadata#Referrals/$entity",
			"id":"5ff2b8a5-9bd3-4f7e-9c3a-0a1c2e0c3b11","engagementId":"e1","organizationId":"o1","organizationName":"Contoso Partner",
			"name":"Contoso migration","externalReferenceId":"006xx","createdDateTime":"2024-05-01T10:00:00.0000000Z",
			"updatedDateTime":"2024-05-02T10:00:00.1234567Z","expirationDateTime":"2024-06-01T00:00:00Z","status":"Active",
			"substatus":"Accepted","type":"Shared","qualification":"SalesQualified","direction":"Incoming",
			"target":[{"type":"SolutionProfile","id":"s1"}],
			"customerProfile":{"name":"Contoso Ltd","size":"Size1to9Employees","isMatchingComplete":true,
				"address":{"addressLine1":"1 Microsoft Way","city":"Redmond","state":"WA","postalCode":"98052","country":"US"},
				"team":[{"firstName":"Ann","lastName":"Lee","phoneNumber":"+1 425","email":"ann@contoso.com",
					"contactPreference":{"locale":"en-US","disableNotifications":false}}],
				"ids":[{"profileType":"Duns","id":"123"}]},
			"consent":{"consentToToShareInfoWithOthers":true,"consentToContact":false},
			"details":{"notes":"é \u00e9 \ud83d\ude00","dealValue":1234567.89,"currency":"USD","closingDateTime":"2024-09-30T00:00:00Z"},
			"team":[{"firstName":"Bo","email":"bo@partner.com"}],
			"links":{"relatedReferrals":{"uri":"https://x/y?$filter=engagementId eq 'e1'","method":"GET"}},
			"eTag":"\"abc\"","somethingNew":{"nested":[1,2,3]}}`

// BenchmarkDecodeReferral is the decoding of one referral read, as the client does it and as encoding/json
// did it before.
func BenchmarkDecodeReferral(b *testing.B) {
	body := []byte(sampleReferral)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r pc.Referral
			if err := decode("referrals.get", "r1", body, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json (before)", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r pc.Referral
			if err := json.Unmarshal(body, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
