package sfwriter

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

type fixture struct {
	emu *sfemu.Emulator
	bus *platform.Bus
	w   *Writer
}

func newFixture(t testing.TB, emuOpts sfemu.Options, gov *GovernorConfig) *fixture {
	t.Helper()
	log := testkit.Log()
	ctx := context.Background()
	bus := bustest.Start(t, bustest.Config(5, 5*time.Second), contracts.StageSFWriter, nil)
	emu, client := emutest.Salesforce(t, emuOpts)
	rec, err := outcome.NewRecorder(ctx, bus, contracts.StageSFWriter)
	if err != nil {
		t.Fatal(err)
	}
	w := &Writer{Bus: bus, SF: client, Outcomes: rec, Log: log, LimitPause: 100 * time.Millisecond,
		Consume: platform.ConsumeOptions{MaxWait: 100 * time.Millisecond, BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond}}
	if gov != nil {
		w.Governor = &Governor{SF: client, Config: *gov, Log: log}
	}
	return &fixture{emu: emu, bus: bus, w: w}
}

func (f *fixture) run(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (f *fixture) send(t testing.TB, id string, cmd contracts.OpportunityCommand) {
	t.Helper()
	e, err := platform.NewEvent(id, contracts.TypeOpportunityRequested, contracts.StageMapper, cmd.LinkID, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.bus.Publish(context.Background(), contracts.Subject(contracts.SubjectOpportunityRequested, cmd.LinkID), e); err != nil {
		t.Fatal(err)
	}
}

// settled waits until the writer has settled every command.
func (f *fixture) settled(t testing.TB) {
	t.Helper()
	f.settledWithin(t, 30*time.Second)
}

func (f *fixture) settledWithin(t testing.TB, within time.Duration) {
	t.Helper()
	testkit.Eventually(t, within, "commands settled", func() (bool, string) {
		// CaughtUp, not a zero Lag: right after a send the server may not have counted the command yet.
		ok, err := f.bus.CaughtUp(context.Background(), contracts.ConsumerSFWriter)
		p, a, _ := f.bus.Lag(context.Background(), contracts.ConsumerSFWriter)
		return err == nil && ok, fmt.Sprintf("pending %d ack-pending %d (%v)", p, a, err)
	})
}

// outcomes reads every outcome published, by command id.
func (f *fixture) outcomes(t testing.TB) map[string]contracts.Outcome {
	t.Helper()
	out := map[string]contracts.Outcome{}
	if err := f.bus.Read(context.Background(), contracts.StreamOutcomes, func(m platform.Stored) error {
		e, err := m.Event()
		if err != nil {
			return err
		}
		o, err := platform.DataAs[contracts.Outcome](e)
		if err != nil {
			return err
		}
		out[o.CommandID] = o
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func createCmd(i int, account string) contracts.OpportunityCommand {
	return contracts.OpportunityCommand{LinkID: fmt.Sprintf("pc-R%05d", i), Op: contracts.OpCreate, ReferralID: fmt.Sprintf("R%05d", i),
		Purpose: "sync", Fields: map[string]any{sf.FieldName: fmt.Sprintf("Deal %d", i), sf.FieldStageName: "Prospecting",
			sf.FieldCloseDate: "2027-06-30", sf.FieldAmount: 1000 + i, sf.FieldSyncWithPartnerCenter: true},
		Account: &contracts.Account{Name: account, PostalCode: "98052", City: "Redmond", Country: "US"}}
}

func TestBacklogIsWrittenWithCollectionsAndEachFailureKeepsItsReason(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sfemu.Options{}, nil)
	existing, _ := f.emu.Insert("Account", map[string]any{"Name": "Customer 1", "BillingPostalCode": "98052"})
	const n = 250
	for i := 0; i < n; i++ {
		cmd := createCmd(i, fmt.Sprintf("Customer %d", i%10))
		switch i {
		case 7:
			delete(cmd.Fields, sf.FieldCloseDate)
		case 8:
			cmd.Fields[sf.FieldStageName] = "Not a stage"
		}
		if i == 7 || i == 9 {
			// The mapper's decision rides on the command to its outcome, the audit record of the write.
			cmd.Decision = &contracts.Decision{LinkID: cmd.LinkID, Stage: contracts.StageMapper, Kind: contracts.DecisionCreated,
				Target: contracts.Salesforce, Fields: []string{"dealValue"}, Cause: fmt.Sprintf("pc/R%05d/e1", i)}
			cmd.CauseVersion = contracts.Version{Tag: "e1", At: time.Date(2026, 12, 1, 10, 0, i, 0, time.UTC)}
		}
		f.send(t, fmt.Sprintf("cmd-%d", i), cmd)
	}
	f.emu.LockNextWrites(0)
	f.run(t)
	f.settled(t)

	opps := f.emu.All(sf.ObjectOpportunity)
	if len(opps) != n-2 {
		t.Fatalf("%d opportunities, want %d", len(opps), n-2)
	}
	if accts := f.emu.All(sf.ObjectAccount); len(accts) != 10 {
		t.Fatalf("%d accounts, want 10 (one per customer, the existing one reused)", len(accts))
	}
	for _, o := range opps {
		if o[sf.FieldName] == "Deal 1" && o[sf.FieldAccountID] != existing {
			t.Fatalf("Deal 1 not on the existing account: %v", o[sf.FieldAccountID])
		}
	}
	c := f.emu.Counts()
	if c["collections.upsert"]+c[sfemu.CompositeWritesCount] > 3 || c["sobjects.upsert"] != 0 {
		t.Fatalf("calls %v: a backlog of %d must take a few Collections calls, not one call per record", c, n)
	}
	outs := f.outcomes(t)
	if o := outs["cmd-7"]; o.Status != contracts.OutcomeFailed || o.Error.Code != "REQUIRED_FIELD_MISSING" {
		t.Fatalf("cmd-7 outcome %+v", o)
	}
	if o := outs["cmd-8"]; o.Status != contracts.OutcomeFailed || o.Error.Code != "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" {
		t.Fatalf("cmd-8 outcome %+v", o)
	}
	if o := outs["cmd-9"]; o.Status != contracts.OutcomeWritten || !o.Created || o.OpportunityID == "" {
		t.Fatalf("cmd-9 outcome %+v", o)
	}
	for _, id := range []string{"cmd-7", "cmd-9"} {
		if o := outs[id]; o.Decision == nil || o.Decision.Kind != contracts.DecisionCreated || o.Decision.Cause == "" || o.CauseVersion.Tag != "e1" {
			t.Errorf("%s outcome carries decision %+v, cause version %+v; want the command's", id, o.Decision, o.CauseVersion)
		}
	}
	if o := outs["cmd-10"]; o.Decision != nil {
		t.Errorf("cmd-10 carried no decision, its outcome has %+v", o.Decision)
	}

	// Replaying a create never duplicates: the upsert by Referral Identifier finds the record.
	f.send(t, "cmd-9-again", createCmd(9, "Customer 9"))
	f.settled(t)
	if o := f.outcomes(t)["cmd-9-again"]; o.Status != contracts.OutcomeWritten || o.Created || o.OpportunityID != outs["cmd-9"].OpportunityID {
		t.Fatalf("replayed create %+v", o)
	}
	if len(f.emu.All(sf.ObjectOpportunity)) != n-2 {
		t.Fatal("a replayed create made a second opportunity")
	}
}

func TestLockedRowsAreRetriedOneByOne(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sfemu.Options{}, nil)
	for i := 0; i < 5; i++ {
		f.send(t, fmt.Sprintf("cmd-%d", i), createCmd(i, "Locked Inc"))
	}
	f.emu.LockNextWrites(2)
	f.run(t)
	f.settled(t)
	outs := f.outcomes(t)
	for i := 0; i < 5; i++ {
		if o := outs[fmt.Sprintf("cmd-%d", i)]; o.Status != contracts.OutcomeWritten {
			t.Fatalf("cmd-%d: %+v", i, o)
		}
	}
	if n := len(f.emu.All(sf.ObjectOpportunity)); n != 5 {
		t.Fatalf("%d opportunities", n)
	}
}

func TestSolutionsStatusAndAuditWriteBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sfemu.Options{}, nil)
	opp, err := f.emu.Insert(sf.ObjectOpportunity, map[string]any{"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2027-01-01"})
	if err != nil {
		t.Fatal(err)
	}
	keep, _ := f.emu.Insert(sf.ObjectMicrosoftSolution, map[string]any{"Opportunity__c": opp, "Solution_Id__c": "KEEP"})
	f.emu.Insert(sf.ObjectMicrosoftSolution, map[string]any{"Opportunity__c": opp, "Solution_Id__c": "DROP"})
	f.emu.Insert(sf.ObjectMicrosoftSolution, map[string]any{"Opportunity__c": opp, "Solution_Id__c": "KEEP"}) // a duplicate
	f.run(t)
	f.send(t, "link", contracts.OpportunityCommand{LinkID: "sf-" + opp, Op: contracts.OpUpdate, OpportunityID: opp, Purpose: "link",
		Fields:       map[string]any{sf.FieldReferralIdentifier: "R-1", sf.FieldReferralLink: "https://partner.microsoft.com/r/R-1", sf.FieldSyncStatus: "✔"},
		SetSolutions: true, Solutions: []contracts.Solution{{SolutionID: "KEEP"}, {SolutionID: "NEW", Name: "Azure Arc"}}})
	f.send(t, "status", contracts.OpportunityCommand{LinkID: "sf-" + opp, Op: contracts.OpUpdate, OpportunityID: opp, Purpose: "status",
		Fields: map[string]any{sf.FieldSyncStatus: "✖ " + strings.Repeat("x", 400)}})
	f.send(t, "audit", contracts.OpportunityCommand{LinkID: "sf-" + opp, Op: contracts.OpUpdate, OpportunityID: opp, Purpose: "audit",
		Fields: map[string]any{sf.FieldAudit: strings.Repeat("applied; ", 5000)}})
	f.settled(t)

	rec, _ := f.emu.Get(sf.ObjectOpportunity, opp)
	if rec[sf.FieldReferralIdentifier] != "R-1" || rec[sf.FieldReferralLink] != "https://partner.microsoft.com/r/R-1" {
		t.Fatalf("link write-back: %v / %v", rec[sf.FieldReferralIdentifier], rec[sf.FieldReferralLink])
	}
	if s, _ := rec[sf.FieldSyncStatus].(string); !strings.HasPrefix(s, "✖ x") || len([]rune(s)) != 255 {
		t.Fatalf("sync status %q", s)
	}
	if a, _ := rec[sf.FieldAudit].(string); len([]rune(a)) != 32768 {
		t.Fatalf("audit of %d characters", len([]rune(a)))
	}
	var sols []string
	for _, s := range f.emu.All(sf.ObjectMicrosoftSolution) {
		sols = append(sols, fmt.Sprint(s["Solution_Id__c"], "/", s["Name"]))
		if s["Solution_Id__c"] == "KEEP" && s["Id"] != keep {
			t.Fatal("the older KEEP record was not the one kept")
		}
	}
	sort.Strings(sols)
	if fmt.Sprint(sols) != fmt.Sprint([]string{"KEEP/" + keep, "NEW/Azure Arc"}) {
		t.Fatalf("solutions %v", sols)
	}
	for _, id := range []string{"link", "status", "audit"} {
		if o := f.outcomes(t)[id]; o.Status != contracts.OutcomeWritten {
			t.Fatalf("%s: %+v", id, o)
		}
	}
}

func TestGovernorPausesAtTheFloorAndResumes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sfemu.Options{DailyAPILimit: 1000}, &GovernorConfig{Floor: 100, SlowBelow: 200, SlowDelay: time.Millisecond, Pause: 150 * time.Millisecond})
	f.run(t)
	f.send(t, "first", createCmd(1, "Budget Ltd"))
	// Settled means written: the lag alone can read zero before the writer has fetched anything.
	// The writer learns the org's shape at start-up; spend the allowance only once it is writing.
	testkit.Eventually(t, 30*time.Second, "first command written", func() (bool, string) {
		o := f.outcomes(t)["first"]
		return o.Status == contracts.OutcomeWritten, fmt.Sprintf("%+v", o)
	})
	f.settled(t)

	f.emu.ExhaustDailyLimit()
	for i := 2; i < 5; i++ {
		f.send(t, fmt.Sprintf("cmd-%d", i), createCmd(i, "Budget Ltd"))
	}
	// While the allowance is spent the commands wait: none fails, none is written.
	// The governor has probed the allowance at least twice: it is pausing and resuming.
	testkit.Eventually(t, 30*time.Second, "governor probed the allowance twice", func() (bool, string) {
		return f.emu.Counts()["limits"] >= 2, fmt.Sprintf("counts %v", f.emu.Counts())
	})
	for id, o := range f.outcomes(t) {
		if o.Status == contracts.OutcomeFailed {
			t.Fatalf("%s failed while paused: %+v", id, o)
		}
	}
	if n := len(f.emu.All(sf.ObjectOpportunity)); n != 1 {
		t.Fatalf("%d opportunities written while the allowance was spent", n)
	}
	f.emu.ResetFaults()
	f.settled(t)
	if n := len(f.emu.All(sf.ObjectOpportunity)); n != 4 {
		t.Fatalf("%d opportunities after the allowance came back, want 4", n)
	}
	for i := 2; i < 5; i++ {
		if o := f.outcomes(t)[fmt.Sprintf("cmd-%d", i)]; o.Status != contracts.OutcomeWritten {
			t.Fatalf("cmd-%d: %+v", i, o)
		}
	}
}

