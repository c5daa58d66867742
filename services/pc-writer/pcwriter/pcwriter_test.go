package pcwriter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/bustest"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

// newWriter wires a writer to a real embedded nats-server and the Partner Center emulator over HTTP.
func newWriter(t testing.TB) (*Writer, *pcemu.Emulator) {
	return newWriterVia(t, nil)
}

// newWriterVia is newWriter with the emulator's HTTP handler wrapped by wrap (nil: none), so a test can
// watch or gate the calls as they reach Partner Center.
func newWriterVia(t testing.TB, wrap func(http.Handler) http.Handler) (*Writer, *pcemu.Emulator) {
	t.Helper()
	ctx := context.Background()
	log := testkit.Log()
	bus := bustest.Start(t, bustest.Config(5, 5*time.Second), contracts.StagePCWriter, platform.NewMetrics(prometheus.NewRegistry()))
	emu, err := pcemu.New(pcemu.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = emu
	if wrap != nil {
		h = wrap(emu)
	}
	srv := httptest.NewServer(h)
	emu.SetBaseURL(srv.URL)
	t.Cleanup(func() { srv.Close(); emu.Close() })
	base := srv.URL
	client, err := pcapi.New(ctx, emutest.PartnerCenterConfig(emu, base))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := outcome.NewRecorder(ctx, bus, contracts.StagePCWriter)
	if err != nil {
		t.Fatal(err)
	}
	return &Writer{Bus: bus, PC: client, Outcomes: rec, Log: log}, emu
}

func command(t testing.TB, id string, cmd contracts.ReferralCommand) platform.Event {
	t.Helper()
	e, err := platform.NewEvent(id, contracts.TypeReferralRequested, contracts.StageMapper, cmd.LinkID, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// lastOutcome reads the last outcome published for a link.
func lastOutcome(t *testing.T, w *Writer, root, linkID string) contracts.Outcome {
	t.Helper()
	subj := contracts.Subject(root, linkID)
	m, err := w.Bus.LastMsg(context.Background(), contracts.StreamOutcomes, subj)
	if err != nil {
		t.Fatalf("no outcome on %s: %v", subj, err)
	}
	e, err := m.Event()
	if err != nil {
		t.Fatal(err)
	}
	out, err := platform.DataAs[contracts.Outcome](e)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func closeDate(v string) []pc.PatchOp {
	return []pc.PatchOp{{Op: "replace", Path: "/details/closingDateTime", Value: v}}
}

// TestPatchRaceWithMicrosoftEdit: a patch decided against an older eTag is refused with 412 and nothing of
// ours is written; the outcome hands the referral as it now is back to the mapper.
func TestPatchRaceWithMicrosoftEdit(t *testing.T) {
	w, emu := newWriter(t)
	r, err := emu.SellerCreate(pc.Referral{Name: "Race"})
	if err != nil {
		t.Fatal(err)
	}
	base := contracts.ReferralVersion(r).Tag
	emu.BeforeNextPatch(func(id string) {
		if _, err := emu.SellerUpdate(id, pc.Referral{Details: &pc.Details{Notes: "Microsoft's note"}}); err != nil {
			t.Error(err)
		}
	})
	cmd := contracts.ReferralCommand{LinkID: "pc-race", Op: contracts.OpUpdate, ReferralID: r.ID, BaseETag: base,
		Patch: closeDate("2027-09-30T00:00:00Z")}
	if err := w.Handle(context.Background(), command(t, "cmd/1", cmd)); err != nil {
		t.Fatalf("a 412 is answered with an outcome, not an error: %v", err)
	}
	now, _ := emu.Get(r.ID)
	if now.Details.Notes != "Microsoft's note" || now.Details.ClosingDateTime != "" {
		t.Errorf("referral after the race = %+v: Microsoft's edit must stand and ours must not be written", now.Details)
	}
	out := lastOutcome(t, w, contracts.SubjectReferralFailed, "pc-race")
	if out.Error == nil || out.Error.Code != pc.ErrorCodePreconditionFailed || out.Error.Permanent || out.Referral == nil ||
		out.Referral.ETag != now.ETag || out.Version.Tag != contracts.ReferralVersion(now).Tag {
		t.Fatalf("outcome = %+v (error %+v)", out, out.Error)
	}
	if c := emu.Counts(); c["referrals.patch"] != 1 || c["referrals.get"] != 1 {
		t.Errorf("calls %v: one refused patch and one read", c)
	}
	// Decided again against the fresh eTag, the same change lands with one call.
	cmd.BaseETag = out.Version.Tag
	if err := w.Handle(context.Background(), command(t, "cmd/2", cmd)); err != nil {
		t.Fatal(err)
	}
	now, _ = emu.Get(r.ID)
	if now.Details.Notes != "Microsoft's note" || now.Details.ClosingDateTime != "2027-09-30T00:00:00Z" {
		t.Errorf("after the second patch: %+v", now.Details)
	}
	if c := emu.Counts(); c["referrals.patch"] != 2 || c["referrals.get"] != 1 {
		t.Errorf("calls %v: the landed patch costs one call", c)
	}
}

// TestRefusedTransitionIsAFailedOutcome: a transition Partner Center does not allow is one call, one failed
// outcome with Partner Center's reason, and the command is parked as a dead letter (no retry).
func TestRefusedTransitionIsAFailedOutcome(t *testing.T) {
	w, emu := newWriter(t)
	r, err := emu.SellerCreate(pc.Referral{Name: "Closed one"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emu.SellerClose(r.ID, pc.SubstatusLost); err != nil {
		t.Fatal(err)
	}
	cur, _ := emu.Get(r.ID)
	r2, err := emu.SellerCreate(pc.Referral{Name: "New one"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, link string
		cmd        contracts.ReferralCommand
		status     int
	}{
		{"won straight from New/Pending is not a substatus of Active", "pc-a", contracts.ReferralCommand{ReferralID: r2.ID,
			BaseETag: contracts.ReferralVersion(r2).Tag, Patch: []pc.PatchOp{{Op: "replace", Path: "/status", Value: "Active"},
				{Op: "replace", Path: "/substatus", Value: "Won"}}}, 400},
		{"a closed referral takes no edit", "pc-b", contracts.ReferralCommand{ReferralID: r.ID,
			BaseETag: contracts.ReferralVersion(cur).Tag, Patch: closeDate("2027-01-01T00:00:00Z")}, 409},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cmd.LinkID, c.cmd.Op = c.link, contracts.OpUpdate
			c.cmd.Decision = &contracts.Decision{LinkID: c.link, Stage: contracts.StageMapper, Kind: contracts.DecisionApplied,
				Target: contracts.PartnerCenter, Fields: []string{"status"}, Cause: "sf/006" + c.link}
			before := emu.Counts()["referrals.patch"]
			if err := w.Handle(context.Background(), command(t, "cmd/"+c.link, c.cmd)); !platform.IsPermanent(err) {
				t.Fatalf("a refusal is a failed outcome and a dead letter, not a retry: %v", err)
			}
			out := lastOutcome(t, w, contracts.SubjectReferralFailed, c.link)
			if out.Error == nil || !out.Error.Permanent || out.Error.HTTPStatus != c.status || out.Error.Message == "" {
				t.Errorf("outcome error = %+v", out.Error)
			}
			if out.Decision == nil || out.Decision.Cause != c.cmd.Decision.Cause || out.Decision.Kind != contracts.DecisionApplied {
				t.Errorf("outcome carries decision %+v; want the command's (the outcome is its audit record)", out.Decision)
			}
			if n := emu.Counts()["referrals.patch"] - before; n != 1 {
				t.Errorf("%d patch calls, want 1", n)
			}
		})
	}
}

// TestThrottlingHonoursRetryAfter: a short 429 storm is waited out in place (the limiter pauses for
// Retry-After); a longer one puts the command back for exactly Retry-After, and nothing is written twice.
func TestThrottlingHonoursRetryAfter(t *testing.T) {
	w, emu := newWriter(t)
	w.Config.ThrottleRetries = 2
	r, err := emu.SellerCreate(pc.Referral{Name: "Throttled"})
	if err != nil {
		t.Fatal(err)
	}
	emu.SetFaults(pcemu.Faults{Throttle429: 2})
	cmd := contracts.ReferralCommand{LinkID: "pc-t", Op: contracts.OpUpdate, ReferralID: r.ID,
		BaseETag: contracts.ReferralVersion(r).Tag, Patch: closeDate("2027-02-01T00:00:00Z")}
	if err := w.Handle(context.Background(), command(t, "cmd/t1", cmd)); err != nil {
		t.Fatalf("two 429s must be waited out: %v", err)
	}
	if out := lastOutcome(t, w, contracts.SubjectReferralWritten, "pc-t"); out.Referral == nil ||
		out.Referral.Details.ClosingDateTime != "2027-02-01T00:00:00Z" {
		t.Fatalf("outcome = %+v", out)
	}

	cur, _ := emu.Get(r.ID)
	emu.SetFaults(pcemu.Faults{Throttle429: 5})
	cmd.BaseETag, cmd.Patch = contracts.ReferralVersion(cur).Tag, closeDate("2027-03-01T00:00:00Z")
	err = w.Handle(context.Background(), command(t, "cmd/t2", cmd))
	var ra *platform.RetryAfterError
	if !errors.As(err, &ra) || ra.Delay != time.Second {
		t.Fatalf("a long storm must put the command back after Retry-After, got %v", err)
	}
	if c := emu.Counts(); c["throttled"] != 5 || c["referrals.patch"] != 6 {
		t.Errorf("calls %v", c)
	}
	emu.SetFaults(pcemu.Faults{})
	if err := w.Handle(context.Background(), command(t, "cmd/t2", cmd)); err != nil {
		t.Fatal(err)
	}
	if got, _ := emu.Get(r.ID); got.Details.ClosingDateTime != "2027-03-01T00:00:00Z" {
		t.Errorf("the redelivered command did not land: %+v", got.Details)
	}
}

// TestCreateAdoptsExistingReferral: a create for an Opportunity that already has a referral adopts it.
func TestCreateAdoptsExistingReferral(t *testing.T) {
	w, emu := newWriter(t)
	v := 10.0
	want := pc.Referral{Name: "Adopted", Type: pc.TypeIndependent, ExternalReferenceID: "006ADOPT",
		CustomerProfile: &pc.CustomerProfile{Name: "Adatum"}, Consent: &pc.Consent{}, Details: &pc.Details{DealValue: &v, Currency: "USD"}}
	cmd := contracts.ReferralCommand{LinkID: "sf-006ADOPT", Op: contracts.OpCreate, OpportunityID: "006ADOPT", Create: &want}
	for _, id := range []string{"cmd/c1", "cmd/c2"} { // the second is a redelivery after a lost outcome
		if err := w.Handle(context.Background(), command(t, id, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	if n := emu.Counts()["referrals.create"]; n != 1 {
		t.Errorf("%d creates, want 1", n)
	}
	if out := lastOutcome(t, w, contracts.SubjectReferralWritten, "sf-006ADOPT"); out.Created || out.ReferralID == "" {
		t.Errorf("the second create must adopt: %+v", out)
	}
}

// TestNewOpportunityNeverAdoptsAnothersReferral: whether Partner Center ignores or refuses a filter on
// externalReferenceId (the docs do not list it as filterable), a new Opportunity gets its own referral and never
// adopts another Opportunity's.
func TestNewOpportunityNeverAdoptsAnothersReferral(t *testing.T) {
	for _, mode := range []pcemu.FilterMode{pcemu.FilterIgnore, pcemu.FilterRefuse} {
		t.Run(string(mode), func(t *testing.T) {
			w, emu := newWriter(t)
			ctx := context.Background()
			setFilterMode(t, emu, mode)
			v := 10.0
			ref := func(opp string) pc.Referral {
				return pc.Referral{Name: "Deal " + opp, Type: pc.TypeIndependent, ExternalReferenceID: opp,
					CustomerProfile: &pc.CustomerProfile{Name: "Adatum"}, Consent: &pc.Consent{}, Details: &pc.Details{DealValue: &v, Currency: "USD"}}
			}
			other, err := w.PC.CreateReferral(ctx, ref("006OTHER"))
			if err != nil {
				t.Fatal(err)
			}
			want := ref("006NEW")
			cmd := contracts.ReferralCommand{LinkID: "sf-006NEW", Op: contracts.OpCreate, OpportunityID: "006NEW", Create: &want}
			if err := w.Handle(ctx, command(t, "cmd/new", cmd)); err != nil {
				t.Fatal(err)
			}
			out := lastOutcome(t, w, contracts.SubjectReferralWritten, "sf-006NEW")
			if !out.Created || out.ReferralID == other.ID || out.Referral == nil || out.Referral.ExternalReferenceID != "006NEW" {
				t.Fatalf("the new Opportunity's outcome: %+v", out)
			}
			if n := emu.Counts()["refused.filter"]; n != 0 {
				t.Errorf("the writer sent an undocumented filter %d times", n)
			}
		})
	}
}

// TestInterruptedCreateIsAdoptedNotRepeated: an attempt recorded its intent and created the referral, then died
// before recording the id; the redelivery finds that referral by the documented scan (checked on the client)
// instead of creating a second one, even when the server ignores filters it does not document.
func TestInterruptedCreateIsAdoptedNotRepeated(t *testing.T) {
	w, emu := newWriter(t)
	ctx := context.Background()
	setFilterMode(t, emu, pcemu.FilterIgnore)
	v := 10.0
	want := pc.Referral{Name: "Interrupted", Type: pc.TypeIndependent, ExternalReferenceID: "006CRASH",
		CustomerProfile: &pc.CustomerProfile{Name: "Adatum"}, Consent: &pc.Consent{}, Details: &pc.Details{DealValue: &v, Currency: "USD"}}
	rec, _ := json.Marshal(contracts.PCCreate{OpportunityID: "006CRASH", StartedAt: time.Now().UTC()})
	if _, err := w.Outcomes.Applied.Create(ctx, contracts.PCCreateKey("006CRASH"), rec); err != nil {
		t.Fatal(err)
	}
	made, err := w.PC.CreateReferral(ctx, want) // what the dead attempt did
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"006X1", "006X2"} { // newer referrals of other Opportunities
		o := want
		o.ExternalReferenceID, o.Name = n, n
		if _, err := w.PC.CreateReferral(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	creates := emu.Counts()["referrals.create"]
	cmd := contracts.ReferralCommand{LinkID: "sf-006CRASH", Op: contracts.OpCreate, OpportunityID: "006CRASH", Create: &want}
	if err := w.Handle(ctx, command(t, "cmd/crash", cmd)); err != nil {
		t.Fatal(err)
	}
	if n := emu.Counts()["referrals.create"]; n != creates {
		t.Errorf("creates %d → %d: the interrupted create was repeated", creates, n)
	}
	if out := lastOutcome(t, w, contracts.SubjectReferralWritten, "sf-006CRASH"); out.Created || out.ReferralID != made.ID {
		t.Errorf("outcome %+v, want the interrupted attempt's referral %s adopted", out, made.ID)
	}
}

// setFilterMode switches the emulator's treatment of undocumented $filter properties through its control API.
func setFilterMode(t *testing.T, emu *pcemu.Emulator, mode pcemu.FilterMode) {
	t.Helper()
	body := strings.NewReader(`{"undocumented":"` + string(mode) + `"}`)
	req := httptest.NewRequest(http.MethodPost, "/_emulator/filters", body)
	rr := httptest.NewRecorder()
	emu.ServeHTTP(rr, req)
	if rr.Code != http.StatusOK {
		t.Fatalf("filter mode %s: %d %s", mode, rr.Code, rr.Body)
	}
}

// TestWrittenReferralIsObserved: the referral a create or a patch returned is published as its observed
// snapshot, under the id pc-ingest gives that version, so the webhook about our own write needs no read:
// each write costs one Partner Center call.
func TestWrittenReferralIsObserved(t *testing.T) {
	w, emu := newWriter(t)
	ctx := context.Background()
	want := newReferral("Observed", "006OBS")
	lastObserved := func(referralID string) (string, contracts.ReferralObserved) {
		t.Helper()
		m, err := w.Bus.LastMsg(ctx, contracts.StreamObserved, contracts.Subject(contracts.SubjectReferralObserved, referralID))
		if err != nil {
			t.Fatalf("no observed snapshot of %s: %v", referralID, err)
		}
		e, err := m.Event()
		if err != nil {
			t.Fatal(err)
		}
		d, err := platform.DataAs[contracts.ReferralObserved](e)
		if err != nil {
			t.Fatal(err)
		}
		return e.ID(), d
	}
	cmd := contracts.ReferralCommand{LinkID: "sf-006OBS", Op: contracts.OpCreate, OpportunityID: "006OBS", Create: &want}
	if err := w.Handle(ctx, command(t, "cmd/create", cmd)); err != nil {
		t.Fatal(err)
	}
	out := lastOutcome(t, w, contracts.SubjectReferralWritten, "sf-006OBS")
	now, err := emu.Get(out.ReferralID)
	if err != nil {
		t.Fatal(err)
	}
	id, d := lastObserved(now.ID)
	if v := contracts.ReferralVersion(now); id != contracts.ReferralObservedID(now.ID, v) || d.Version != v || d.Referral.ETag != now.ETag ||
		d.Referral.ExternalReferenceID != "006OBS" || d.Via != "written" {
		t.Errorf("observed after the create: %s %+v, want the version Partner Center holds (%s)", id, d.Version, now.ETag)
	}
	patch := contracts.ReferralCommand{LinkID: "sf-006OBS", Op: contracts.OpUpdate, ReferralID: now.ID, BaseETag: contracts.ReferralVersion(now).Tag,
		Patch: closeDate("2027-09-30T00:00:00Z")}
	if err := w.Handle(ctx, command(t, "cmd/patch", patch)); err != nil {
		t.Fatal(err)
	}
	patched, _ := emu.Get(now.ID)
	if id, d := lastObserved(now.ID); patched.ETag == now.ETag || id != contracts.ReferralObservedID(now.ID, contracts.ReferralVersion(patched)) ||
		d.Referral.Details.ClosingDateTime != "2027-09-30T00:00:00Z" {
		t.Errorf("observed after the patch: %s %+v, want eTag %s", id, d.Version, patched.ETag)
	}
	if c := emu.Counts(); c["referrals.create"] != 1 || c["referrals.patch"] != 1 || c["referrals.get"] != 0 || c["referrals.list"] != 0 {
		t.Errorf("calls %v: one create and one patch, no read", c)
	}
}

// TestBatchRunsLinksAtOnceAndEachLinkInOrder: a batch's creates for different links are in flight at
// once (the emulator holds each create until four are in flight: a writer making one call at a time never
// gets there), while one link's three patches reach Partner Center one after another in stream order.
func TestBatchRunsLinksAtOnceAndEachLinkInOrder(t *testing.T) {
	const together = 4
	var (
		mu       sync.Mutex
		inFlight int
		allIn    = make(chan struct{})
		patches  []string
		gateMiss atomic.Bool
	)
	w, emu := newWriterVia(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			switch {
			case r.Method == http.MethodPost && r.URL.Path == "/v1.0/engagements/referrals":
				mu.Lock()
				if inFlight++; inFlight == together {
					close(allIn)
				}
				mu.Unlock()
				select {
				case <-allIn:
				case <-time.After(20 * time.Second): // a bound for the failure only
					gateMiss.Store(true)
				}
			case r.Method == http.MethodPatch:
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
				var ops []pc.PatchOp
				_ = json.Unmarshal(body, &ops)
				mu.Lock()
				for _, op := range ops {
					patches = append(patches, fmt.Sprint(op.Value))
				}
				mu.Unlock()
			}
			next.ServeHTTP(rw, r)
		})
	})
	w.Config.Concurrency = together
	ctx := context.Background()
	r, err := emu.SellerCreate(pc.Referral{Name: "Patched in order"})
	if err != nil {
		t.Fatal(err)
	}
	v := 10.0
	var events []platform.Event
	for i := range together {
		opp := fmt.Sprintf("006BATCH%d", i)
		want := pc.Referral{Name: "Deal " + opp, Type: pc.TypeIndependent, ExternalReferenceID: opp,
			CustomerProfile: &pc.CustomerProfile{Name: "Adatum"}, Consent: &pc.Consent{}, Details: &pc.Details{DealValue: &v, Currency: "USD"}}
		events = append(events, command(t, "cmd/create/"+opp, contracts.ReferralCommand{LinkID: "sf-" + opp, Op: contracts.OpCreate,
			OpportunityID: opp, Create: &want}))
		// The link's patches are spread through the batch, between the other links' creates.
		events = append(events, command(t, fmt.Sprintf("cmd/patch/%d", i), contracts.ReferralCommand{LinkID: "pc-ordered",
			Op: contracts.OpUpdate, ReferralID: r.ID, Patch: closeDate(fmt.Sprintf("2027-0%d-01T00:00:00Z", i+1))}))
	}
	for i, err := range w.HandleBatch(ctx, events) {
		if err != nil {
			t.Errorf("event %s: %v", events[i].ID(), err)
		}
	}
	if gateMiss.Load() {
		t.Fatalf("fewer than %d creates were ever in flight at once", together)
	}
	want := []string{"2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z", "2027-04-01T00:00:00Z"}
	if !slices.Equal(patches, want) {
		t.Errorf("the link's patches reached Partner Center as %v, want stream order %v", patches, want)
	}
	if got, _ := emu.Get(r.ID); got.Details.ClosingDateTime != want[len(want)-1] {
		t.Errorf("the referral ends with %q, want the last command's %q", got.Details.ClosingDateTime, want[len(want)-1])
	}
	if n := emu.Counts()["referrals.create"]; n != together {
		t.Errorf("%d creates, want %d", n, together)
	}
}

// TestHeldBehindARetriedCommand: when a link's command is put back (throttled past its in-place retries),
// its later command in the same batch is put back too, for as long, instead of overtaking it.
func TestHeldBehindARetriedCommand(t *testing.T) {
	w, emu := newWriter(t)
	w.Config.ThrottleRetries = 1
	r, err := emu.SellerCreate(pc.Referral{Name: "Held"})
	if err != nil {
		t.Fatal(err)
	}
	emu.SetFaults(pcemu.Faults{Throttle429: 2})
	cmd := func(id, date string) platform.Event {
		return command(t, id, contracts.ReferralCommand{LinkID: "pc-held", Op: contracts.OpUpdate, ReferralID: r.ID,
			BaseETag: contracts.ReferralVersion(r).Tag, Patch: closeDate(date)})
	}
	res := w.HandleBatch(context.Background(), []platform.Event{cmd("cmd/h1", "2027-05-01T00:00:00Z"), cmd("cmd/h2", "2027-06-01T00:00:00Z")})
	var first, second *platform.RetryAfterError
	if !errors.As(res[0], &first) || !errors.As(res[1], &second) || second.Delay != first.Delay {
		t.Fatalf("results %v: both put back after the same Retry-After", res)
	}
	if c := emu.Counts(); c["referrals.patch"] != 2 {
		t.Errorf("calls %v: the second command must not have been sent", c)
	}
}

// TestCreateIsRecordedOnceAndReplayedForFree: a create keeps one record in the applied bucket (its intent,
// then the referral id and the command it answers, written after the snapshot and the outcome) and no
// applied mark besides; the same command handled again (a replay, a redelivery after the ack was lost)
// finds that record and costs no Partner Center call and no second outcome.
func TestCreateIsRecordedOnceAndReplayedForFree(t *testing.T) {
	w, emu := newWriter(t)
	ctx := context.Background()
	want := newReferral("Once", "006ONCE")
	ev := command(t, "cmd/once", contracts.ReferralCommand{LinkID: "sf-006ONCE", Op: contracts.OpCreate, OpportunityID: "006ONCE", Create: &want})
	if err := w.Handle(ctx, ev); err != nil {
		t.Fatal(err)
	}
	keys, err := w.Outcomes.Applied.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{contracts.PCCreateKey("006ONCE")}) {
		t.Fatalf("applied bucket holds %v, want only the create's record", keys)
	}
	e, err := w.Outcomes.Applied.Get(ctx, contracts.PCCreateKey("006ONCE"))
	if err != nil {
		t.Fatal(err)
	}
	var rec contracts.PCCreate
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	out := lastOutcome(t, w, contracts.SubjectReferralWritten, "sf-006ONCE")
	if rec.ReferralID != out.ReferralID || rec.CommandID != "cmd/once" || !out.Created {
		t.Fatalf("record %+v, outcome %+v: want the created referral and the command recorded", rec, out)
	}
	calls := emu.Counts()
	outcomes := bustest.Count(t, w.Bus, contracts.StreamOutcomes, contracts.SubjectReferralWritten+".>")
	for range 2 {
		if err := w.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	for k, n := range emu.Counts() {
		if n != calls[k] {
			t.Errorf("the replayed create called Partner Center: %s %d → %d", k, calls[k], n)
		}
	}
	if n := bustest.Count(t, w.Bus, contracts.StreamOutcomes, contracts.SubjectReferralWritten+".>"); n != outcomes {
		t.Errorf("outcomes %d → %d: the replayed create published again", outcomes, n)
	}
}

// newReferral is a referral to create for an Opportunity.
func newReferral(name, opportunityID string) pc.Referral {
	v := 10.0
	return pc.Referral{Name: name, Type: pc.TypeIndependent, ExternalReferenceID: opportunityID,
		CustomerProfile: &pc.CustomerProfile{Name: "Adatum"}, Consent: &pc.Consent{}, Details: &pc.Details{DealValue: &v, Currency: "USD"}}
}
