package sfingest

// Real-time ingest: Change Data Capture over the Pub/Sub API, for the Opportunity, its team members,
// contact roles (and their Contacts), Microsoft Solutions and Account, and, with the mapping's coSellOnly
// off, the Lead. sf-ingest publishes the same full snapshots the poller does, so `observed` keeps its
// contract and both paths produce the same event ids for the same state. Where an event carries the
// change (an UPDATE of fields the record's last snapshot holds as is, a Microsoft Solution added, a new
// Lead, ...) the new snapshot is built from the event and the last one, with no REST call (apply.go says
// when that is safe); everything else a burst (one FetchResponse, or the responses waiting behind it)
// names is re-read in one Composite call. cosell's own writes (changeOrigin client=cosell, from
// sf-writer's Sforce-Call-Options) are dropped from the header alone, before any REST read, and taken
// into the snapshot held in memory. Gap events are re-read like any other; GAP_OVERFLOW runs the REST
// catch-up. The replay id of the last handled burst is kept per channel in the checkpoints bucket, stored
// at most once per COSELL_SF_CDC_CHECKPOINT_INTERVAL and when the subscription ends (replay.go;
// compare-and-set, so a replica that lost the lease cannot move it), and the subscription resumes after
// it; without one, or when it is no longer valid (past the 72-hour retention), the poller catches up from
// its SystemModstamp watermark and the subscription starts from LATEST (with one more catch-up once the
// stream is open, for the changes made in between). The poller keeps running as the backstop at a long
// interval: it also covers the objects CDC does not carry (Notes).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub"
	"github.com/cosell-dev/cosell/services/internal/clients/sfpubsub/pubsubpb"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// CDCConfig turns Change Data Capture on and tunes it.
type CDCConfig struct {
	Mode string `env:"COSELL_SF_CDC" default:"auto" help:"Change Data Capture over the Pub/Sub API: auto (on when the org serves the channels), on, off (poll only)"`
	// Channels are the change channels subscribed to, each with its own replay id.
	Channels []string `env:"COSELL_SF_CDC_CHANNELS" default:"/data/ChangeEvents" help:"change channels to subscribe to, comma-separated (/data/ChangeEvents, a custom /data/NAME__chn, or /data/OpportunityChangeEvent,...)"`
	// Backstop is the poll interval while CDC runs.
	Backstop time.Duration `env:"COSELL_SF_BACKSTOP_INTERVAL" default:"5m" help:"with CDC on, how often the poller still runs as the backstop (and for Notes, which CDC does not carry)"`
	// OwnClient is the Sforce-Call-Options client name of cosell's own writes, whose events are echoes.
	OwnClient string `env:"COSELL_SF_CDC_OWN_CLIENT" default:"cosell" help:"the client name cosell's writers send in Sforce-Call-Options; their change events are dropped as echoes"`
	// TenantID is the org id sent as tenantid; empty = read from the access token.
	TenantID string `env:"COSELL_SF_ORG_ID" help:"the org id for the Pub/Sub API's tenantid; empty reads it from the access token"`
	// CheckpointInterval is how often at most the replay id of the handled bursts is stored (replay.go).
	CheckpointInterval time.Duration `env:"COSELL_SF_CDC_CHECKPOINT_INTERVAL" default:"2s" help:"store the replay id of the change events handled at most this often (and when the subscription ends); after a crash the events since are handled again at no cost (0 = after every burst)"`
	// Cache bounds the records whose last snapshot sf-ingest holds in memory to apply change events to.
	Cache  int `env:"COSELL_SF_CDC_CACHE" default:"10000" help:"most records whose last snapshot sf-ingest holds in memory to build the next one from a change event (a miss reads the observed stream's last one, or Salesforce)"`
	PubSub sfpubsub.Config
}

