package sfingest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/observed"
)

// TestCDCLeads: with the mapping's coSellOnly off, a synced Lead's create, update, delete, undelete and
// conversion (the emulator's /_emulator/leads/{id}/convert, as Apex Database.convertLead) reach the
// observed stream on change events as Lead snapshots. The create and the edits are built from the events
// (no REST call) and equal what a REST read of the Lead gives; the delete and undelete are read. A Lead
// cosell does not sync publishes nothing.
func TestCDCLeads(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	f.in.Leads = true
	c := f.subscriber(t)
	run(t, c)
	f.waitStored(t)

	rest := func(id string) contracts.OpportunityObserved {
		t.Helper()
		rows, err := f.in.SF.Query(t.Context(), "SELECT "+strings.Join(mapping.LeadFields, ", ")+" FROM Lead WHERE Id = '"+id+"'")
		if err != nil || len(rows) != 1 {
			t.Fatalf("read lead %s: %v (%d rows)", id, err, len(rows))
		}
		snap, ver, err := observed.Lead(rows[0])
		if err != nil {
			t.Fatal(err)
		}
		return contracts.OpportunityObserved{Opportunity: snap, Version: ver}
	}
	same := func(what string, got contracts.OpportunityObserved) {
		t.Helper()
		want := rest(got.Opportunity.ID)
		if content(got.Opportunity) != content(want.Opportunity) || got.Version.Tag != want.Version.Tag {
			t.Fatalf("%s: built %s %s, REST read %s %s", what, got.Version.Tag, content(got.Opportunity), want.Version.Tag, content(want.Opportunity))
		}
	}

	f.insert(t, "Lead", map[string]any{"LastName": "Quiet", "Company": "Not Shared Ltd"})
	lead := f.insert(t, "Lead", map[string]any{"FirstName": "Ada", "LastName": "Lovelace", "Company": "Analytical Engines",
		"Email": "ada@example.com", "City": "London", sf.FieldSyncWithPartnerCenter: true})
	f.waitSnapshot(t, lead, "the new lead", func(o contracts.OpportunityObserved) bool {
		return o.Via == "cdc" && o.Opportunity.Object == sf.ObjectLead && o.Opportunity.Fields[sf.LeadCompany] == "Analytical Engines"
	})
	same("the create", f.last(t, lead))
	if err := f.emu.Update("Lead", lead, map[string]any{"FirstName": "Augusta", "City": nil, "Status": "Working - Contacted"}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, lead, "the edit", func(o contracts.OpportunityObserved) bool { return o.Opportunity.Fields[sf.LeadFirstName] == "Augusta" })
	same("the edit", f.last(t, lead))
	if st := c.Stats(); st.Reads != 0 || st.Built != 2 {
		t.Fatalf("stats %+v: want the create and the edit built from the events, no read", st)
	}

	if err := f.emu.Delete("Lead", lead); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, lead, "the deletion", func(o contracts.OpportunityObserved) bool { return o.Opportunity.Deleted })
	if err := f.emu.Undelete("Lead", lead); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, lead, "the undeletion", func(o contracts.OpportunityObserved) bool {
		return !o.Opportunity.Deleted && o.Opportunity.Fields[sf.LeadFirstName] == "Augusta"
	})

	s := f.in.SF.Session()
	resp, err := http.Post(s.InstanceURL+"/_emulator/leads/"+lead+"/convert", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var conv struct {
		OpportunityID string `json:"opportunityId"`
	}
	err = json.NewDecoder(resp.Body).Decode(&conv)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || conv.OpportunityID == "" {
		t.Fatalf("convert: %d %v %+v", resp.StatusCode, err, conv)
	}
	f.waitSnapshot(t, lead, "the conversion", func(o contracts.OpportunityObserved) bool {
		return o.Opportunity.ConvertedOpportunityID == conv.OpportunityID && o.Opportunity.Fields[sf.LeadIsConverted] == true
	})
	same("the conversion", f.last(t, lead))
	if n := len(f.snapshots(t)); n != 1 {
		t.Fatalf("%d records published, want the synced Lead's only (not the quiet Lead, not the unsynced Opportunity of the conversion)", n)
	}
	if st := c.Stats(); st.Built != 3 {
		t.Fatalf("stats %+v: want the conversion built from its event too", st)
	}
}
