// Package pcwriter is the pc-writer stage: it carries out referral create and patch commands against the
// Partner Center Referrals API.
//
// A create first looks for a referral whose externalReferenceId is the Opportunity id, so a redelivered
// create adopts the referral it already made. A patch re-reads the referral, sends only the operations
// whose value differs, with If-Match on the eTag it just read: a concurrent Microsoft edit makes it fail
// with 412 and the command is retried on fresh data instead of overwriting that edit blindly.
package pcwriter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/pcapi"
	"github.com/cosell-dev/cosell/services/internal/runtime"
)

// Writer is the pc-writer stage.
type Writer struct {
	Bus      *runtime.Bus
	PC       *pcapi.Client
	Outcomes *outcome.Recorder
	Log      *slog.Logger
	Consume  runtime.ConsumeOptions
	// AfterWrite, when set, is called after the external write and before the outcome is published:
	// tests use it to stop a writer exactly there.
	AfterWrite func(commandID string)
}

// Run consumes referral commands until ctx is cancelled, then drains.
func (w *Writer) Run(ctx context.Context) error {
	for _, c := range contracts.Consumers() {
		if c.Durable == contracts.ConsumerPCWriter {
			return w.Bus.Consume(ctx, c, w.Handle, w.Consume)
		}
	}
	return errors.New("pc-writer: no consumer spec")
}

// Handle carries out one referral command.
func (w *Writer) Handle(ctx context.Context, e runtime.Event) error {
	cmd, err := runtime.DataAs[contracts.ReferralCommand](e)
	if err != nil {
		return runtime.Permanent(err)
	}
	if done, err := w.Outcomes.Done(ctx, e.ID()); err != nil || done {
		return err
	}
	out := contracts.Outcome{CommandID: e.ID(), LinkID: cmd.LinkID, System: contracts.PartnerCenter, Op: cmd.Op,
		OpportunityID: cmd.OpportunityID, ReferralID: cmd.ReferralID}
	var r pc.Referral
	switch cmd.Op {
	case contracts.OpCreate:
		r, out.Created, err = w.create(ctx, cmd)
	case contracts.OpUpdate:
		r, err = w.patch(ctx, cmd)
	default:
		err = runtime.Permanent(fmt.Errorf("command %s: unknown op %q", e.ID(), cmd.Op))
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
	return w.Outcomes.Publish(ctx, out)
}

func (w *Writer) create(ctx context.Context, cmd contracts.ReferralCommand) (pc.Referral, bool, error) {
	if cmd.Create == nil {
		return pc.Referral{}, false, runtime.Permanent(fmt.Errorf("create for opportunity %s carries no referral", cmd.OpportunityID))
	}
	existing, err := w.PC.FindByExternalReferenceID(ctx, cmd.OpportunityID)
	if err != nil {
		return pc.Referral{}, false, err
	}
	if len(existing) > 0 {
		if len(existing) > 1 {
			w.Log.Warn("several referrals name one opportunity; adopting the oldest",
				"opportunity_id", cmd.OpportunityID, "count", len(existing))
		}
		return existing[0], false, nil
	}
	r, err := w.PC.CreateReferral(ctx, *cmd.Create)
	return r, true, err
}

func (w *Writer) patch(ctx context.Context, cmd contracts.ReferralCommand) (pc.Referral, error) {
	cur, err := w.PC.GetReferral(ctx, cmd.ReferralID)
	if err != nil {
		return pc.Referral{}, err
	}
	ops, err := Pending(cur, cmd.Patch)
	if err != nil {
		return pc.Referral{}, runtime.Permanent(err)
	}
	if len(ops) == 0 {
		// Already as asked (a replay, or the same edit made on both sides): no write.
		return cur, nil
	}
	return w.PC.PatchReferral(ctx, cmd.ReferralID, cur.ETag, ops)
}

// fail classifies an error once: throttling and outages are retried (after Retry-After when given),
// a 412 is retried on fresh data, anything else is a permanent failure with an outcome the mapper
// records and shows on the Opportunity, and the command goes to the dead-letter stream.
func (w *Writer) fail(ctx context.Context, out contracts.Outcome, err error) error {
	if d, ok := pcapi.IsThrottled(err); ok {
		return runtime.RetryAfter(err, d)
	}
	if pcapi.IsPreconditionFailed(err) || pcapi.IsTransient(err) {
		return err
	}
	f := &contracts.Failure{Code: "error", Message: err.Error(), Permanent: true}
	var api *pcapi.APIError
	if errors.As(err, &api) {
		f.Code, f.Message, f.HTTPStatus = api.Code, api.Message, api.Status
	}
	out.Status = contracts.OutcomeFailed
	out.Error = f
	out.At = time.Now().UTC()
	if perr := w.Outcomes.Publish(ctx, out); perr != nil {
		return perr
	}
	return runtime.Permanent(err)
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
