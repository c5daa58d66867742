// Package pcingest is the pc-ingest stage: it receives Partner Center's signed webhook notifications and
// publishes the full snapshot of each referral they name; a reconcile poller lists referrals updated since
// its watermark, so a dropped notification is healed within one poll interval.
//
// The webhook endpoint verifies the signature (and the certificate URL against the trusted hosts), then
// hands the notification off durably to JetStream and answers at once: Partner Center never waits on a
// Partner Center read, and a notification accepted is never lost, even if the process dies right after
// answering. The fetcher (a durable consumer of those hand-offs) reads the referral, honouring
// Retry-After, and publishes its snapshot.
//
// Nothing is published twice: a notification's hand-off id is its event, referral and change date, so a
// repeated delivery is dropped by the server; a notification whose change is not newer than the last
// snapshot already published for the referral (an old delivery replayed) is dropped without reading
// Partner Center; and a snapshot's event id is the referral id plus its eTag, so the same version noticed
// twice (the poller after the webhook) is dropped by the server too.
package pcingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/pcwebhook"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/watermark"
)

// Config tunes pc-ingest.
type Config struct {
	Listen       string        `env:"COSELL_PC_WEBHOOK_LISTEN" default:"127.0.0.1:8090" validate:"hostport"`
	Path         string        `env:"COSELL_PC_WEBHOOK_PATH" default:"/webhooks/partner-center"`
	MaxBodyBytes int64         `env:"COSELL_PC_WEBHOOK_MAX_BODY" default:"65536" help:"larger notification bodies are refused with 413"`
	PollInterval time.Duration `env:"COSELL_PC_POLL_INTERVAL" default:"5m" help:"how often the reconcile poll lists referrals updated since its watermark"`
	// PollOverlap re-reads this much before the watermark on every poll, so a referral whose update was
	// stamped slightly before one already seen is not missed; re-read versions are duplicates the server drops.
	PollOverlap time.Duration `env:"COSELL_PC_POLL_OVERLAP" default:"30s"`
	// Since is where a first start's backfill begins (RFC 3339); empty = everything.
	Since string `env:"COSELL_PC_BACKFILL_SINCE" help:"first start only: backfill referrals updated since this RFC 3339 time (empty = all)"`
	// Reads is how many notified referrals are read from Partner Center at once; ReadRate paces those reads
	// (a Retry-After pauses them all, as in pc-writer), the tenant's rate shared by the replicas
	// (pcapi.RateShare). A referral's own notifications are read one at a time.
	Reads           int     `env:"COSELL_PC_READ_CONCURRENCY" default:"32" help:"notified referrals read from Partner Center at once, at least 1 (one referral's notifications stay in order; one read answers all of a referral's notifications waiting behind it)"`
	ReadRate        float64 `env:"COSELL_PC_READ_RATE" default:"0" help:"Partner Center reads per second to the tenant, shared by all pc-ingest replicas (0 = no limit; a Retry-After pauses every read)"`
	ReadBurst       int     `env:"COSELL_PC_READ_BURST" default:"8"`
	ThrottleRetries int     `env:"COSELL_PC_READ_THROTTLE_RETRIES" default:"3" help:"times a throttled read is retried in place after its Retry-After before the notification is put back"`
	// OwnCreateWait bounds how long a referral-created webhook is held while a pc-writer create that may
	// have caused it is under way (ownCreates); after it the referral is read.
	OwnCreateWait time.Duration `env:"COSELL_PC_OWN_CREATE_WAIT" default:"10s" help:"how long a referral-created webhook waits for the snapshot of a pc-writer create under way before the referral is read"`
}

// Ingest is the pc-ingest stage.
type Ingest struct {
	Bus         *platform.Bus
	PC          *pcapi.Client
	Verifier    *pcwebhook.Verifier
	Checkpoints jetstream.KeyValue
	Config      Config
	Log         *slog.Logger
	Consume     platform.ConsumeOptions
	// Limiter paces the fetcher's Partner Center reads; nil = one built from Config on first use.
	Limiter *pcapi.TenantLimiter

	once     sync.Once
	reading  keyedLock
	own      *ownCreates
	versions readVersions
	creates  createBurst
}

func (in *Ingest) limiter() *pcapi.TenantLimiter {
	in.once.Do(func() {
		if in.Limiter == nil {
			in.Limiter = pcapi.NewTenantLimiter(in.Config.ReadRate, in.Config.ReadBurst)
		}
	})
	return in.Limiter
}

// read makes one of the fetcher's Partner Center calls at the tenant's pace.
func (in *Ingest) read(ctx context.Context, f func() error) error {
	return in.limiter().Call(ctx, in.Log, in.Config.ThrottleRetries, f)
}