// Runner returns what sf-ingest runs while it holds the lease: the CDC subscriber with the poller as its
// backstop when Change Data Capture is on (COSELL_SF_CDC=on, or auto and the org serves the channels),
// otherwise the poller alone; and a func that releases the Pub/Sub connection.
func (in *Ingest) Runner(ctx context.Context) (func(context.Context) error, func(), error) {
	cfg := in.Config.CDC
	switch cfg.Mode {
	case "off":
		return in.Run, func() {}, nil
	case "on", "auto":
	default:
		return nil, nil, fmt.Errorf("COSELL_SF_CDC=%q: use auto, on or off", cfg.Mode)
	}
	if len(cfg.Channels) == 0 {
		return nil, nil, fmt.Errorf("COSELL_SF_CDC_CHANNELS is empty: name at least one change channel, or set COSELL_SF_CDC=off")
	}
	ps, err := sfpubsub.New(cfg.PubSub, sfpubsub.RESTAuth{SF: in.SF, TenantID: cfg.TenantID}, in.Log)
	if err != nil {
		return nil, nil, err
	}
	c := &CDC{In: in, PubSub: ps, Config: cfg}
	check, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := c.Available(check); err != nil {
		if cfg.Mode == "on" {
			_ = ps.Close()
			return nil, nil, fmt.Errorf("COSELL_SF_CDC=on: %w (check COSELL_SF_PUBSUB_URL and that Change Data Capture is enabled for the objects in Setup)", err)
		}
		in.Log.Warn("change data capture unavailable: polling only (COSELL_SF_CDC=auto)", "err", err, "interval", in.Config.Interval)
		_ = ps.Close()
		return in.Run, func() {}, nil
	}
	in.Log.Info("change data capture on; the poller is the backstop", "channels", cfg.Channels, "backstop", cfg.Backstop)
	return c.Run, func() { _ = ps.Close() }, nil
}

// cdcParents says, per tracked object, how its records lead to the Opportunities to snapshot: "" for
// Opportunity itself, else the field naming the parent (AccountId: every Opportunity of the Account).
var cdcParents = map[string]string{
	sf.ObjectOpportunity:            "",
	sf.ObjectOpportunityTeamMember:  "OpportunityId",
	sf.ObjectOpportunityContactRole: "OpportunityId",
	sf.ObjectMicrosoftSolution:      "Opportunity__c",
	"Account":                       "AccountId",
	"Contact":                       "OpportunityId", // through its contact roles (cdcVia)
}

// cdcVia says how the records of an object that is no child of the Opportunity lead to it: through the
// records of another object naming them (a Contact: the contact roles it has on Opportunities).
var cdcVia = map[string]struct{ object, key string }{
	"Contact": {sf.ObjectOpportunityContactRole, "ContactId"},
}

// CDCStats counts what the subscriber did, for tests and benchmarks.
type CDCStats struct {
	// Echoes counts cosell's own writes dropped from the header alone; OwnReads those handled like a
	// seller's change (see CDC.reread). Reads counts Composite calls, Built the snapshots published from
	// the events alone, StreamReads the last snapshots read from the observed stream.
	Events, Echoes, OwnReads, Gaps, Reads, Snapshots, Built, StreamReads int
	// CatchUps counts REST catch-ups (first start, replay id past retention, GAP_OVERFLOW).
	CatchUps int
	// Reflected counts events an earlier run handled, seen again after it stopped before storing their
	// replay id: its snapshot on the stream already reflects them (CDC.reflected). Repeats counts
	// the snapshots a re-read found equal to the stream's last one of an earlier run, not published again.
	Reflected, Repeats int
}

// burst is the work of one FetchResponse: the records to re-read and when they changed, and the
// snapshots its events built.
type burst struct {
	opps     map[string]time.Time // opportunity id -> newest commit time naming it
	accounts map[string]time.Time
	leads    map[string]time.Time
	children map[string]map[string]time.Time // object -> child id -> commit time (parent unknown)
	overflow bool
	// built are the snapshots the events built, published after the reads unless a read covers them.
	built map[string]*known
	// touched are the records whose held snapshot the burst changed: forgotten if the burst fails.
	touched map[string]bool
	// out are the burst's snapshots, published together when it is handled (flush), and published what
	// is done once they are stored.
	out       snapshotBatch
	published []func()
}

// snapshotBatch collects snapshots (an observed.Publisher) to publish them with one PublishAll: a burst
// of 1,000 snapshots costs one wait for the stream's acks, not one round trip each.
type snapshotBatch []platform.Outgoing

