package mapper

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/mapper/decide"
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
			var buf bytes.Buffer
			buf.WriteString("what the buffer held before")
			if err := encodeLink(&buf, st); err != nil {
				t.Fatal(err)
			}
			v1, v2 := sameDocument(t, st, buf.Bytes())
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

// sameDocument fails t unless v encodes by encodeJSON (or is encoded as v2, when not nil) to the document
// encoding/json writes, as a generic reader sees it (the fields present or not, their values); it
// returns both encodings.
func sameDocument(t *testing.T, v any, v2 []byte) (v1, _ []byte) {
	t.Helper()
	v1, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if v2 == nil {
		if v2, err = encodeJSON(v); err != nil {
			t.Fatal(err)
		}
	}
	var doc1, doc2 any
	if err := json.Unmarshal(v1, &doc1); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(v2, &doc2); err != nil {
		t.Fatalf("encoding/json cannot read it: %v\n%s", err, v2)
	}
	if !reflect.DeepEqual(doc1, doc2) {
		t.Fatalf("the documents differ:\nencoding/json %s\nv2            %s", v1, v2)
	}
	return v1, v2
}

// TestOutboxCodecAgreesWithEncodingJSON: the events the mapper publishes (a create command each way, with
// the decision it carries, an update with its changed fields, and audited decisions) are the documents
// encoding/json writes, as the writers and the auditor decode them.
func TestOutboxCodecAgreesWithEncodingJSON(t *testing.T) {
	m, err := mapping.Load(mapping.Config{})
	if err != nil {
		t.Fatal(err)
	}
	d := decide.Decider{Mapping: m}
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ref := referralSeen(t, "R-codec", 1)
	r, err := platform.DataAs[contracts.ReferralObserved](ref)
	if err != nil {
		t.Fatal(err)
	}
	fromPC := d.Observe(nil, d.ObserveReferral(ref.ID(), r.Referral, r.Version), now)
	opp := contracts.Opportunity{ID: "006CODEC", Fields: map[string]any{
		sf.FieldName: "Fabrikam <rollout> & more", sf.FieldAmount: 1200.5, sf.FieldCurrencyIsoCode: "EUR",
		sf.FieldCloseDate: "2027-03-01", sf.FieldStageName: "Qualification", sf.FieldDescription: "notes",
		sf.FieldSyncWithPartnerCenter: true, "Account.Name": "Fabrikam", "Account.BillingCountry": "DE"}}
	fromSF := d.Observe(nil, d.ObserveOpportunity("sf/006CODEC/1", opp, contracts.Version{Tag: "s1", At: now}), now)
	if fromPC.Opp == nil || fromSF.Referral == nil || len(fromPC.Decisions) == 0 {
		t.Fatalf("want a create each way: %+v %+v", fromPC.Opp, fromSF.Referral)
	}
	update := contracts.OpportunityCommand{LinkID: "pc-R-codec", Op: contracts.OpUpdate, OpportunityID: "006X",
		Fields: map[string]any{sf.FieldAmount: 2000.0, sf.FieldName: "x ✔", "Nested": []any{map[string]any{"b": nil, "a": 1e-7}}}}
	for name, v := range map[string]any{"Opportunity create": fromPC.Opp.Data, "referral create": fromSF.Referral.Data,
		"Opportunity update": update, "decision": fromPC.Decisions[0], "empty decision": contracts.Decision{LinkID: "l"}} {
		t.Run(name, func(t *testing.T) { sameDocument(t, v, nil) })
	}
}
