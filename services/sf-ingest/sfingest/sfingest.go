// Package sfingest is the sf-ingest stage: it polls Salesforce for changed Opportunities by SystemModstamp
// and publishes a full snapshot of each as an observed event.
//
// The watermark lives in the checkpoints bucket and moves only after every event of a poll is durably
// published. Each poll re-reads an overlap window before the watermark (commit-time skew can make a row
// appear with an older stamp than one already read); re-read rows produce the same event id
// (opportunity id + SystemModstamp), so the server drops them as duplicates and nothing new is published
// for a record that did not change.
package sfingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/runtime"
	"github.com/cosell-dev/cosell/services/internal/sfapi"
)

// Fields are the Opportunity fields read for every snapshot.
var Fields = []string{
	sf.FieldID, sf.FieldName, sf.FieldAmount, sf.FieldCurrencyIsoCode, sf.FieldCloseDate, sf.FieldStageName,
	sf.FieldIsWon, sf.FieldIsClosed, sf.FieldDescription, sf.FieldSyncWithPartnerCenter,
	sf.FieldReferralIdentifier, sf.FieldReferralLink, sf.FieldHowCanMicrosoftHelp, sf.FieldSystemModstamp,
	"Account.Name", "Account.BillingCountry", "Account.BillingPostalCode", "Account.BillingCity",
}

// Config tunes the poller.
type Config struct {
	Interval time.Duration `env:"COSELL_SF_POLL_INTERVAL" default:"10s"`
	Overlap  time.Duration `env:"COSELL_SF_POLL_OVERLAP" default:"5s"`
	PageSize int           `env:"COSELL_SF_POLL_PAGE" default:"200"`
	// Since is where a first start begins (RFC 3339); empty = the beginning.
	Since string `env:"COSELL_SF_BACKFILL_SINCE"`
}

// Ingest is the sf-ingest stage.
type Ingest struct {
	Bus         *runtime.Bus
	SF          *sfapi.Client
	Checkpoints jetstream.KeyValue
	Config      Config
	Log         *slog.Logger
}

const checkpointName = "opportunity"

// Run polls until ctx is cancelled.
func (in *Ingest) Run(ctx context.Context) error {
	t := time.NewTicker(in.Config.Interval)
	defer t.Stop()
	for {
		if _, err := in.Poll(ctx); err != nil && ctx.Err() == nil {
			in.Log.Warn("poll failed; will try again", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

type checkpoint struct {
	Watermark time.Time `json:"watermark"`
}

// Poll reads every Opportunity changed since the watermark, publishes them and moves the watermark.
// It returns how many snapshots were new to the stream.
func (in *Ingest) Poll(ctx context.Context) (int, error) {
	key := contracts.CheckpointKey(contracts.StageSFIngest, checkpointName)
	var cp checkpoint
	var rev uint64
	if e, err := in.Checkpoints.Get(ctx, key); err == nil {
		if err := json.Unmarshal(e.Value(), &cp); err != nil {
			return 0, fmt.Errorf("checkpoint %s: %w", key, err)
		}
		rev = e.Revision()
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, fmt.Errorf("read checkpoint %s: %w", key, err)
	} else if in.Config.Since != "" {
		since, err := time.Parse(time.RFC3339, in.Config.Since)
		if err != nil {
			return 0, fmt.Errorf("COSELL_SF_BACKFILL_SINCE: %w", err)
		}
		cp.Watermark = since
	}
	from := cp.Watermark.Add(-in.Config.Overlap)
	if cp.Watermark.IsZero() {
		from = time.Time{}
	}
	newest := cp.Watermark
	published := 0
	after := ""
	for {
		where := "(" + sf.FieldSyncWithPartnerCenter + " = true OR " + sf.FieldReferralIdentifier + " != null)"
		if !from.IsZero() {
			where += " AND " + sf.FieldSystemModstamp + " >= " + sfapi.FormatTime(from)
		}
		if after != "" {
			where += " AND " + after
		}
		q := fmt.Sprintf("SELECT %s FROM Opportunity WHERE %s ORDER BY SystemModstamp, Id LIMIT %d",
			strings.Join(Fields, ", "), where, in.Config.PageSize)
		rows, err := in.SF.Query(q)
		if err != nil {
			return published, err
		}
		for _, row := range rows {
			snap, ver, err := Snapshot(row)
			if err != nil {
				return published, err
			}
			fresh, err := in.publish(ctx, snap, ver)
			if err != nil {
				return published, err
			}
			if fresh {
				published++
			}
			if ver.At.After(newest) {
				newest = ver.At
			}
		}
		if len(rows) < in.Config.PageSize {
			break
		}
		last := rows[len(rows)-1]
		stamp, _ := last[sf.FieldSystemModstamp].(string)
		t, _ := sfapi.ParseTime(stamp)
		from = time.Time{}
		after = fmt.Sprintf("(SystemModstamp > %s OR (SystemModstamp = %s AND Id > %s))",
			sfapi.FormatTime(t), sfapi.FormatTime(t), sfapi.Quote(fmt.Sprint(last[sf.FieldID])))
	}
	if newest.After(cp.Watermark) {
		b, _ := json.Marshal(checkpoint{Watermark: newest})
		var err error
		if rev == 0 {
			_, err = in.Checkpoints.Create(ctx, key, b)
		} else {
			_, err = in.Checkpoints.Update(ctx, key, b, rev)
		}
		if err != nil {
			return published, fmt.Errorf("move watermark to %s: %w", newest, err)
		}
	}
	return published, nil
}

// Snapshot turns a query row into an Opportunity snapshot and its version.
func Snapshot(row map[string]any) (contracts.Opportunity, contracts.Version, error) {
	f := sfapi.Flatten(row)
	id, _ := f[sf.FieldID].(string)
	stamp, _ := f[sf.FieldSystemModstamp].(string)
	at, err := sfapi.ParseTime(stamp)
	if id == "" || err != nil {
		return contracts.Opportunity{}, contracts.Version{}, fmt.Errorf("opportunity row without Id or SystemModstamp: %v", row)
	}
	delete(f, sf.FieldSystemModstamp)
	return contracts.Opportunity{ID: id, Fields: f}, contracts.Version{Tag: stamp, At: at}, nil
}

func (in *Ingest) publish(ctx context.Context, o contracts.Opportunity, v contracts.Version) (bool, error) {
	id := contracts.EventID("sf", o.ID, v.At.Format(time.RFC3339Nano))
	e, err := runtime.NewEvent(id, contracts.TypeOpportunityObserved, contracts.StageSFIngest, o.ID,
		contracts.OpportunityObserved{Opportunity: o, Version: v, ObservedAt: time.Now().UTC(), Via: "poll"})
	if err != nil {
		return false, err
	}
	dup, err := in.Bus.Publish(ctx, contracts.Subject(contracts.SubjectOpportunityObserved, o.ID), e)
	if err != nil {
		return false, fmt.Errorf("publish %s: %w", id, err)
	}
	return !dup, nil
}
