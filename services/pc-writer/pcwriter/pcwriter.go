// Package pcwriter is the pc-writer stage: it carries out referral create and patch commands against the
// Partner Center Referrals API.
//
// A create is idempotent from what cosell controls, not from an undocumented filter: before it calls Partner
// Center it records the intent for the Opportunity in the applied bucket, and once created the referral id. A
// redelivered create adopts the recorded referral (re-read and checked to name this Opportunity); after a crash
// between the create and its record it scans the partner's recent outgoing referrals by documented filter and
// order (direction, createdDateTime) and adopts only one whose externalReferenceId is this Opportunity, checked
// on the client. An Opportunity with no record is created: it can never adopt another's referral. A patch carries only the changed fields and is sent with
// If-Match on the eTag the mapper decided against (the command's BaseETag), in one call. When Microsoft
// edited the referral since, Partner Center answers 412: the writer re-reads the referral and publishes a
// failed outcome with code preconditionFailed carrying it, and the mapper decides again on that fresh
// snapshot, so a Microsoft edit is never overwritten blindly and our change is proposed again if it is
// still ours. A redelivered patch that already landed meets the same 412 and costs no second write.
//
// Every call waits on one TenantLimiter (the writer's pace toward its Partner Center tenant); a 429 pauses
// it for the Retry-After the answer asked for, and the call is retried in place a few times before the
// command is put back for later. A refusal (validation, a status transition Partner Center does not allow,
// a closed referral) becomes a failed outcome, audited and shown as "✖ …" on the Opportunity's sync
// status, and the command is parked in the dead-letter stream with the reason: it is not retried.
package pcwriter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// Config tunes pc-writer's pace toward Partner Center.
type Config struct {
	// Rate is how many calls per second pc-writer makes to its tenant, all replicas together (each paces
	// at its share: pcapi.RateShare); 0 = no limit.
	Rate  float64 `env:"COSELL_PC_WRITE_RATE" default:"10" help:"Partner Center calls per second to the tenant, shared by all pc-writer replicas (0 = no limit)"`
	Burst int     `env:"COSELL_PC_WRITE_BURST" default:"5"`
	// ThrottleRetries is how often a throttled call is retried in place, after its Retry-After, before
	// the command is put back on the stream (default 3).
	ThrottleRetries int `env:"COSELL_PC_THROTTLE_RETRIES" default:"3"`
	// Concurrency is how many links' commands are carried out at once; one link's commands always run
	// one after another, in stream order. Every call still waits on the one TenantLimiter. A batch is
	// handed on only once all of it is done (ConsumeBatch), so at 8 a backlog's batch of 64 went in eight
	// waves, each as long as its slowest create; at 32, two (the SF → PC backlog with the limit off, loaded
	// machine: pc-writer's "fetched → written" 104 → 38 ms p50, "command stored → fetched" 114 → 30 ms).
	Concurrency int `env:"COSELL_PC_WRITE_CONCURRENCY" default:"32" help:"links whose commands are carried out at once, at least 1 (one link's commands stay in order; the rate limit and Retry-After still apply to all)"`
}

// Writer is the pc-writer stage.
type Writer struct {
	Bus      *platform.Bus
	PC       *pcapi.Client
	Outcomes *outcome.Recorder
	Log      *slog.Logger
	Consume  platform.ConsumeOptions
	Config   Config
	// Limiter paces the calls to the tenant; nil = one built from Config on first use.
	Limiter *pcapi.TenantLimiter
	// AfterWrite, when set, is called after the external write and before the outcome is published:
	// tests use it to stop a writer exactly there.
	AfterWrite func(commandID string)

	once sync.Once
}

func (w *Writer) limiter() *pcapi.TenantLimiter {
	w.once.Do(func() {
		if w.Limiter == nil {
			w.Limiter = pcapi.NewTenantLimiter(w.Config.Rate, w.Config.Burst)
		}
	})
	return w.Limiter
}