// Publish adds the event to the batch.
func (b *snapshotBatch) Publish(_ context.Context, subject string, e platform.Event) (bool, error) {
	*b = append(*b, platform.Outgoing{Subject: subject, Event: e})
	return false, nil
}

func newBurst() *burst {
	return &burst{opps: map[string]time.Time{}, accounts: map[string]time.Time{}, leads: map[string]time.Time{},
		children: map[string]map[string]time.Time{}, built: map[string]*known{}, touched: map[string]bool{}}
}

func later(m map[string]time.Time, id string, at time.Time) {
	if at.After(m[id]) {
		m[id] = at
	}
}

// reading reports whether the burst reads the record by REST (later events of it must not be built).
func (b *burst) reading(id string) bool {
	_, opp := b.opps[id]
	_, lead := b.leads[id]
	return opp || lead
}

// read notes a record of an Opportunity or Lead event to read by REST.
func (b *burst) read(object, id string, at time.Time) {
	if object == sf.ObjectLead {
		later(b.leads, id, at)
		return
	}
	later(b.opps, id, at)
}

// add notes what one event asks to re-read by REST.
func (b *burst) add(ev sfpubsub.ChangeEvent, leads bool) {
	h := ev.Header
	if h.EntityName == sf.ObjectLead {
		if !leads {
			return
		}
		if h.ChangeType == "GAP_OVERFLOW" {
			b.overflow = true
		}
		for _, id := range h.RecordIDs {
			later(b.leads, id, h.CommitTimestamp)
		}
		return
	}
	parentField, tracked := cdcParents[h.EntityName]
	if !tracked {
		return
	}
	if h.ChangeType == "GAP_OVERFLOW" {
		b.overflow = true
		return
	}
	at := h.CommitTimestamp
	for _, id := range h.RecordIDs {
		switch {
		case parentField == "":
			later(b.opps, id, at)
		case parentField == "AccountId":
			later(b.accounts, id, at)
		default:
			if parent, ok := ev.Fields[parentField].(string); ok && parent != "" {
				later(b.opps, parent, at)
				continue
			}
			if b.children[h.EntityName] == nil {
				b.children[h.EntityName] = map[string]time.Time{}
			}
			later(b.children[h.EntityName], id, at)
		}
	}
}

// CDC is the Change Data Capture subscriber of an Ingest.
type CDC struct {
	In     *Ingest
	PubSub *sfpubsub.Client
	Config CDCConfig
	// AfterBurst, when set, is called after each burst is published and its replay id noted (tests).
	AfterBurst func(CDCStats)

	// readAll turns snapshots built from the events off: every change is read by REST (the tests' oracle).
	readAll bool

	mu    sync.Mutex
	stats CDCStats
	// synced holds, per tracked object, the fields (lower case) the mapping syncs; set by Run.
	synced map[string]map[string]bool
	// oppShape and leadShape say what the snapshots hold of their object's events, parentHeld which
	// fields (lower case) of an Account or Contact the Opportunity snapshots show; complete, per schema id,
	// whether its events carry every field a snapshot holds. Set by Run (newShapes).
	oppShape, leadShape shape
	parentHeld          map[string]map[string]bool
	complete            map[string]bool
	// sellers holds, per record, the newest change not made by cosell (reread), this run's.
	sellers map[string]sellerChange
	swept   time.Time
	cov     *coverage // what the events handled, for the backstop poll (backstop.go); set by Run
	began   time.Time // when this run began (Run): events committed before may be an earlier run's repeats
}

// stamps change with every write; a write that changed only them changed nothing a snapshot shows.
var stamps = map[string]bool{"systemmodstamp": true, "lastmodifieddate": true, "lastmodifiedbyid": true}