// keyedLock runs the work for one key at a time, so the notifications of one referral, handled by the
// fetcher's concurrent handlers, read and publish one after another: its snapshots reach the stream in the
// order they were read, and a second notification finds the first one's snapshot.
type keyedLock struct {
	mu   sync.Mutex
	held map[string]*keyedWait
}

type keyedWait struct{ ch chan struct{} }

func (k *keyedLock) lock(ctx context.Context, key string) (unlock func(), err error) {
	for {
		k.mu.Lock()
		if k.held == nil {
			k.held = map[string]*keyedWait{}
		}
		w, busy := k.held[key]
		if !busy {
			mine := &keyedWait{ch: make(chan struct{})}
			k.held[key] = mine
			k.mu.Unlock()
			return func() {
				k.mu.Lock()
				delete(k.held, key)
				k.mu.Unlock()
				close(mine.ch)
			}, nil
		}
		k.mu.Unlock()
		select {
		case <-w.ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Run runs the notification fetcher and the reconcile poller until ctx is cancelled.
func (in *Ingest) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- in.RunFetcher(ctx) }()
	// One reconcile poll per tenant, however many replicas receive webhooks: the others stand by on the lease.
	go func() { errc <- in.Bus.RunAsLeader(ctx, "pc-ingest-poller", in.RunPoller) }()
	return errors.Join(<-errc, <-errc)
}

// ServeHTTP is the webhook endpoint: verify, hand off durably, answer.
func (in *Ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	limit := in.Config.MaxBodyBytes
	if limit <= 0 {
		limit = 64 << 10
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			in.Log.Warn("webhook refused: body too large", "limit", limit, "remote", r.RemoteAddr)
			http.Error(w, fmt.Sprintf("body over %d bytes", limit), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "could not read the body", http.StatusBadRequest)
		return
	}
	if err := in.Verifier.Verify(r.Context(), r.Header, body); err != nil {
		in.Log.Warn("webhook refused", "err", err, "remote", r.RemoteAddr)
		http.Error(w, "notification refused: "+err.Error(), pcwebhook.StatusCode(err))
		return
	}
	n, referralID, err := pcwebhook.ParseNotification(body)
	if err != nil {
		in.Log.Warn("webhook refused: malformed notification", "err", err, "remote", r.RemoteAddr)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch n.EventName {
	case pc.EventReferralCreated, pc.EventReferralUpdated, pc.EventRelatedReferralCreated, pc.EventRelatedReferralUpdated:
	default:
		// test-created (the validation event) and events cosell does not use are acknowledged and dropped.
		in.Log.Info("webhook event acknowledged", "event", n.EventName)
		w.WriteHeader(http.StatusOK)
		return
	}
	dup, err := in.handOff(r.Context(), n, referralID)
	if err != nil {
		// Nothing was kept: ask Partner Center to deliver the notification again.
		in.Log.Error("webhook: hand-off failed; asking Partner Center to retry", "referral_id", referralID, "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	in.Log.Info("webhook accepted", "event", n.EventName, "referral_id", referralID, "duplicate", dup)
	w.WriteHeader(http.StatusOK)
}

// handOff keeps a verified notification in the observed stream for the fetcher; it reports whether the
// stream had seen this notification already.
func (in *Ingest) handOff(ctx context.Context, n pc.WebhookNotification, referralID string) (bool, error) {
	changed, err := time.Parse(time.RFC3339Nano, n.ResourceChangeUTCDate)
	stamp := n.ResourceChangeUTCDate
	if err == nil {
		changed = changed.UTC()
		stamp = changed.Format(time.RFC3339Nano)
	}
	id := contracts.EventID("pcnote", n.EventName, referralID, stamp)
	e, err := platform.NewEvent(id, contracts.TypeReferralNotified, contracts.StagePCIngest, referralID,
		contracts.ReferralNotified{EventName: n.EventName, ReferralID: referralID, ChangedAt: changed, ReceivedAt: time.Now().UTC()})
	if err != nil {
		return false, err
	}
	return in.Bus.Publish(ctx, contracts.Subject(contracts.SubjectReferralNotified, referralID), e)
}

// RunFetcher reads the handed-off notifications until ctx is cancelled.
func (in *Ingest) RunFetcher(ctx context.Context) error {
	if err := in.FollowOwnCreates(ctx); err != nil {
		return err
	}
	if in.Config.ReadRate > 0 {
		// COSELL_PC_READ_RATE is the tenant's: the replicas alive share it, as pc-writer's share theirs.
		share, err := pcapi.NewRateShare(ctx, in.Bus, in.limiter(), in.Config.ReadRate, in.Config.ReadBurst, in.Log)
		if err != nil {
			return err
		}
		go share.Run(ctx)
	}
	opts := in.Consume
	opts.Concurrency = max(in.Config.Reads, 1)
	return in.Bus.Consume(ctx, contracts.ConsumerPCIngestNotified, in.HandleNotified, opts)
}

// FollowOwnCreates starts following pc-writer's create records (until ctx ends), so that the webhook
// about a referral pc-writer is creating waits for the snapshot pc-writer publishes instead of reading it.
func (in *Ingest) FollowOwnCreates(ctx context.Context) error {
	wait := in.Config.OwnCreateWait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	own := newOwnCreates(wait)
	if err := own.start(ctx, in.Bus); err != nil {
		return err
	}
	in.own = own
	return nil
}

// covered reports whether a snapshot not older than the notified change is published for the notified
// referral (the notification needs no read), and that snapshot's version time: from what this replica
// remembers (readVersions), else from the last snapshot the stream holds.
func (in *Ingest) covered(ctx context.Context, n contracts.ReferralNotified) (bool, time.Time, error) {
	if have, ok := in.versions.covers(n.ReferralID, n.ChangedAt, platform.StreamSeq(ctx)); ok {
		return true, have, nil
	}
	have, ok, err := in.lastObserved(ctx, n.ReferralID)
	if err != nil || !ok {
		return false, have, err
	}
	in.versions.published(n.ReferralID, have, 0)
	return n.ChangedAt.IsZero() || !have.Before(n.ChangedAt), have, nil
}

// HandleNotified fetches what one notification names and publishes the snapshot(s).
func (in *Ingest) HandleNotified(ctx context.Context, e platform.Event) error {
	n, err := platform.DataAs[contracts.ReferralNotified](e)
	if err != nil {
		return platform.Permanent(err)
	}
	// The notification's attributes are formatted only for a line written (Logger.With formats them at
	// once), and most notifications write none.
	logf := func(level slog.Level, msg string, args ...any) {
		platform.Logger(ctx).Log(ctx, level, msg, append([]any{"referral_id", n.ReferralID, "event", n.EventName}, args...)...)
	}
	unlock, err := in.reading.lock(ctx, n.ReferralID)
	if err != nil {
		return err
	}
	defer unlock()
	behind := platform.Behind(ctx)
	if n.EventName == pc.EventReferralCreated {
		behind = max(behind, in.creates.add(time.Now()))
	}
	switch n.EventName {
	case pc.EventReferralCreated, pc.EventReferralUpdated:
		if !n.ChangedAt.IsZero() {
			if ok, have, err := in.covered(ctx, n); err != nil {
				return err
			} else if ok {
				// Under a burst of changes most notifications end here: one read answered them all.
				logf(slog.LevelDebug, "notification not newer than the snapshot already published; not fetched",
					"changed_at", n.ChangedAt, "published_version_at", have)
				return nil
			}
		}
		if n.EventName == pc.EventReferralCreated && in.own.ours(ctx, n.ReferralID, n.ReceivedAt) {
			// pc-writer created it and has published the referral its create returned.
			if ok, have, err := in.covered(ctx, n); err != nil {
				return err
			} else if ok {
				logf(slog.LevelInfo, "notification of our own create; its snapshot is published, not fetched",
					"changed_at", n.ChangedAt, "published_version_at", have)
				return nil
			}
		}
		err = in.fetchNotified(ctx, n.ReferralID, behind)
		if pcapi.IsNotFound(err) {
			logf(slog.LevelWarn, "notified referral is not visible to the partner; dropped")
			return nil
		}
	case pc.EventRelatedReferralCreated, pc.EventRelatedReferralUpdated:
		err = in.fetchRelated(ctx, platform.Logger(ctx).With("referral_id", n.ReferralID, "event", n.EventName), n.ReferralID)
	default:
		return platform.Permanent(fmt.Errorf("notification %s: event %q is not handled", e.ID(), n.EventName))
	}
	return classify(err)
}

// fetchNotified reads a notified referral and publishes its snapshot without waiting for the stream's
// ack (asyncPublisher; in a handler of the fetcher the notification is acked once it arrived), marked
// with the backlog it was read behind (0: none), and remembers the version read for the notifications
// behind it.
func (in *Ingest) fetchNotified(ctx context.Context, referralID string, behind uint64) error {
	var r pc.Referral
	err := in.read(ctx, func() (err error) {
		r, err = in.PC.GetReferral(ctx, referralID)
		return err
	})
	if err != nil {
		return err
	}
	if _, err := observed.PublishReferral(ctx, asyncPublisher{in.Bus, behind}, contracts.StagePCIngest, r, "webhook"); err != nil {
		return err
	}
	in.versions.published(referralID, contracts.ReferralVersion(r).At, platform.StreamSeq(ctx))
	return nil
}

// fetchRelated resolves a related-referral notification, which names another referral of an engagement
// (e.g. Microsoft's own), to the referrals of that engagement the partner can read, and publishes them.
// When the related referral itself is not readable, nothing can be resolved: the notification is dropped,
// and any change it implies for the partner's own referral raises referral-updated or is found by the poll.
func (in *Ingest) fetchRelated(ctx context.Context, log *slog.Logger, relatedID string) error {
	var rel pc.Referral
	err := in.read(ctx, func() (err error) {
		rel, err = in.PC.GetReferral(ctx, relatedID)
		return err
	})
	if pcapi.IsNotFound(err) {
		log.Info("related referral is not visible to the partner; left to referral-updated and the reconcile poll")
		return nil
	}
	if err != nil {
		return err
	}
	if rel.EngagementID == "" {
		_, err = in.Publish(ctx, rel, "related")
		return err
	}
	n := 0
	err = in.read(ctx, func() error {
		n = 0
		return in.PC.ListReferrals(ctx, pcapi.ListOptions{Filter: "engagementId eq " + pcapi.QuoteODataString(rel.EngagementID)}, func(r pc.Referral) error {
			n++
			_, err := in.Publish(ctx, r, "related")
			return err
		})
	})
	log.Info("related referral resolved to its engagement", "engagement_id", rel.EngagementID, "referrals", n)
	return err
}

// classify turns a Partner Center error into the consumer loop's retry decision.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if d, ok := pcapi.IsThrottled(err); ok {
		return platform.RetryAfter(err, d)
	}
	var api *pcapi.APIError
	if errors.As(err, &api) && !pcapi.IsTransient(err) {
		return platform.Permanent(err)
	}
	return err
}

// lastObserved returns the version time of the last snapshot published for a referral, if the observed
// stream still holds one.
func (in *Ingest) lastObserved(ctx context.Context, referralID string) (time.Time, bool, error) {
	subj := contracts.Subject(contracts.SubjectReferralObserved, referralID)
	m, err := in.Bus.LastMsg(ctx, contracts.StreamObserved, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("last snapshot of referral %s: %w", referralID, err)
	}
	at := snapshotVersionAt(m.Data)
	return at, !at.IsZero(), nil
}

// snapshotVersion is the part of a contracts.ReferralObserved that lastObserved reads.
type snapshotVersion struct {
	Version contracts.Version `json:"version"`
}

// snapshotVersionAt is the version time of a stored snapshot's data (its CloudEvent's data, the JSON body
// in binary content mode), zero when it has none or is unreadable (the referral is then read rather than
// guessed). Only the version: the check runs on every change a replica does not know to be covered, and
// decoding the whole event (the CloudEvent, then the referral by encoding/json, which scans the data twice
// to skip it) was an eighth of pc-ingest's CPU at a steady 500 changes/s; JSON v2 skips the referral in one
// pass, under encoding/json's rules (jsonv1.DefaultOptionsV1), so the version read is the one DataAs read.
func snapshotVersionAt(data []byte) time.Time {
	var d snapshotVersion
	if jsonv2.Unmarshal(data, &d, jsonv1.DefaultOptionsV1()) != nil {
		return time.Time{}
	}
	return d.Version.At
}

// Publish publishes a referral snapshot; it reports whether the stream had not seen this version.
func (in *Ingest) Publish(ctx context.Context, r pc.Referral, via string) (bool, error) {
	return observed.PublishReferral(ctx, in.Bus, contracts.StagePCIngest, r, via)
}

// RunPoller reconciles every PollInterval until ctx is cancelled.
func (in *Ingest) RunPoller(ctx context.Context) error {
	interval := in.Config.PollInterval
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := in.Reconcile(ctx); err != nil && ctx.Err() == nil {
			in.Log.Warn("reconcile failed; will try again", "err", err, "published", n)
		} else if n > 0 {
			in.Log.Info("reconcile published new referral versions", "published", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Reconcile lists referrals updated since the watermark and publishes them; it returns how many were new.
func (in *Ingest) Reconcile(ctx context.Context) (int, error) {
	wm, err := watermark.Load(ctx, in.Checkpoints, contracts.CheckpointKey(contracts.StagePCIngest, "referrals"),
		in.Config.Since, "COSELL_PC_BACKFILL_SINCE")
	if err != nil {
		return 0, err
	}
	opts := pcapi.ListOptions{OrderBy: "updatedDateTime asc", Top: 100}
	if from := wm.From(in.Config.PollOverlap); !from.IsZero() {
		// ge and an overlap: two referrals may share a timestamp, and one may be stamped just before the
		// newest seen; the versions re-read are duplicates the server drops.
		opts.Filter = "updatedDateTime ge " + from.UTC().Format(time.RFC3339Nano)
	}
	newest, fresh := wm.At, 0
	err = in.PC.ListReferrals(ctx, opts, func(r pc.Referral) error {
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
	return fresh, wm.Move(ctx, newest)
}
