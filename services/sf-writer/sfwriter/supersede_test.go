package sfwriter

import (
	"context"
	"fmt"
	"testing"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// update is an update command of link pc-<opp> to opp carrying fields.
func update(opp string, fields map[string]any) contracts.OpportunityCommand {
	return contracts.OpportunityCommand{LinkID: "pc-" + opp, Op: contracts.OpUpdate, OpportunityID: opp, Purpose: "sync", Fields: fields}
}

func (f *fixture) opportunity(t *testing.T) string {
	t.Helper()
	opp, err := f.emu.Insert(sf.ObjectOpportunity, map[string]any{sf.FieldName: "Deal", sf.FieldStageName: "Prospecting",
		sf.FieldCloseDate: "2027-01-01", sf.FieldAmount: 50, sf.FieldDescription: "first"})
	if err != nil {
		t.Fatal(err)
	}
	return opp
}

// The CDC chaos divergence: an older update of a link put back for a retry came again after the newer one
// was written and wrote its Amount over the newer one's. Whichever order the two are written in (the
// older first refused with a row lock, so it is retried behind the newer), Salesforce ends with the
// newer Amount, and the older command still writes the field the newer does not carry.
func TestOlderUpdateDeliveredLateKeepsTheNewerValue(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sfemu.Options{}, nil)
	opp := f.opportunity(t)
	f.send(t, "cmd-old", update(opp, map[string]any{sf.FieldAmount: 100, sf.FieldDescription: "from the older command"}))
	f.send(t, "cmd-new", update(opp, map[string]any{sf.FieldAmount: 200}))
	f.emu.LockNextWrites(1) // the first write (the older command's) is refused and retried
	f.run(t)
	f.settled(t)

	rec, _ := f.emu.Get(sf.ObjectOpportunity, opp)
	if fmt.Sprint(rec[sf.FieldAmount]) != "200" {
		t.Fatalf("Amount %v, want the newer command's 200", rec[sf.FieldAmount])
	}
	if rec[sf.FieldDescription] != "from the older command" {
		t.Fatalf("Description %q, want the older command's (the newer does not carry it)", rec[sf.FieldDescription])
	}
	outs := f.outcomes(t)
	for _, id := range []string{"cmd-old", "cmd-new"} {
		if outs[id].Status != contracts.OutcomeWritten {
			t.Fatalf("%s: outcome %+v, want written", id, outs[id])
		}
	}
}

// An older update whose every field a newer command carries writes nothing and is reported written, so
// the mapper's pending state clears as for any write; its solutions, superseded too, are not touched.
func TestWhollySupersededUpdateWritesNothingAndIsWritten(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sfemu.Options{}, nil)
	opp := f.opportunity(t)
	old := update(opp, map[string]any{sf.FieldAmount: 100})
	old.SetSolutions, old.Solutions = true, []contracts.Solution{{SolutionID: "S-OLD", Name: "Old"}}
	newer := update(opp, map[string]any{sf.FieldAmount: 200, sf.FieldDescription: "newer"})
	newer.SetSolutions, newer.Solutions = true, []contracts.Solution{{SolutionID: "S-NEW", Name: "New"}}
	f.send(t, "cmd-old", old)
	f.send(t, "cmd-new", newer)
	f.run(t)
	f.settled(t)

	rec, _ := f.emu.Get(sf.ObjectOpportunity, opp)
	if fmt.Sprint(rec[sf.FieldAmount]) != "200" || rec[sf.FieldDescription] != "newer" {
		t.Fatalf("Amount %v, Description %q: want the newer command's", rec[sf.FieldAmount], rec[sf.FieldDescription])
	}
	if c := f.emu.Counts(); c["collections.update"] != 1 {
		t.Fatalf("%d update calls, want 1 (the older command superseded writes nothing): %v", c["collections.update"], c)
	}
	var sols []string
	for _, s := range f.emu.All(sf.ObjectMicrosoftSolution) {
		sols = append(sols, fmt.Sprint(s["Solution_Id__c"]))
	}
	if len(sols) != 1 || sols[0] != "S-NEW" {
		t.Fatalf("solutions %v, want only the newer command's S-NEW", sols)
	}
	outs := f.outcomes(t)
	for _, id := range []string{"cmd-old", "cmd-new"} {
		if outs[id].Status != contracts.OutcomeWritten || outs[id].OpportunityID != opp {
			t.Fatalf("%s: outcome %+v, want written for %s", id, outs[id], opp)
		}
	}
}

// A command published again under its own id later on the subject (the mapper's outbox resent past the
// duplicate window) is the same command, not a newer one: the first copy writes.
func TestACopyOfTheCommandDoesNotSupersedeIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sfemu.Options{}, nil)
	opp := f.opportunity(t)
	cmd := update(opp, map[string]any{sf.FieldAmount: 300})
	f.send(t, "cmd-1", cmd)
	other := update(opp, map[string]any{sf.FieldDescription: "between"})
	f.send(t, "cmd-2", other)
	// A copy stored under another message id (the server's duplicate window would drop the same one).
	f.sendCopy(t, "cmd-1", cmd)
	f.w.Consume.Batch = 1 // the copy comes in a batch of its own, after the first is marked done
	f.run(t)
	f.settled(t)
	rec, _ := f.emu.Get(sf.ObjectOpportunity, opp)
	if fmt.Sprint(rec[sf.FieldAmount]) != "300" || rec[sf.FieldDescription] != "between" {
		t.Fatalf("Amount %v, Description %q: want 300 and between", rec[sf.FieldAmount], rec[sf.FieldDescription])
	}
}

// sendCopy stores cmd again under event id, with a message id of its own so the server keeps the copy.
func (f *fixture) sendCopy(t *testing.T, id string, cmd contracts.OpportunityCommand) {
	t.Helper()
	e, err := platform.NewEvent(id, contracts.TypeOpportunityRequested, contracts.StageMapper, cmd.LinkID, cmd)
	if err != nil {
		t.Fatal(err)
	}
	m, err := platform.EncodeMsg(contracts.Subject(contracts.SubjectOpportunityRequested, cmd.LinkID), e)
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Set(jetstream.MsgIDHeader, id+"-copy")
	nc, err := nats.Connect(f.bus.ConnectedURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}