// learnSyncedFields records which fields of Opportunity and Account the mapping syncs (Ingest.Extra,
// the mapping's Salesforce fields), and of a Lead (when Leads are synced) the ones a Lead snapshot holds
// but the link and what Salesforce derives: the ones both a seller and cosell write.
func (c *CDC) learnSyncedFields() {
	c.synced = map[string]map[string]bool{sf.ObjectOpportunity: {}, "Account": {}}
	for _, f := range c.In.Extra {
		f = strings.ToLower(f)
		if acc, ok := strings.CutPrefix(f, "account."); ok {
			c.synced["Account"][acc] = true
		} else if !strings.Contains(f, ".") {
			c.synced[sf.ObjectOpportunity][f] = true
		}
	}
	if !c.In.Leads {
		return
	}
	c.synced[sf.ObjectLead] = map[string]bool{}
	for _, f := range mapping.LeadFields {
		switch f {
		case sf.FieldID, sf.FieldSystemModstamp, sf.FieldIsDeleted, sf.LeadIsConverted, sf.LeadConvertedOpportunityID,
			sf.FieldReferralIdentifier, sf.FieldSyncWithPartnerCenter:
		default:
			c.synced[sf.ObjectLead][strings.ToLower(f)] = true
		}
	}
}

// reread reports whether cosell's own change must be re-read rather than dropped from the header: an
// update of a field the mapping syncs (not only the link, the sync status or the Audit summary) to a
// record a seller changed shortly before (within the backstop interval), a delete or undelete, or any
// change to a child record (the snapshot holds them whole, and a child's event may not name its parent).
// Then sf-ingest may have read and published the seller's value before cosell's write landed over it
// (cosell's write decided on a Microsoft seller's edit before the mapper saw the Salesforce one), and only a
// re-read tells the mapper that cosell's value is the one Salesforce kept: dropping it left the pair
// diverged until the backstop poll (TestChaosShort in CDC mode; TestCDCOwnWriteAfterASellersChangeIsReread).
// Past the interval the backstop poll reads the record anyway (such a drop holds the backstop's coverage
// back until it has: backstop.go). A record cosell creates nobody else can have changed before.
func (c *CDC) reread(h sfpubsub.Header) bool {
	_, simple := c.synced[h.EntityName]
	switch {
	case !simple:
		return true
	case h.ChangeType == "CREATE":
		return false
	case h.ChangeType != "UPDATE":
		return true
	}
	if !c.changesSynced(h) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range h.RecordIDs {
		if s, ok := c.sellers[id]; ok && !s.created && h.CommitTimestamp.Sub(s.at) <= c.Config.Backstop {
			return true
		}
	}
	return false
}

// sellerChange is a record's newest change not made by cosell.
type sellerChange struct {
	at time.Time
	// created: the record's CREATE is the only one this run saw. A CREATE races with no write of cosell's:
	// cosell writes to a record only once the mapper has seen a snapshot of it, and every snapshot shows
	// what the CREATE set (the write-back of a new Opportunity's link and ✔ Name mark, on a seller's
	// Opportunity of a moment ago, is dropped like any own write: no read, no snapshot, no decision).
	created bool
}

// sinceCreate reports whether every record of an own write was created by a seller within the backstop
// interval before it, with no seller change since (reread let it drop): each record's every seller change
// is then one this run saw, so the backstop has nothing to catch for it (noteUnread holds nothing).
func (c *CDC) sinceCreate(h sfpubsub.Header) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range h.RecordIDs {
		if s, ok := c.sellers[id]; !ok || !s.created || h.CommitTimestamp.Sub(s.at) > c.Config.Backstop {
			return false
		}
	}
	return len(h.RecordIDs) > 0
}

// changesSynced reports whether an update changed a field the mapping syncs (not only the stamps); a
// compound field's component counts as the field it stands for (a Lead's Name.FirstName as FirstName).
func (c *CDC) changesSynced(h sfpubsub.Header) bool {
	fields := c.synced[h.EntityName]
	for _, f := range h.ChangedFields {
		if f = strings.ToLower(restName(f)); fields[f] && !stamps[f] {
			return true
		}
	}
	return false
}

// sellerChanged notes the records a change not made by cosell named, for reread.
func (c *CDC) sellerChanged(h sfpubsub.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sellers == nil {
		c.sellers = map[string]sellerChange{}
	}
	for _, id := range h.RecordIDs {
		s, seen := c.sellers[id]
		if h.CommitTimestamp.After(s.at) {
			s.at = h.CommitTimestamp
		}
		s.created = h.ChangeType == "CREATE" && (!seen || s.created)
		c.sellers[id] = s
	}
	// Forget what is past the interval, once per interval, so memory follows the change rate.
	if h.CommitTimestamp.Sub(c.swept) > c.Config.Backstop {
		for id, s := range c.sellers {
			if h.CommitTimestamp.Sub(s.at) > c.Config.Backstop {
				delete(c.sellers, id)
			}
		}
		c.swept = h.CommitTimestamp
	}
}

