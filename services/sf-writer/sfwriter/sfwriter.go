// Package sfwriter is the sf-writer stage: it carries out Opportunity commands against Salesforce with
// go-salesforce. Creates are upserts by the Referral Identifier External ID, so a redelivered create can
// never make a second Opportunity; the customer Account is found (name + billing postal code, then name)
// or created first.
package sfwriter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/runtime"
	"github.com/cosell-dev/cosell/services/internal/sfapi"
)

// Writer is the sf-writer stage.
type Writer struct {
	Bus      *runtime.Bus
	SF       *sfapi.Client
	Outcomes *outcome.Recorder
	Log      *slog.Logger
	Consume  runtime.ConsumeOptions
	// LimitPause is how long to wait before retrying once the daily API allowance is spent.
	LimitPause time.Duration
	// AfterWrite, when set, is called after the external write and before the outcome is published.
	AfterWrite func(commandID string)
}

// Run consumes Opportunity commands until ctx is cancelled, then drains.
func (w *Writer) Run(ctx context.Context) error {
	for _, c := range contracts.Consumers() {
		if c.Durable == contracts.ConsumerSFWriter {
			return w.Bus.Consume(ctx, c, w.Handle, w.Consume)
		}
	}
	return errors.New("sf-writer: no consumer spec")
}

// Handle carries out one Opportunity command.
func (w *Writer) Handle(ctx context.Context, e runtime.Event) error {
	cmd, err := runtime.DataAs[contracts.OpportunityCommand](e)
	if err != nil {
		return runtime.Permanent(err)
	}
	if done, err := w.Outcomes.Done(ctx, e.ID()); err != nil || done {
		return err
	}
	out := contracts.Outcome{CommandID: e.ID(), LinkID: cmd.LinkID, System: contracts.Salesforce, Op: cmd.Op,
		Purpose: cmd.Purpose, ReferralID: cmd.ReferralID, OpportunityID: cmd.OpportunityID}
	switch cmd.Op {
	case contracts.OpCreate:
		out.OpportunityID, err = w.create(cmd)
		out.Created = err == nil
	case contracts.OpUpdate:
		if cmd.OpportunityID == "" {
			err = runtime.Permanent(fmt.Errorf("update for link %s names no opportunity", cmd.LinkID))
			break
		}
		err = w.SF.Update(sf.ObjectOpportunity, cmd.OpportunityID, cmd.Fields)
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
	out.At = time.Now().UTC()
	return w.Outcomes.Publish(ctx, out)
}

func (w *Writer) create(cmd contracts.OpportunityCommand) (string, error) {
	if cmd.ReferralID == "" {
		return "", runtime.Permanent(fmt.Errorf("create for link %s has no referral id to upsert by", cmd.LinkID))
	}
	fields := make(map[string]any, len(cmd.Fields)+1)
	for k, v := range cmd.Fields {
		if k != sf.FieldReferralIdentifier {
			fields[k] = v
		}
	}
	if cmd.Account != nil && cmd.Account.Name != "" {
		id, err := w.account(*cmd.Account)
		if err != nil {
			return "", err
		}
		fields[sf.FieldAccountID] = id
	}
	return w.SF.Upsert(sf.ObjectOpportunity, sf.FieldReferralIdentifier, cmd.ReferralID, fields)
}

// account finds the customer's Account by name and billing postal code, then by name, or creates it.
func (w *Writer) account(a contracts.Account) (string, error) {
	where := []string{}
	if a.PostalCode != "" {
		where = append(where, fmt.Sprintf("Name = %s AND BillingPostalCode = %s", sfapi.Quote(a.Name), sfapi.Quote(a.PostalCode)))
	}
	where = append(where, "Name = "+sfapi.Quote(a.Name))
	for _, w2 := range where {
		rows, err := w.SF.Query("SELECT Id FROM Account WHERE " + w2 + " ORDER BY CreatedDate LIMIT 1")
		if err != nil {
			return "", err
		}
		if len(rows) > 0 {
			if id, ok := rows[0]["Id"].(string); ok {
				return id, nil
			}
		}
	}
	fields := map[string]any{sf.AccountName: a.Name}
	for k, v := range map[string]string{
		sf.AccountBillingCity: a.City, sf.AccountBillingPostalCode: a.PostalCode,
		sf.AccountBillingCountry: a.Country, sf.AccountBillingStreet: a.Street, sf.AccountBillingState: a.State,
	} {
		if v != "" {
			fields[k] = v
		}
	}
	return w.SF.Insert(sf.ObjectAccount, fields)
}

// fail classifies an error once: lock contention and outages are retried, a spent daily allowance waits,
// anything else is a permanent failure with an outcome, and the command goes to the dead-letter stream.
func (w *Writer) fail(ctx context.Context, out contracts.Outcome, err error) error {
	if !runtime.IsPermanent(err) && sfapi.IsTransient(err) {
		if sfapi.Code(err) == "REQUEST_LIMIT_EXCEEDED" && w.LimitPause > 0 {
			return runtime.RetryAfter(err, w.LimitPause)
		}
		return err
	}
	f := &contracts.Failure{Code: "error", Message: err.Error(), Permanent: true}
	var api *sfapi.Error
	if errors.As(err, &api) {
		f.Code, f.Message = api.Code, api.Message
	}
	out.Status = contracts.OutcomeFailed
	out.Error = f
	out.At = time.Now().UTC()
	if perr := w.Outcomes.Publish(ctx, out); perr != nil {
		return perr
	}
	return runtime.Permanent(err)
}