// call makes one Partner Center call at the tenant's pace, waiting out a short 429 storm in place.
func (w *Writer) call(ctx context.Context, f func() error) error {
	return w.limiter().Call(ctx, w.Log, w.Config.ThrottleRetries, f)
}

// defaultBatch is how many commands one fetch takes when the stage's consumer tuning does not say: enough
// to keep Concurrency links busy through a backlog.
const defaultBatch = 64

// Run consumes referral commands until ctx is cancelled, then drains. It takes every command already
// pending (up to the batch size) at once and carries out several links' commands at a time; a trickle is
// handled one command at a time without waiting for a batch to fill.
func (w *Writer) Run(ctx context.Context) error {
	if w.Config.Rate > 0 {
		// COSELL_PC_WRITE_RATE is the tenant's: the replicas alive share it.
		share, err := pcapi.NewRateShare(ctx, w.Bus, w.limiter(), w.Config.Rate, w.Config.Burst, w.Log)
		if err != nil {
			return err
		}
		go share.Run(ctx)
	}
	opts := w.Consume
	if opts.Batch <= 0 {
		opts.Batch = defaultBatch
	}
	return w.Bus.ConsumeBatch(ctx, contracts.ConsumerPCWriter, w.HandleBatch, opts)
}

// heldBehind is the result of a command not started because the earlier command id of its link is being
// retried: it is put back for as long as that one.
func heldBehind(id string, err error) error {
	held := fmt.Errorf("held behind %s of the same link, which is retried first", id)
	var ra *platform.RetryAfterError
	if errors.As(err, &ra) {
		return platform.RetryAfter(held, ra.Delay)
	}
	return held
}