// TestAccountMatchRule: the customer of a referral finds its Account by the configured rule before one is
// created (COSELL_ACCOUNT_MATCH): by default name and billing postal code (Microsoft's Dynamics 365
// connector's rule: the same name elsewhere is another customer), or by name alone, or by the customer's
// Partner Center id in an External ID field, which an Account created for such a customer then holds.
func TestAccountMatchRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rule         string
		account      contracts.Account
		wantExisting bool
	}{
		{MatchNamePostal, contracts.Account{Name: "Contoso", PostalCode: "98052"}, true},
		{MatchNamePostal, contracts.Account{Name: "contoso", PostalCode: "98052"}, true},
		{MatchNamePostal, contracts.Account{Name: "Contoso", PostalCode: "10115"}, false},
		{MatchNamePostal, contracts.Account{Name: "Contoso"}, false},
		{MatchName, contracts.Account{Name: "Contoso", PostalCode: "10115"}, true},
		{MatchExternalID, contracts.Account{Name: "Contoso Ltd (renamed)", IDs: map[string]string{"External": "C-42"}}, true},
		{MatchExternalID, contracts.Account{Name: "Contoso", PostalCode: "98052", IDs: map[string]string{"External": "C-43"}}, false},
		{MatchExternalID, contracts.Account{Name: "Contoso", PostalCode: "98052", IDs: map[string]string{"Duns": "C-42"}}, true}, // no External id: name-postal
	} {
		t.Run(fmt.Sprintf("%s %s %s %v", tc.rule, tc.account.Name, tc.account.PostalCode, tc.account.IDs), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, sfemu.Options{}, nil)
			f.w.Match = AccountMatch{Rule: tc.rule, Field: "Partner_Center_Customer_Id__c", IDType: "External"}
			existing, err := f.emu.Insert(sf.ObjectAccount, map[string]any{"Name": "Contoso", "BillingPostalCode": "98052", "Partner_Center_Customer_Id__c": "C-42"})
			if err != nil {
				t.Fatal(err)
			}
			cmd := createCmd(1, "")
			a := tc.account
			cmd.Account = &a
			f.send(t, "cmd-1", cmd)
			f.run(t)
			f.settled(t)
			opps := f.emu.All(sf.ObjectOpportunity)
			if len(opps) != 1 {
				t.Fatalf("%d opportunities: %+v", len(opps), f.outcomes(t)["cmd-1"])
			}
			got := fmt.Sprint(opps[0][sf.FieldAccountID])
			if (got == existing) != tc.wantExisting {
				t.Fatalf("Opportunity on account %s; existing %s, want existing: %v", got, existing, tc.wantExisting)
			}
			if accts := f.emu.All(sf.ObjectAccount); len(accts) != map[bool]int{true: 1, false: 2}[tc.wantExisting] {
				t.Fatalf("%d accounts", len(accts))
			}
			if id := tc.account.IDs["External"]; !tc.wantExisting && tc.rule == MatchExternalID && id != "" {
				acc, _ := f.emu.Get(sf.ObjectAccount, got)
				if acc["Partner_Center_Customer_Id__c"] != id {
					t.Errorf("the created Account does not hold the customer's id: %v", acc)
				}
			}
		})
	}
}

