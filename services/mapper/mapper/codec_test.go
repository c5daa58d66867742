package mapper

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
)

// TestLinkCodecAgreesWithEncodingJSON: the link record the mapper writes (JSON v2) is the record
// encoding/json writes, as every other reader of the links bucket (the CLI, the auditor) decodes it, and a
// record encoding/json wrote (an earlier mapper's) decodes to the same value: every field set, and every
// field empty.
func TestLinkCodecAgreesWithEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 1, 12, 0, 0, 123456789, time.UTC)
	full := &stored{Link: contracts.Link{
		ID: "pc-R-1", Origin: contracts.PartnerCenter, ReferralID: "R-1", OpportunityID: "006A", SFObject: "Opportunity",
		State:  contracts.LinkLinked,
		Synced: map[string]any{"dealValue": 1500.25, "name": "Contoso <&> \u2028 é", "won": false, "none": nil, "team": []any{"a", map[string]any{"b": 1e21}}},
		PC: contracts.Side{Seen: contracts.Version{Tag: `"e1"`, At: at}, WrittenFingerprint: "f", Pending: "cmd/pc/x",
			InFlight: map[string]any{"closeDate": "2027-01-01"}, Latest: map[string]any{"small": 1e-7, "int": 42.0}},
		SF:        contracts.Side{Seen: contracts.Version{Tag: "s1", At: at}, Latest: map[string]any{}},
		LastError: "boom", Review: map[string]contracts.Review{"dealValue": {PC: 1.0, SF: "2", At: at}},
		Paused: true, Held: &contracts.Held{Reason: "r", Fields: []string{"a"}, Fingerprint: "h", Since: at},
		Status: "✔", Folded: &contracts.Folded{IDs: []string{"o1"}, Before: at},
		Audit:     &contracts.AuditTrail{Lines: []string{"l1", "l2"}, Total: 2, Sent: "s"},
		UpdatedAt: at,
	}, Outbox: []OutboxItem{{ID: "cmd/1", Type: contracts.TypeOpportunityRequested, Subject: "cosell.sf.opportunity.requested.pc-R-1",
		Data: json.RawMessage(`{"linkId":"pc-R-1","fields":{"Amount":1500.25}}`)}}}
	empty := &stored{Link: contracts.Link{ID: "sf-006B", Folded: &contracts.Folded{}, Audit: &contracts.AuditTrail{}}}
	for name, st := range map[string]*stored{"every field set": full, "every field empty": empty} {
		t.Run(name, func(t *testing.T) {
			v1, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			v2, err := encodeLink(st)
			if err != nil {
				t.Fatal(err)
			}
			// The same document, as a generic reader sees it (fields present or not, values).
			var doc1, doc2 any
			if err := json.Unmarshal(v1, &doc1); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(v2, &doc2); err != nil {
				t.Fatalf("encoding/json cannot read the record: %v\n%s", err, v2)
			}
			if !reflect.DeepEqual(doc1, doc2) {
				t.Fatalf("the records differ:\nencoding/json %s\nv2            %s", v1, v2)
			}
			// The same value, read by encoding/json (the other readers) and by the mapper, from either.
			var want stored
			if err := json.Unmarshal(v1, &want); err != nil {
				t.Fatal(err)
			}
			for which, b := range map[string][]byte{"encoding/json's record": v1, "the mapper's record": v2} {
				var got stored
				if err := decodeLink(b, &got); err != nil {
					t.Fatalf("%s: %v", which, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s decodes to\n%+v\nwant\n%+v", which, got, want)
				}
			}
		})
	}
}