// HandleBatch carries out a batch of referral commands and returns one result per event. The commands are
// grouped by link (the event subject) in stream order; up to Config.Concurrency groups run at once, each
// one command after another, so a link's commands are never reordered and never overlap. Batches run one
// after another, so that order also holds across batches.
func (w *Writer) HandleBatch(ctx context.Context, events []platform.Event) []error {
	results := make([]error, len(events))
	var groups [][]int
	byLink := map[string]int{}
	for i, e := range events {
		g, ok := byLink[e.Subject()]
		if !ok {
			g = len(groups)
			byLink[e.Subject()] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	sem := make(chan struct{}, max(w.Config.Concurrency, 1))
	var wg sync.WaitGroup
	for _, g := range groups {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var held error
			for _, i := range g {
				if held != nil {
					// An earlier command of this link goes back on the stream: this one must not overtake it.
					results[i] = held
					continue
				}
				results[i] = w.Handle(ctx, events[i])
				if err := results[i]; err != nil && !platform.IsPermanent(err) {
					held = heldBehind(events[i].ID(), err)
				}
			}
		}()
	}
	wg.Wait()
	return results
}

// Handle carries out one referral command.
func (w *Writer) Handle(ctx context.Context, e platform.Event) error {
	cmd, err := platform.DataAs[contracts.ReferralCommand](e)
	if err != nil {
		return platform.Permanent(err)
	}
	// A create's record (contracts.PCCreate) says whether it was carried out; every other command has an
	// applied mark.
	if cmd.Op != contracts.OpCreate {
		if done, err := w.Outcomes.Done(ctx, e.ID()); err != nil || done {
			return err
		}
	}
	out := contracts.Outcome{CommandID: e.ID(), LinkID: cmd.LinkID, System: contracts.PartnerCenter, Op: cmd.Op,
		OpportunityID: cmd.OpportunityID, ReferralID: cmd.ReferralID, Decision: cmd.Decision, CauseVersion: cmd.CauseVersion}
	var r pc.Referral
	var record func(context.Context) // a create's second record, once its snapshot and outcome are out
	switch cmd.Op {
	case contracts.OpCreate:
		var done bool
		if r, out.Created, record, done, err = w.create(ctx, e.ID(), cmd); done && err == nil {
			return nil // carried out and its outcome published before (a replay, a redelivery after the ack was lost)
		}
	case contracts.OpUpdate:
		r, err = w.patch(ctx, cmd)
	default:
		err = platform.Permanent(fmt.Errorf("command %s: unknown op %q", e.ID(), cmd.Op))
	}
	if err != nil {
		return w.fail(ctx, out, err)
	}
	if w.AfterWrite != nil {
		w.AfterWrite(e.ID())
	}
	out.Status = contracts.OutcomeWritten
	out.ReferralID = r.ID
	out.Referral = &r
	out.Version = contracts.ReferralVersion(r)
	// The snapshot goes with the outcome, their acks in flight together (one round trip): Partner Center
	// sends its webhook about our write as soon as the write is made, and pc-ingest reads the referral unless
	// the snapshot is already there, or (a create) unless it knows from the create's first record that one is
	// coming: it holds the webhook until the second record, written only after the snapshot and the outcome
	// are stored (the record then stands for the applied mark: the create is carried out and its outcome
	// published). The mapper decides on the returned referral with the outcome, whichever it gets first.
	var snapshot deferred
	w.observe(ctx, &snapshot, r)
	if err := w.Outcomes.PublishWith(ctx, out, cmd.Op == contracts.OpCreate, snapshot.events...); err != nil {
		return err
	}
	if record != nil {
		record(ctx)
	}
	return nil
}

// deferred is an observed.Publisher that keeps the events given to it, for the caller to send together
// with others.
type deferred struct{ events []platform.Outgoing }

func (d *deferred) Publish(_ context.Context, subject string, e platform.Event) (bool, error) {
	d.events = append(d.events, platform.Outgoing{Subject: subject, Event: e})
	return false, nil
}

// observe builds the referral Partner Center returned from our write as its observed snapshot (the same
// event id pc-ingest would give that version), into p. The webhook Partner Center sends about our own write
// then finds a snapshot not older than its change and pc-ingest does not read the referral again: one
// Partner Center call per create and per patch instead of two. A snapshot that cannot be built costs only
// that read, so it is logged, not retried.
func (w *Writer) observe(ctx context.Context, p observed.Publisher, r pc.Referral) {
	if r.ID == "" || r.ETag == "" {
		return
	}
	if _, err := observed.PublishReferral(ctx, p, contracts.StagePCWriter, r, "written"); err != nil {
		w.Log.Warn("the written referral is not published as observed; pc-ingest will read it behind its webhook",
			"referral_id", r.ID, "err", err)
	}
}

// createScanSlack widens the recovery scan for clock skew between cosell and Partner Center.
const createScanSlack = 5 * time.Minute

// create carries out a create command: the referral, whether this attempt created it, the record to
// write once its snapshot and outcome are published, and done when the record says this command was
// carried out and its outcome published already (then nothing else is returned or needed).
func (w *Writer) create(ctx context.Context, commandID string, cmd contracts.ReferralCommand) (r pc.Referral, created bool, record func(context.Context), done bool, err error) {
	if cmd.Create == nil {
		return pc.Referral{}, false, nil, false, platform.Permanent(fmt.Errorf("create for opportunity %s carries no referral", cmd.OpportunityID))
	}
	key := contracts.PCCreateKey(cmd.OpportunityID)
	// Most creates are a first attempt: the intent is recorded at once (compare-and-set on no record, one
	// round trip); a record already there (a redelivery, a replay, another replica's attempt) is read and
	// recovered from.
	rec := contracts.PCCreate{OpportunityID: cmd.OpportunityID, StartedAt: time.Now().UTC(), CommandID: commandID}
	b, _ := json.Marshal(rec)
	rev, err := w.Outcomes.Applied.Create(ctx, key, b)
	if err == nil {
		r, created, record, err = w.createNew(ctx, commandID, cmd, rec, rev)
		return r, created, record, false, err
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return pc.Referral{}, false, nil, false, fmt.Errorf("record the create of opportunity %s: %w", cmd.OpportunityID, err)
	}
	if rec, rev, err = w.loadCreate(ctx, key); err != nil {
		return pc.Referral{}, false, nil, false, err
	}
	if rev == 0 {
		return pc.Referral{}, false, nil, false, fmt.Errorf("the create record of opportunity %s went away while it was read; trying again", cmd.OpportunityID)
	}
	if rec.ReferralID != "" {
		if rec.CommandID == commandID {
			return pc.Referral{}, false, nil, true, nil
		}
		if rec.CommandID == "" { // recorded before the record named its command: the applied mark says
			if done, err := w.Outcomes.Done(ctx, commandID); err != nil || done {
				return pc.Referral{}, false, nil, done, err
			}
		}
	}
	if rec.ReferralID != "" {
		r, err := w.get(ctx, rec.ReferralID)
		if err == nil && r.ExternalReferenceID == cmd.OpportunityID {
			return r, false, w.recordCreated(key, rec, rev, r.ID, commandID), false, nil
		}
		if err != nil && !pcapi.IsNotFound(err) {
			return pc.Referral{}, false, nil, false, err
		}
		w.Log.Warn("the referral recorded for the opportunity is gone or names another; creating a new one",
			"opportunity_id", cmd.OpportunityID, "referral_id", rec.ReferralID)
		r, created, record, err = w.retryCreate(ctx, commandID, cmd, rec, rev)
		return r, created, record, false, err
	}
	found, err := w.findCreated(ctx, cmd.OpportunityID, rec.StartedAt)
	if err != nil {
		return pc.Referral{}, false, nil, false, err
	}
	if found != nil {
		return *found, false, w.recordCreated(key, rec, rev, found.ID, commandID), false, nil
	}
	r, created, record, err = w.retryCreate(ctx, commandID, cmd, rec, rev)
	return r, created, record, false, err
}

// retryCreate announces a new attempt in the create record (compare-and-set: a concurrent attempt makes
// this one wait for a redelivery) and creates.
func (w *Writer) retryCreate(ctx context.Context, commandID string, cmd contracts.ReferralCommand, rec contracts.PCCreate, rev uint64) (pc.Referral, bool, func(context.Context), error) {
	rec.ReferralID, rec.Failed, rec.AttemptAt, rec.CommandID = "", "", time.Now().UTC(), commandID
	b, _ := json.Marshal(rec)
	rev, err := w.Outcomes.Applied.Update(ctx, contracts.PCCreateKey(cmd.OpportunityID), b, rev)
	if err != nil {
		return pc.Referral{}, false, nil, fmt.Errorf("record a new create attempt for opportunity %s: %w", cmd.OpportunityID, err)
	}
	return w.createNew(ctx, commandID, cmd, rec, rev)
}

// createNew creates the referral; the record of its id is returned to be written after its snapshot and outcome.
func (w *Writer) createNew(ctx context.Context, commandID string, cmd contracts.ReferralCommand, rec contracts.PCCreate, rev uint64) (pc.Referral, bool, func(context.Context), error) {
	var r pc.Referral
	err := w.call(ctx, func() (err error) {
		r, err = w.PC.CreateReferral(ctx, *cmd.Create)
		return err
	})
	if err != nil {
		// No attempt is under way any more: pc-ingest stops holding webhooks for it.
		rec.Failed = err.Error()
		b, _ := json.Marshal(rec)
		if _, uerr := w.Outcomes.Applied.Update(ctx, contracts.PCCreateKey(cmd.OpportunityID), b, rev); uerr != nil {
			w.Log.Warn("could not record the failed create attempt", "opportunity_id", cmd.OpportunityID, "err", uerr)
		}
		return r, false, nil, err
	}
	return r, true, w.recordCreated(contracts.PCCreateKey(cmd.OpportunityID), rec, rev, r.ID, commandID), nil
}

func (w *Writer) loadCreate(ctx context.Context, key string) (contracts.PCCreate, uint64, error) {
	e, err := w.Outcomes.Applied.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return contracts.PCCreate{}, 0, nil
	}
	if err != nil {
		return contracts.PCCreate{}, 0, fmt.Errorf("read the create record %s: %w", key, err)
	}
	var rec contracts.PCCreate
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return contracts.PCCreate{}, 0, fmt.Errorf("create record %s: %w", key, err)
	}
	return rec, e.Revision(), nil
}

