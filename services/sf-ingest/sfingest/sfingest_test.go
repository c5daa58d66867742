package sfingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

type fixture struct {
	emu *sfemu.Emulator
	in  *Ingest
	bus *platform.Bus
	ns  *server.Server
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	log := testkit.Log()
	ctx := context.Background()
	ns := bustest.Server(t)
	bus := bustest.Bus(t, ns, bustest.Config(3, 5*time.Second), contracts.StageSFIngest, nil)
	emu, client := emutest.Salesforce(t, sfemu.Options{})
	cps, err := bus.KV(ctx, contracts.BucketCheckpoints)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 200
	}
	return &fixture{emu: emu, bus: bus, ns: ns, in: &Ingest{Bus: bus, SF: client, Checkpoints: cps, Config: cfg, Log: log}}
}

func (f *fixture) insert(t testing.TB, obj string, fields map[string]any) string {
	t.Helper()
	id, err := f.emu.Insert(obj, fields)
	if err != nil {
		t.Fatalf("insert %s: %v", obj, err)
	}
	return id
}

func (f *fixture) poll(t *testing.T) int {
	t.Helper()
	n, err := f.in.Poll(context.Background())
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	return n
}

// last reads the newest observed snapshot of an Opportunity from the stream.
func (f *fixture) last(t *testing.T, oppID string) contracts.OpportunityObserved {
	t.Helper()
	m, err := f.bus.LastMsg(context.Background(), contracts.StreamObserved, contracts.Subject(contracts.SubjectOpportunityObserved, oppID))
	if err != nil {
		t.Fatalf("no snapshot of %s: %v", oppID, err)
	}
	e, err := m.Event()
	if err != nil {
		t.Fatal(err)
	}
	obs, err := platform.DataAs[contracts.OpportunityObserved](e)
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

func (f *fixture) syncedOpportunity(t *testing.T, name string) string {
	t.Helper()
	acc := f.insert(t, "Account", map[string]any{"Name": name + " AG", "BillingCountry": "CH", "BillingPostalCode": "8001", "BillingCity": "Zürich"})
	return f.insert(t, "Opportunity", map[string]any{"Name": name, "StageName": "Prospecting", "CloseDate": "2027-03-31",
		"Amount": 1000, "AccountId": acc, sf.FieldSyncWithPartnerCenter: true})
}

func TestSnapshotHoldsChildrenAndIdlePollsCostOneCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Overlap: time.Second})
	opp := f.syncedOpportunity(t, "Alpha")
	user := f.insert(t, "User", map[string]any{"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com", "Username": "ada@example.com", "Phone": "+41 1"})
	f.insert(t, "OpportunityTeamMember", map[string]any{"OpportunityId": opp, "UserId": user, "TeamMemberRole": "Sales Rep"})
	sol := f.insert(t, sf.ObjectMicrosoftSolution, map[string]any{"Opportunity__c": opp, "Solution_Id__c": "SOL-1", "Name": "Azure AI"})
	f.insert(t, "Note", map[string]any{"ParentId": opp, "Title": "Call", "Body": "Customer wants a pilot"})
	f.insert(t, "Opportunity", map[string]any{"Name": "Not shared", "StageName": "Prospecting", "CloseDate": "2027-03-31"})

	if n := f.poll(t); n != 1 {
		t.Fatalf("first poll published %d, want 1", n)
	}
	obs := f.last(t, opp)
	o := obs.Opportunity
	if o.Fields["Account.BillingCountry"] != "CH" || o.Fields["Account.Name"] != "Alpha AG" || o.Fields[sf.FieldAmount] != 1000.0 {
		t.Fatalf("fields %v", o.Fields)
	}
	if len(o.TeamMembers) != 1 || o.TeamMembers[0] != (contracts.TeamMember{UserID: user, Role: "Sales Rep", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com", Phone: "+41 1"}) {
		t.Fatalf("team %+v", o.TeamMembers)
	}
	if len(o.Solutions) != 1 || o.Solutions[0] != (contracts.Solution{ID: sol, SolutionID: "SOL-1", Name: "Azure AI"}) {
		t.Fatalf("solutions %+v", o.Solutions)
	}
	notes, _ := o.Fields[observed.NotesField].([]any)
	if len(notes) != 1 || fmt.Sprint(notes[0]) != fmt.Sprint(map[string]any{"id": notes[0].(map[string]any)["id"], "title": "Call", "body": "Customer wants a pilot"}) {
		t.Fatalf("notes %v", o.Fields[observed.NotesField])
	}

	f.emu.ResetCounts()
	used0, _ := f.emu.APIUsage()
	for i := 0; i < 3; i++ {
		if n := f.poll(t); n != 0 {
			t.Fatalf("idle poll %d published %d", i, n)
		}
	}
	if used, _ := f.emu.APIUsage(); used-used0 != 3 {
		t.Fatalf("3 idle polls used %d API calls, want 3 (counts %v)", used-used0, f.emu.Counts())
	}
}