// A batch of creates for new customers is written in one call: the Account create and the Opportunity
// upsert in one Composite, each Opportunity taking its Account's id by reference. A customer whose Account
// Salesforce refuses fails its own command with the Account's reason; the others of its write, which
// Salesforce halts whole for the failed reference, are written with one call more.
func TestNewAccountsAndTheirOpportunitiesGoInOneCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sfemu.Options{}, nil)
	existing, _ := f.emu.Insert("Account", map[string]any{"Name": "Customer 0", "BillingPostalCode": "98052"})
	const n = 40
	var batch []platform.Event
	add := func(id string, cmd contracts.OpportunityCommand) {
		e, err := platform.NewEvent(id, contracts.TypeOpportunityRequested, contracts.StageMapper, cmd.LinkID, cmd)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, e)
	}
	for i := 0; i < n; i++ {
		add(fmt.Sprintf("cmd-%d", i), createCmd(i, fmt.Sprintf("Customer %d", i%8)))
	}
	bad := createCmd(n, "Refused Inc")
	bad.Account.PostalCode = strings.Repeat("9", 25) // BillingPostalCode holds 20: STRING_TOO_LONG
	add("cmd-bad", bad)
	if err := f.w.Learn(context.Background()); err != nil { // the org's shape, read while the stage starts
		t.Fatal(err)
	}
	c0 := f.emu.Counts()
	results := f.w.HandleBatch(context.Background(), batch) // one batch, as ConsumeBatch hands a backlog on
	for i, err := range results[:n] {
		if err != nil {
			t.Fatalf("cmd-%d: %v", i, err)
		}
	}
	if err := results[n]; !platform.IsPermanent(err) {
		t.Fatalf("cmd-bad: %v, want a permanent failure (dead-lettered with its reason)", err)
	}

	outs := f.outcomes(t)
	if o := outs["cmd-bad"]; o.Status != contracts.OutcomeFailed || o.Error == nil || o.Error.Code != "STRING_TOO_LONG" {
		t.Fatalf("the create whose Account was refused: %+v", o)
	}
	accounts := map[string]string{}
	for _, a := range f.emu.All(sf.ObjectAccount) {
		accounts[fmt.Sprint(a[sf.FieldID])] = fmt.Sprint(a[sf.AccountName])
	}
	if len(accounts) != 8 {
		t.Fatalf("accounts %v, want the 8 customers' (the existing one reused, the refused one not made)", accounts)
	}
	opps := f.emu.All(sf.ObjectOpportunity)
	if len(opps) != n {
		t.Fatalf("%d opportunities, want %d", len(opps), n)
	}
	for _, o := range opps {
		var i int
		fmt.Sscanf(fmt.Sprint(o[sf.FieldName]), "Deal %d", &i)
		if want := fmt.Sprintf("Customer %d", i%8); accounts[fmt.Sprint(o[sf.FieldAccountID])] != want {
			t.Fatalf("%s on account %v (%s), want %s's", o[sf.FieldName], o[sf.FieldAccountID], accounts[fmt.Sprint(o[sf.FieldAccountID])], want)
		}
		if i == 0 && o[sf.FieldAccountID] != existing {
			t.Fatalf("Deal 0 not on the existing account")
		}
	}
	for i := 0; i < n; i++ {
		if o := outs[fmt.Sprintf("cmd-%d", i)]; o.Status != contracts.OutcomeWritten || !o.Created {
			t.Fatalf("cmd-%d: %+v", i, o)
		}
	}
	c := f.emu.Counts()
	for k, v := range c0 {
		c[k] -= v
	}
	// One query for the Accounts, one Composite (the Account create, the upsert it halted for the refused
	// Account's reference) and the upsert sent again: no Account create of its own.
	if c["query"] != 1 || c["composite"] != 1 || c["composite.collections.create"] != 1 || c["collections.create"] != 0 || c["collections.upsert"] != 1 {
		t.Fatalf("calls %v: want query 1, composite 1 (holding the Account create), collections.upsert 1", c)
	}
}