// recordCreated returns the write of the referral created for the Opportunity into its record, with the
// command it answers. A failure is logged, not returned: the referral exists and its outcome is published,
// a redelivery or replay finds it by the recovery scan (a read, no second create), and pc-ingest reads it
// behind its webhook once it has waited long enough.
func (w *Writer) recordCreated(key string, rec contracts.PCCreate, rev uint64, referralID, commandID string) func(context.Context) {
	return func(ctx context.Context) {
		rec.ReferralID, rec.CommandID = referralID, commandID
		b, _ := json.Marshal(rec)
		if _, err := w.Outcomes.Applied.Update(ctx, key, b, rev); err != nil {
			w.Log.Warn("could not record the created referral; a redelivery will find it by scanning", "key", key,
				"referral_id", referralID, "err", err)
		}
	}
}

// findCreated looks for the referral an interrupted attempt created for opportunityID: the partner's outgoing
// referrals newest first (documented filter and order), down to the attempt's start, matched on the client by
// externalReferenceId. It never trusts the server to have filtered.
func (w *Writer) findCreated(ctx context.Context, opportunityID string, since time.Time) (*pc.Referral, error) {
	var found *pc.Referral
	errStop := errors.New("stop")
	floor := since.Add(-createScanSlack)
	err := w.call(ctx, func() error {
		found = nil
		return w.PC.ListReferrals(ctx, pcapi.ListOptions{Filter: "direction eq 'Outgoing'", OrderBy: "createdDateTime desc", Top: 100},
			func(r pc.Referral) error {
				if t, err := time.Parse(time.RFC3339Nano, r.CreatedDateTime); err == nil && t.Before(floor) {
					return errStop
				}
				if r.ExternalReferenceID == opportunityID {
					found = &r
					return errStop
				}
				return nil
			})
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return found, nil
}

func (w *Writer) get(ctx context.Context, id string) (pc.Referral, error) {
	var r pc.Referral
	err := w.call(ctx, func() (err error) {
		r, err = w.PC.GetReferral(ctx, id)
		return err
	})
	return r, err
}

func (w *Writer) patchIfMatch(ctx context.Context, id, eTag string, ops []pc.PatchOp) (pc.Referral, error) {
	var r pc.Referral
	err := w.call(ctx, func() (err error) {
		r, err = w.PC.PatchReferral(ctx, id, eTag, ops)
		return err
	})
	return r, err
}

func (w *Writer) patch(ctx context.Context, cmd contracts.ReferralCommand) (pc.Referral, error) {
	if len(cmd.Patch) == 0 {
		return pc.Referral{}, platform.Permanent(fmt.Errorf("patch of referral %s carries no operation", cmd.ReferralID))
	}
	if cmd.BaseETag != "" {
		// One call: the patch holds only changed fields, and If-Match makes Partner Center refuse it if the
		// referral moved on since the mapper decided.
		return w.patchIfMatch(ctx, cmd.ReferralID, `"`+strings.Trim(cmd.BaseETag, `"`)+`"`, cmd.Patch)
	}
	// A command without a base version: read the referral and send what differs from it.
	cur, err := w.get(ctx, cmd.ReferralID)
	if err != nil {
		return pc.Referral{}, err
	}
	ops, err := Pending(cur, cmd.Patch)
	if err != nil {
		return pc.Referral{}, platform.Permanent(err)
	}
	if len(ops) == 0 {
		// Already as asked (a replay, or the same edit made on both sides): no write.
		return cur, nil
	}
	return w.patchIfMatch(ctx, cmd.ReferralID, cur.ETag, ops)
}

// fail classifies an error once. Throttling is retried after Retry-After and outages with back-off. A 412
// is answered with the fresh referral for the mapper to decide on again. A refusal by Partner Center is a
// failed outcome, and the command is dead-lettered with the reason (not retried).
func (w *Writer) fail(ctx context.Context, out contracts.Outcome, err error) error {
	if d, ok := pcapi.IsThrottled(err); ok {
		return platform.RetryAfter(err, d)
	}
	if pcapi.IsPreconditionFailed(err) {
		return w.superseded(ctx, out, err)
	}
	if pcapi.IsTransient(err) || errors.Is(err, context.Canceled) {
		return err
	}
	f := &contracts.Failure{Code: "error", Message: err.Error(), Permanent: true}
	var api *pcapi.APIError
	if errors.As(err, &api) {
		f.Code, f.Message, f.HTTPStatus = api.Code, api.Message, api.Status
		if f.Code == "" {
			f.Code = http.StatusText(api.Status)
		}
	}
	out.Status = contracts.OutcomeFailed
	out.Error = f
	out.At = time.Now().UTC()
	if perr := w.Outcomes.Publish(ctx, out); perr != nil {
		return perr
	}
	w.Log.Warn("partner center refused the command", "referral_id", out.ReferralID, "opportunity_id", out.OpportunityID,
		"link_id", out.LinkID, "code", f.Code, "status", f.HTTPStatus, "err", f.Message)
	// The refusal is recorded (failed outcome: audited, ✖ on the Opportunity) and the command is parked in
	// the dead-letter stream with the reason, like a record Salesforce refuses: never retried in a loop,
	// visible in `cosell dlq ls`, and re-drivable once the cause is fixed.
	return platform.Permanent(err)
}

// superseded answers a 412: the referral changed since the patch was decided. It re-reads the referral
// and publishes it in a failed outcome with code preconditionFailed, for the mapper to decide again.
func (w *Writer) superseded(ctx context.Context, out contracts.Outcome, err error) error {
	fresh, gerr := w.get(ctx, out.ReferralID)
	if gerr != nil {
		if d, ok := pcapi.IsThrottled(gerr); ok {
			return platform.RetryAfter(gerr, d)
		}
		return fmt.Errorf("re-read referral %s after 412: %w", out.ReferralID, gerr)
	}
	out.Status = contracts.OutcomeFailed
	out.Error = &contracts.Failure{Code: pc.ErrorCodePreconditionFailed, Message: err.Error(), HTTPStatus: http.StatusPreconditionFailed}
	out.Referral = &fresh
	out.Version = contracts.ReferralVersion(fresh)
	out.At = time.Now().UTC()
	w.Log.Info("referral changed since the patch was decided; handing the fresh version back to the mapper",
		"referral_id", out.ReferralID, "link_id", out.LinkID, "etag", out.Version.Tag)
	return w.Outcomes.Publish(ctx, out)
}

// Pending keeps the patch operations whose value differs from the referral's current one.
func Pending(cur pc.Referral, ops []pc.PatchOp) ([]pc.PatchOp, error) {
	b, err := json.Marshal(cur)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	var out []pc.PatchOp
	for _, op := range ops {
		want, err := normalise(op.Value)
		if err != nil {
			return nil, fmt.Errorf("patch %s: %w", op.Path, err)
		}
		if have, ok := valueAt(doc, op.Path); ok && reflect.DeepEqual(have, want) {
			continue
		}
		out = append(out, op)
	}
	return out, nil
}

func normalise(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(b, &out)
	return out, err
}

// valueAt reads a JSON Pointer (RFC 6901) from a decoded document.
func valueAt(doc map[string]any, pointer string) (any, bool) {
	var cur any = doc
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}