func TestChildChangesAndDeletionsMakeNewSnapshots(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Overlap: time.Second})
	opp := f.syncedOpportunity(t, "Beta")
	other := f.syncedOpportunity(t, "Gamma")
	user := f.insert(t, "User", map[string]any{"LastName": "Hopper", "Email": "grace@example.com", "Username": "grace@example.com"})
	member := f.insert(t, "OpportunityTeamMember", map[string]any{"OpportunityId": opp, "UserId": user})
	f.poll(t)
	v0 := f.last(t, opp).Version

	// A new solution: a new snapshot of its parent only.
	f.insert(t, sf.ObjectMicrosoftSolution, map[string]any{"Opportunity__c": opp, "Solution_Id__c": "SOL-9"})
	if n := f.poll(t); n != 1 {
		t.Fatalf("after adding a solution: %d snapshots, want 1", n)
	}
	obs := f.last(t, opp)
	if len(obs.Opportunity.Solutions) != 1 || !obs.Version.Newer(v0) {
		t.Fatalf("snapshot after adding a solution: %+v", obs)
	}
	// A removed team member: the snapshot without it, newer again.
	v1 := obs.Version
	if err := deleteRecord(t.Context(), f, "OpportunityTeamMember", member); err != nil {
		t.Fatal(err)
	}
	if n := f.poll(t); n != 1 {
		t.Fatalf("after removing a team member: %d snapshots, want 1", n)
	}
	obs = f.last(t, opp)
	if len(obs.Opportunity.TeamMembers) != 0 || !obs.Version.Newer(v1) {
		t.Fatalf("snapshot after removing a member: %+v", obs)
	}
	// A deleted synced Opportunity is published as deleted.
	if err := deleteRecord(t.Context(), f, "Opportunity", other); err != nil {
		t.Fatal(err)
	}
	if n := f.poll(t); n != 1 {
		t.Fatalf("after a deletion: %d snapshots, want 1", n)
	}
	if d := f.last(t, other); !d.Opportunity.Deleted || d.Opportunity.ID != other {
		t.Fatalf("deleted opportunity snapshot %+v", d)
	}
	if n := f.poll(t); n != 0 {
		t.Fatalf("nothing changed, yet %d snapshots", n)
	}
}

// deleteRecord deletes through the REST API as a user would.
func deleteRecord(ctx context.Context, f *fixture, obj, id string) error {
	return f.in.SF.Delete(ctx, obj, id)
}

func TestPagesThroughBacklogAndMovesWatermark(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Overlap: time.Second, PageSize: 4})
	var ids []string
	for i := 0; i < 11; i++ {
		ids = append(ids, f.syncedOpportunity(t, fmt.Sprintf("Opp %02d", i)))
	}
	f.emu.ResetCounts()
	if n := f.poll(t); n != 11 {
		t.Fatalf("published %d of 11", n)
	}
	if c := f.emu.Counts()["composite"]; c != 3 {
		t.Fatalf("%d rounds for 11 rows in pages of 4, want 3", c)
	}
	for _, id := range ids {
		f.last(t, id)
	}
	e, err := f.in.Checkpoints.Get(context.Background(), contracts.CheckpointKey(contracts.StageSFIngest, checkpointName))
	if err != nil {
		t.Fatal(err)
	}
	last, _ := f.emu.Get("Opportunity", ids[len(ids)-1])
	stamp, _ := sfapi.ParseTime(last["SystemModstamp"].(string))
	if want := fmt.Sprintf(`{"watermark":"%s"}`, stamp.Format(time.RFC3339Nano)); string(e.Value()) != want {
		t.Fatalf("watermark %s, want %s", e.Value(), want)
	}
}

