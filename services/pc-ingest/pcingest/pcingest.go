// Package pcingest is the pc-ingest stage: it receives Partner Center's signed webhook notifications,
// fetches the referral each one names and publishes its full snapshot; a reconcile poller lists referrals
// updated since its watermark, so a dropped notification is healed within one poll interval.
//
// A snapshot's event id is the referral id plus its eTag, so the same version noticed twice (a repeated
// notification, the poller after the webhook) is dropped by the server as a duplicate.
package pcingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/pcapi"
	"github.com/cosell-dev/cosell/services/internal/pcwebhook"
	"github.com/cosell-dev/cosell/services/internal/runtime"
)

// Config tunes pc-ingest.
type Config struct {
	Listen       string        `env:"COSELL_PC_WEBHOOK_LISTEN" default:"127.0.0.1:8090" validate:"hostport"`
	Path         string        `env:"COSELL_PC_WEBHOOK_PATH" default:"/webhooks/partner-center"`
	MaxBodyBytes int64         `env:"COSELL_PC_WEBHOOK_MAX_BODY" default:"65536"`
	PollInterval time.Duration `env:"COSELL_PC_POLL_INTERVAL" default:"5m"`
	// Since is where a first start's backfill begins (RFC 3339); empty = everything.
	Since string `env:"COSELL_PC_BACKFILL_SINCE"`
}

// Ingest is the pc-ingest stage.
type Ingest struct {
	Bus         *runtime.Bus
	PC          *pcapi.Client
	Verifier    *pcwebhook.Verifier
	Checkpoints jetstream.KeyValue
	Config      Config
	Log         *slog.Logger
}

// ServeHTTP is the webhook endpoint.
func (in *Ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, in.Config.MaxBodyBytes))
	if err != nil {
		http.Error(w, fmt.Sprintf("body over %d bytes", in.Config.MaxBodyBytes), http.StatusRequestEntityTooLarge)
		return
	}
	if err := in.Verifier.Verify(r.Context(), r.Header, body); err != nil {
		in.Log.Warn("webhook refused", "err", err, "remote", r.RemoteAddr)
		http.Error(w, "notification refused: "+err.Error(), pcwebhook.StatusCode(err))
		return
	}
	n, referralID, err := pcwebhook.ParseNotification(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch n.EventName {
	case pc.EventReferralCreated, pc.EventReferralUpdated:
	default:
		// test-created and events cosell does not use are acknowledged and dropped.
		in.Log.Info("webhook event acknowledged", "event", n.EventName)
		w.WriteHeader(http.StatusOK)
		return
	}
	// Fetch now, and answer 5xx if that fails: Partner Center retries the notification.
	if err := in.Fetch(r.Context(), referralID, "webhook"); err != nil {
		in.Log.Warn("webhook: fetch failed; asking Partner Center to retry", "referral_id", referralID, "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// Fetch reads one referral and publishes its snapshot.
func (in *Ingest) Fetch(ctx context.Context, referralID, via string) error {
	r, err := in.PC.GetReferral(ctx, referralID)
	if err != nil {
		return err
	}
	_, err = in.Publish(ctx, r, via)
	return err
}

// Publish publishes a referral snapshot; it reports whether the stream had not seen this version.
func (in *Ingest) Publish(ctx context.Context, r pc.Referral, via string) (bool, error) {
	v := contracts.ReferralVersion(r)
	id := contracts.EventID("pc", r.ID, v.Tag)
	e, err := runtime.NewEvent(id, contracts.TypeReferralObserved, contracts.StagePCIngest, r.ID,
		contracts.ReferralObserved{Referral: r, Version: v, ObservedAt: time.Now().UTC(), Via: via})
	if err != nil {
		return false, err
	}
	dup, err := in.Bus.Publish(ctx, contracts.Subject(contracts.SubjectReferralObserved, r.ID), e)
	if err != nil {
		return false, fmt.Errorf("publish %s: %w", id, err)
	}
	return !dup, nil
}

// RunPoller reconciles every PollInterval until ctx is cancelled.
func (in *Ingest) RunPoller(ctx context.Context) error {
	t := time.NewTicker(in.Config.PollInterval)
	defer t.Stop()
	for {
		if _, err := in.Reconcile(ctx); err != nil && ctx.Err() == nil {
			in.Log.Warn("reconcile failed; will try again", "err", err)
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

// Reconcile lists referrals updated since the watermark and publishes them; it returns how many were new.
func (in *Ingest) Reconcile(ctx context.Context) (int, error) {
	key := contracts.CheckpointKey(contracts.StagePCIngest, "referrals")
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
			return 0, fmt.Errorf("COSELL_PC_BACKFILL_SINCE: %w", err)
		}
		cp.Watermark = since
	}
	opts := pcapi.ListOptions{OrderBy: "updatedDateTime asc", Top: 100}
	if !cp.Watermark.IsZero() {
		// ge, not gt: two referrals may share a timestamp; the re-read one is a duplicate the server drops.
		opts.Filter = "updatedDateTime ge " + cp.Watermark.UTC().Format(time.RFC3339Nano)
	}
	newest, fresh := cp.Watermark, 0
	err := in.PC.ListReferrals(ctx, opts, func(r pc.Referral) error {
		isNew, err := in.Publish(ctx, r, "poll")
		if err != nil {
			return err
		}
		if isNew {
			fresh++
		}
		if v := contracts.ReferralVersion(r); v.At.After(newest) {
			newest = v.At
		}
		return nil
	})
	if err != nil {
		return fresh, err
	}
	if newest.After(cp.Watermark) {
		b, _ := json.Marshal(checkpoint{Watermark: newest})
		if rev == 0 {
			_, err = in.Checkpoints.Create(ctx, key, b)
		} else {
			_, err = in.Checkpoints.Update(ctx, key, b, rev)
		}
		if err != nil {
			return fresh, fmt.Errorf("move watermark to %s: %w", newest, err)
		}
	}
	return fresh, nil
}
