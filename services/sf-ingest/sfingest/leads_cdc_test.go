package sfingest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/testkit"
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

// TestCDCOwnLeadWriteIsDroppedAndHoldsTheBackstop: cosell's writes to a Lead (a lead referral's changes
// from Partner Center) are dropped from their header like its writes to an Opportunity: no read, no
// snapshot, so no echo decision. One of a synced field (Company) to a Lead no seller changed within the
// backstop interval holds the Leads' coverage for the backstop, which reads it and lifts the hold; one of
// the link only (the sync status) holds nothing.
func TestCDCOwnLeadWriteIsDroppedAndHoldsTheBackstop(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	f.in.Leads = true
	c := f.subscriber(t)
	run(t, c)
	f.waitStored(t)
	lead := f.insert(t, "Lead", map[string]any{"LastName": "Hopper", "Company": "Cobol Inc", sf.FieldSyncWithPartnerCenter: true})
	f.waitSnapshot(t, lead, "the new lead", func(o contracts.OpportunityObserved) bool { return o.Opportunity.Object == sf.ObjectLead })
	f.poll(t) // the watermark after the create
	f.emu.AdvanceClock(2 * time.Hour)
	snapshots := len(f.snapshots(t)[lead])

	settled := f.burstsAfter(t)
	ownWrite(t, f.in.SF, "Lead", lead, map[string]any{sf.FieldSyncStatus: "✔"})
	settled("the own write of the link's burst")
	if _, err := f.in.Checkpoints.Get(t.Context(), HeldKey()); err == nil {
		t.Fatal("an own write of the sync status only holds the backstop")
	}
	settled = f.burstsAfter(t)
	ownWrite(t, f.in.SF, "Lead", lead, map[string]any{sf.LeadCompany: "Cobol Systems"})
	settled("the own write of a synced field's burst")
	if st := c.Stats(); st.Echoes != 2 || st.OwnReads != 0 || st.Reads != 0 {
		t.Fatalf("stats %+v: want both own writes dropped from their header, unread", st)
	}
	if n := len(f.snapshots(t)[lead]); n != snapshots {
		t.Fatalf("%d snapshots of the Lead after cosell's writes, want %d: they were published", n, snapshots)
	}
	e, err := f.in.Checkpoints.Get(t.Context(), HeldKey())
	if err != nil || !strings.Contains(string(e.Value()), `"Lead"`) {
		t.Fatalf("no hold of the Leads' coverage stored for the own write dropped unread: %v", err)
	}
	before := f.emu.Counts()[sfemu.ScanRowsCount]
	f.poll(t)
	if rows := f.emu.Counts()[sfemu.ScanRowsCount] - before; rows < 1 {
		t.Fatalf("the backstop read %d rows, want the held own write's Lead", rows)
	}
	if _, err := f.in.Checkpoints.Get(t.Context(), HeldKey()); err == nil {
		t.Fatal("the hold stayed after a poll read past it")
	}
}

// TestCDCLeadsAreInTheBackstopsCoverage: the backstop poll reads Leads only from the commit time of the
// newest Lead change event handled, as it reads Opportunities: after three Leads' edits a minute before a
// fourth's, it reads the newest one's row, not every Lead changed since its watermark.
func TestCDCLeadsAreInTheBackstopsCoverage(t *testing.T) {
	t.Parallel()
	f := newCDCFixture(t)
	f.in.Leads = true
	c := f.subscriber(t)
	run(t, c)
	f.waitStored(t)
	var leads []string
	for i := range 4 {
		id := f.insert(t, "Lead", map[string]any{"LastName": fmt.Sprintf("Lead %d", i), "Company": "Covered Ltd", sf.FieldSyncWithPartnerCenter: true})
		f.waitSnapshot(t, id, "the new lead", func(o contracts.OpportunityObserved) bool { return o.Opportunity.Object == sf.ObjectLead })
		leads = append(leads, id)
	}
	f.poll(t) // the watermark after the creates
	f.emu.AdvanceClock(time.Minute)
	for _, id := range leads[:3] {
		if err := f.emu.Update("Lead", id, map[string]any{sf.LeadCompany: "Edited Ltd"}); err != nil {
			t.Fatal(err)
		}
	}
	f.emu.AdvanceClock(time.Minute)
	if err := f.emu.Update("Lead", leads[3], map[string]any{sf.LeadCompany: "Newest Ltd"}); err != nil {
		t.Fatal(err)
	}
	f.waitSnapshot(t, leads[3], "the newest edit", func(o contracts.OpportunityObserved) bool {
		return o.Opportunity.Fields[sf.LeadCompany] == "Newest Ltd"
	})
	testkit.EventuallyTrue(t, 15*time.Second, "every edit handled", func() bool { return c.Stats().Built >= 8 })
	before := f.emu.Counts()[sfemu.ScanRowsCount]
	f.poll(t)
	if rows := f.emu.Counts()[sfemu.ScanRowsCount] - before; rows > 1 {
		t.Fatalf("the backstop read %d rows, want at most the newest Lead change's: the Leads the change events handled were read again", rows)
	}
}