func TestBackfillStartsAtSince(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Overlap: time.Second, Since: time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	f.syncedOpportunity(t, "Old")
	if n := f.poll(t); n != 0 {
		t.Fatalf("a backfill from the future published %d", n)
	}
	_, err := f.in.Checkpoints.Get(context.Background(), contracts.CheckpointKey(contracts.StageSFIngest, checkpointName))
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("checkpoint written without anything read: %v", err)
	}

	g := newFixture(t, Config{Overlap: time.Second, Since: time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)})
	id := g.syncedOpportunity(t, "Recent")
	if n := g.poll(t); n != 1 {
		t.Fatalf("a backfill from an hour ago published %d, want 1", n)
	}
	g.last(t, id)
}

// TestReadsTheFieldsACustomMappingNames: fields a mapping names beyond the built-in list (Extra) are selected
// and reach the snapshot, so a customised deal value field takes effect without code changes.
func TestReadsTheFieldsACustomMappingNames(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Overlap: time.Second})
	f.in.Extra = []string{"Probability", "NextStep", "Account.Phone", "amount"}
	acc := f.insert(t, "Account", map[string]any{"Name": "Custom AG", "Phone": "+41 44 000"})
	id := f.insert(t, sf.ObjectOpportunity, map[string]any{"Name": "Custom", "StageName": "Qualification", "CloseDate": "2027-01-01",
		"Probability": 35, "NextStep": "Workshop", "AccountId": acc, sf.FieldSyncWithPartnerCenter: true})
	f.poll(t)
	got := f.last(t, id).Opportunity.Fields
	if got["Probability"] != 35.0 || got["NextStep"] != "Workshop" {
		t.Fatalf("extra fields not read: Probability=%v NextStep=%v", got["Probability"], got["NextStep"])
	}
	if got["Account.Phone"] != "+41 44 000" {
		t.Errorf("parent field Account.Phone not read: %v", got)
	}
}

// TestMappedFieldTheOrgLacks: a field the mapping reads that the org does not have stops the poller at
// start-up with the field and the fix, instead of failing every poll with INVALID_FIELD.
func TestMappedFieldTheOrgLacks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{})
	f.in.Extra = []string{"Deal_Size__c"}
	err := f.in.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the Salesforce org has no Opportunity field Deal_Size__c") ||
		!strings.Contains(err.Error(), "sf project deploy start") {
		t.Fatalf("Run: %v", err)
	}
	if n := f.emu.Counts()["composite"]; n != 0 {
		t.Fatalf("polled %d times with a field the org lacks", n)
	}
}

// TestWriteThatChangesNothingSnapshottedIsNotPublished: an update that moves only the Opportunity's
// SystemModstamp as far as a snapshot goes (cosell's own Audit write-back) costs no snapshot; a change of a
// field the snapshot carries is published as before.
func TestWriteThatChangesNothingSnapshottedIsNotPublished(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Config{Overlap: time.Second})
	opp := f.syncedOpportunity(t, "Echo")
	if n := f.poll(t); n != 1 {
		t.Fatalf("first poll published %d, want 1", n)
	}
	first := f.last(t, opp)
	if err := f.emu.Update(sf.ObjectOpportunity, opp, map[string]any{sf.FieldAudit: "cosell audit — latest 1 of 1 entries"}); err != nil {
		t.Fatal(err)
	}
	if n := f.poll(t); n != 0 {
		t.Errorf("an Audit-only write published %d snapshots", n)
	}
	if got := f.last(t, opp); got.Version != first.Version {
		t.Errorf("snapshot %v after the Audit write, want still %v", got.Version, first.Version)
	}
	if err := f.emu.Update(sf.ObjectOpportunity, opp, map[string]any{sf.FieldAmount: 2000}); err != nil {
		t.Fatal(err)
	}
	if n := f.poll(t); n != 1 {
		t.Fatalf("a changed amount published %d snapshots, want 1", n)
	}
	if got := f.last(t, opp); got.Opportunity.Fields[sf.FieldAmount] != 2000.0 || !got.Version.At.After(first.Version.At) {
		t.Errorf("snapshot after the amount change: %v %v", got.Opportunity.Fields[sf.FieldAmount], got.Version)
	}
}