// Stats returns the counts so far.
func (c *CDC) Stats() CDCStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *CDC) count(f func(*CDCStats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// Available reports whether the org serves every configured channel (mode auto).
func (c *CDC) Available(ctx context.Context) error {
	for _, ch := range c.Config.Channels {
		if _, err := c.PubSub.Topic(ctx, ch); err != nil {
			return fmt.Errorf("change channel %s: %w", ch, err)
		}
	}
	return nil
}

// Run subscribes to every channel and runs the backstop poller until ctx ends or one of them fails.
func (c *CDC) Run(ctx context.Context) error {
	if err := c.In.Describe(ctx); err != nil {
		return err
	}
	c.learnSyncedFields()
	if err := c.coverBackstop(ctx); err != nil {
		return err
	}
	if err := c.newShapes(ctx); err != nil {
		return err
	}
	// What this replica held from an earlier lease is not what Salesforce holds now.
	if c.In.snaps == nil {
		c.In.snaps = newSnapshotCache(c.Config.Cache)
	}
	c.began = time.Now()
	c.In.snaps.reset(c.began)
	c.mu.Lock()
	c.sellers = nil // another replica may have handled the changes since this one last held the lease
	c.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(c.Config.Channels)+1)
	for _, ch := range c.Config.Channels {
		go func() { errs <- c.subscribe(ctx, ch) }()
	}
	go func() { errs <- c.In.runPoller(ctx, c.Config.Backstop, false) }()
	var first error
	for range len(c.Config.Channels) + 1 {
		if err := <-errs; err != nil && first == nil && ctx.Err() == nil {
			first = err
			cancel()
		}
	}
	return first
}

// ReplayKey is the checkpoints-bucket key holding a channel's replay id.
func ReplayKey(channel string) string {
	return contracts.CheckpointKey(contracts.StageSFIngest, "cdc"+strings.ReplaceAll(channel, "/", "."))
}

// subscribe follows one channel until ctx ends. A failure (Salesforce refusing the burst's read, NATS
// away) starts it again after a back-off from the stored replay id, so the unfinished burst comes again.
func (c *CDC) subscribe(ctx context.Context, channel string) error {
	const first, most = 200 * time.Millisecond, 30 * time.Second
	backoff := first
	for {
		began := time.Now()
		err := c.follow(ctx, channel)
		if ctx.Err() != nil {
			return nil
		}
		c.cov.failed(channel)
		if time.Since(began) > most {
			backoff = first
		}
		c.In.Log.Warn("change data capture: subscription failed; resuming from the stored replay id", "channel", channel,
			"err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, most)
	}
}

// follow subscribes to one channel: from its stored replay id, else after a REST catch-up from LATEST.
// The replay id of each handled burst is stored coalesced (replay.go), and what is pending when the
// subscription ends (ctx done: shutdown or the lease handed off; or a failure) is stored before it returns.
func (c *CDC) follow(ctx context.Context, channel string) error {
	key := ReplayKey(channel)
	caughtUp := false
	for {
		mark, start, err := loadReplayMark(ctx, c.In.Checkpoints, key, c.Config.CheckpointInterval)
		if err != nil {
			return err
		}
		if start.Preset == pubsubpb.ReplayPreset_LATEST && !caughtUp {
			if err := c.catchUp(ctx, channel, "no stored replay id"); err != nil {
				return err
			}
		}
		// From LATEST, what changed between the catch-up and the stream's opening would be missed: the first
		// response proves the stream open, and one more catch-up (one call, from the watermark) covers the gap.
		closeGap := start.Preset == pubsubpb.ReplayPreset_LATEST
		err = c.PubSub.Subscribe(ctx, channel, start, func(ctx context.Context, b sfpubsub.Batch) error {
			if closeGap {
				closeGap = false
				if err := c.catchUp(ctx, channel, "the stream opened from LATEST"); err != nil {
					return err
				}
			}
			if err := c.handle(ctx, b); err != nil {
				return err
			}
			c.cov.handled(channel, b.Events, c.fullBatch(len(b.Events)))
			if err := mark.noted(b.LatestID); err != nil {
				return err
			}
			if c.AfterBurst != nil {
				c.AfterBurst(c.Stats())
			}
			return nil
		})
		if errors.Is(err, sfpubsub.ErrReplayInvalid) && ctx.Err() == nil {
			// Past retention (or otherwise unusable): heal by REST, then follow from LATEST.
			if err := c.catchUp(ctx, channel, "the stored replay id is no longer valid"); err != nil {
				_ = mark.stop(ctx)
				return err
			}
			if err := mark.drop(ctx); err != nil {
				return err
			}
			caughtUp = true
			continue
		}
		if serr := mark.stop(ctx); serr != nil {
			c.In.Log.Warn("change data capture: the last replay id handled could not be stored; a restart handles its events again",
				"channel", channel, "err", serr)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("the subscription ended")
		}
		return err
	}
}

// catchUp runs the poller once: every change since its watermark.
func (c *CDC) catchUp(ctx context.Context, channel, why string) error {
	n, err := c.In.Poll(ctx)
	if err != nil {
		return fmt.Errorf("REST catch-up for %s (%s): %w", channel, why, err)
	}
	c.count(func(s *CDCStats) { s.CatchUps++ })
	c.In.Log.Info("change data capture: caught up by REST", "channel", channel, "why", why, "published", n)
	return nil
}

// handle publishes the snapshots a burst changes: built from the events where they carry the change
// (apply.go), else re-read by REST in one Composite call for the whole burst.
func (c *CDC) handle(ctx context.Context, b sfpubsub.Batch) (err error) {
	if len(b.Events) == 0 {
		return nil
	}
	work := newBurst()
	unread := map[string]time.Time{} // object -> oldest own write of a synced field dropped unread
	defer func() {
		if err != nil { // the burst comes again: what it changed in memory must not count as published
			for id := range work.touched {
				c.In.snaps.forget(id, true)
			}
		}
	}()
	for _, ev := range b.Events {
		h := ev.Header
		ours := c.Config.OwnClient != "" && h.Client() == c.Config.OwnClient && !h.IsGap()
		dropped := ours && !c.reread(h)
		if !ours {
			c.sellerChanged(h)
		}
		if dropped {
			c.noteUnread(unread, ev.Header)
		}
		c.count(func(s *CDCStats) {
			s.Events++
			if h.IsGap() {
				s.Gaps++
			}
			if dropped {
				s.Echoes++
			} else if ours {
				s.OwnReads++
			}
		})
		if dropped {
			if err := c.absorb(ctx, work, ev); err != nil {
				return err
			}
			continue
		}
		if done, err := c.reflected(ctx, ev); err != nil {
			return err
		} else if done {
			c.count(func(s *CDCStats) { s.Reflected++ })
			continue
		}
		built, err := c.build(ctx, work, ev, false)
		if err != nil {
			return err
		}
		if !built {
			work.add(ev, c.In.Leads)
		}
	}
	if err := c.cov.hold(ctx, unread); err != nil {
		return err
	}
	if work.overflow {
		if err := c.catchUp(ctx, "GAP_OVERFLOW", "Salesforce could not publish every change"); err != nil {
			return err
		}
	}
	if len(work.children) > 0 {
		if err := c.resolveChildren(ctx, work); err != nil {
			return err
		}
	}
	read := map[string]bool{}
	if len(work.opps) > 0 || len(work.accounts) > 0 || len(work.leads) > 0 {
		if err := c.read(ctx, work, read); err != nil {
			return err
		}
	}
	if err := c.publishBuilt(ctx, work, read); err != nil {
		return err
	}
	return c.flush(ctx, work)
}

// flush publishes the burst's snapshots (in the order they were made: one per record) and, once they
// are stored, notes them as published.
func (c *CDC) flush(ctx context.Context, work *burst) error {
	if len(work.out) == 0 {
		return nil
	}
	dups, err := c.In.Bus.PublishAll(ctx, work.out)
	if err != nil {
		return fmt.Errorf("publish %d snapshots: %w", len(work.out), err)
	}
	for _, f := range work.published {
		f()
	}
	c.count(func(s *CDCStats) { s.Snapshots += len(work.out) - dups })
	return nil
}

// publishBuilt publishes the snapshots the burst's events built, except those its reads published.
func (c *CDC) publishBuilt(ctx context.Context, work *burst, read map[string]bool) error {
	for _, id := range keysOf(work.built) {
		k := work.built[id]
		if read[id] || work.reading(id) {
			continue
		}
		if !synced(k.snap) { // no longer synced: the REST path reads only synced records
			c.In.snaps.forget(id, !k.fresh)
			continue
		}
		if _, err := observed.PublishOpportunity(ctx, &work.out, contracts.StageSFIngest, k.snap, k.ver, "cdc"); err != nil {
			return fmt.Errorf("%s %s: %w", objectName(k.snap), id, err)
		}
		work.published = append(work.published, func() {
			c.In.remember(k.snap)
			key, _ := contentKey(k.snap)
			c.In.snaps.published(id, key)
		})
		c.count(func(s *CDCStats) { s.Built++ })
	}
	return nil
}

func objectName(o contracts.Opportunity) string {
	if o.Object != "" {
		return strings.ToLower(o.Object)
	}
	return "opportunity"
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// resolveChildren finds the Opportunities of child records whose event did not name them (updates and
// deletes), in one Composite call.
func (c *CDC) resolveChildren(ctx context.Context, work *burst) error {
	var reqs []sfapi.Subrequest
	var objects []string
	for obj, ids := range work.children {
		from, key := obj, sf.FieldID
		if v, ok := cdcVia[obj]; ok {
			from, key = v.object, v.key
		}
		q := "SELECT " + key + ", " + cdcParents[obj] + " FROM " + from + " WHERE " + key + " IN (" + quoteIDs(keys(ids)) + ")"
		reqs = append(reqs, sfapi.Subrequest{Method: http.MethodGet, URL: sfapi.QueryURL(q, true), ReferenceID: fmt.Sprintf("c%d", len(reqs))})
		objects = append(objects, obj)
	}
	c.count(func(s *CDCStats) { s.Reads++ })
	answers, err := c.In.SF.Composite(ctx, false, reqs)
	if err != nil {
		return fmt.Errorf("read the parents of changed children: %w", err)
	}
	for i, a := range answers {
		obj := objects[i]
		if err := a.Err("read " + obj); err != nil {
			return err
		}
		var page sfapi.QueryPage
		if err := json.Unmarshal(a.Body, &page); err != nil {
			return fmt.Errorf("read %s: %w", obj, err)
		}
		key := sf.FieldID
		if v, ok := cdcVia[obj]; ok {
			key = v.key
		}
		for _, row := range page.Records {
			if parent := str(row[cdcParents[obj]]); parent != "" {
				later(work.opps, parent, work.children[obj][str(row[key])])
			}
		}
	}
	return nil
}

// cdcChunk bounds the ids in one query (SOQL length) and cdcQueries the queries in one Composite call.
const (
	cdcChunk   = 200
	cdcQueries = 5
)

// read fetches the full snapshots of the burst's Opportunities (and those of its Accounts) and Leads with
// one Composite call of up to five queryAll queries per 1,000 records, and publishes them; read notes the
// records published. A record the burst names that the read does not return is no longer synced (or gone).
func (c *CDC) read(ctx context.Context, work *burst, read map[string]bool) error {
	type query struct {
		soql string
		lead bool
	}
	var queries []query
	opps := "SELECT " + c.In.sel.Select() + " FROM Opportunity WHERE "
	for ids := range slices.Chunk(keys(work.opps), cdcChunk) {
		queries = append(queries, query{soql: opps + "(Id IN (" + quoteIDs(ids) + ")) AND " + observed.Synced})
	}
	for ids := range slices.Chunk(keys(work.accounts), cdcChunk) {
		queries = append(queries, query{soql: opps + "(" + sf.FieldAccountID + " IN (" + quoteIDs(ids) + ")) AND " + observed.Synced})
	}
	leads := "SELECT " + strings.Join(mapping.LeadFields, ", ") + " FROM Lead WHERE "
	for ids := range slices.Chunk(keys(work.leads), cdcChunk) {
		queries = append(queries, query{soql: leads + "(Id IN (" + quoteIDs(ids) + ")) AND " + observed.Synced, lead: true})
	}
	for group := range slices.Chunk(queries, cdcQueries) {
		var reqs []sfapi.Subrequest
		for i, q := range group {
			reqs = append(reqs, sfapi.Subrequest{Method: http.MethodGet, URL: sfapi.QueryURL(q.soql, true),
				ReferenceID: fmt.Sprintf("o%d", i)})
		}
		c.count(func(s *CDCStats) { s.Reads++ })
		answers, err := c.In.SF.Composite(ctx, false, reqs)
		if err != nil {
			return fmt.Errorf("read %d changed opportunities and %d leads: %w", len(work.opps), len(work.leads), err)
		}
		for i, a := range answers {
			if err := a.Err("read changed records"); err != nil {
				return err
			}
			var page sfapi.QueryPage
			if err := json.Unmarshal(a.Body, &page); err != nil {
				return fmt.Errorf("read changed records: %w", err)
			}
			rows := page.Records
			if !page.Done { // more rows than one page (an Account with many Opportunities): read them all
				rows = nil
				c.count(func(s *CDCStats) { s.Reads++ })
				if err := c.In.SF.QueryEach(ctx, group[i].soql, true, func(r []map[string]any) error {
					rows = append(rows, r...)
					return nil
				}); err != nil {
					return fmt.Errorf("read changed records: %w", err)
				}
			}
			for _, row := range rows {
				id, err := c.publishRow(ctx, work, row, group[i].lead)
				if err != nil {
					return err
				}
				read[id] = true
			}
		}
	}
	for _, m := range []map[string]time.Time{work.opps, work.leads} {
		for id := range m {
			if !read[id] {
				c.In.snaps.forget(id, true)
			}
		}
	}
	return nil
}

// publishRow publishes one snapshot; its version is the newest of the record's stamps and the commit
// times of the events that named it, so a change the snapshot cannot show (a removed child) still moves it.
func (c *CDC) publishRow(ctx context.Context, work *burst, row map[string]any, lead bool) (string, error) {
	snap, ver, err := c.In.sel.Opportunity(row)
	at := work.opps[snap.ID]
	if lead {
		snap, ver, err = observed.Lead(row)
		at = work.leads[snap.ID]
	}
	if err != nil {
		return "", err
	}
	if acc := work.accounts[str(row[sf.FieldAccountID])]; !lead && acc.After(at) {
		at = acc
	}
	if at.After(ver.At) {
		ver = observed.OpportunityVersionAt(at)
	}
	if c.repeats(snap) { // an earlier run's last snapshot of it holds the same: nothing new
		c.In.remember(snap)
		c.In.keep(snap, ver, row)
		work.touched[snap.ID] = true
		c.count(func(s *CDCStats) { s.Repeats++ })
		return snap.ID, nil
	}
	if _, err := observed.PublishOpportunity(ctx, &work.out, contracts.StageSFIngest, snap, ver, "cdc"); err != nil {
		return "", fmt.Errorf("%s %s: %w", objectName(snap), snap.ID, err)
	}
	// Held at once (the burst's later events build on it), forgotten if the burst fails before it is stored.
	c.In.keep(snap, ver, row)
	work.touched[snap.ID] = true
	work.published = append(work.published, func() { c.In.remember(snap) })
	return snap.ID, nil
}

// repeats reports whether a snapshot read by REST of a record this run does not hold yet shows what the
// stream's last snapshot of it, published before this run began, shows (only the stamps moved: cosell's
// own writes since, such as the Audit summary, which the earlier run dropped from their header).
func (c *CDC) repeats(snap contracts.Opportunity) bool {
	p, _ := c.In.snaps.priorOf(snap.ID)
	if p == nil || !p.ObservedAt.Before(c.began) || c.In.snaps.get(snap.ID) != nil {
		return false
	}
	was, ok1 := contentKey(p.Opportunity)
	now, ok2 := contentKey(snap)
	return ok1 && ok2 && was == now
}

func keys(m map[string]time.Time) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func quoteIDs(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = sfapi.Quote(id)
	}
	return strings.Join(q, ", ")
}
