// Package sfingest is the sf-ingest stage: it polls Salesforce for changed Opportunities by SystemModstamp
// and publishes a full snapshot of each (fields, Account fields, team members, contact roles, Microsoft
// Solutions, notes) as an observed event.
//
// One poll is one Composite call holding five queryAll queries (Salesforce's most in one Composite call),
// all from the same watermark: the synced Opportunities changed (or deleted) since, and the team members,
// contact roles, Microsoft Solutions and notes changed (or deleted) since. A child change re-snapshots its parent (one more query for all such parents), so the
// snapshot's version is the newest SystemModstamp among the Opportunity, its children and the child changes
// seen; a deleted Opportunity is published with Deleted set. An idle poll costs one API call.
//
// The watermark lives in the checkpoints bucket and moves only after the events of a round are durably
// published. Each poll re-reads an overlap window before the watermark (commit-time skew can make a row
// appear with an older stamp than one already read); a re-read row produces the same event id (opportunity
// id + version), so the server drops it as a duplicate and nothing new is published for a record that did
// not change. Large results are read in rounds of PageSize rows per query (keyset paging on
// SystemModstamp, Id), so memory stays bounded and the watermark advances round by round.
package sfingest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/observed"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/sforg"
	"github.com/cosell-dev/cosell/services/internal/watermark"
)

// children are the child objects polled for changes, with the field naming their Opportunity.
var children = []struct{ object, parentField string }{
	{sf.ObjectOpportunityTeamMember, "OpportunityId"},
	{sf.ObjectOpportunityContactRole, "OpportunityId"},
	{sf.ObjectMicrosoftSolution, "Opportunity__c"},
	{"Note", "ParentId"},
}

// Config tunes the poller.
type Config struct {
	Interval time.Duration `env:"COSELL_SF_POLL_INTERVAL" default:"10s" help:"how often to poll Salesforce for changes"`
	Overlap  time.Duration `env:"COSELL_SF_POLL_OVERLAP" default:"5s" help:"how far before the watermark each poll re-reads (commit-time skew)"`
	PageSize int           `env:"COSELL_SF_POLL_PAGE" default:"200" help:"rows per query per round (1..2000); bounds memory"`
	// Since is where a first start begins (RFC 3339); empty = the beginning.
	Since string `env:"COSELL_SF_BACKFILL_SINCE" help:"on first start (no watermark yet), read changes from this RFC 3339 time; empty reads everything"`
	// CDC is the real-time path (cdc.go); the poller is then the backstop.
	CDC CDCConfig
}

// Ingest is the sf-ingest stage.
type Ingest struct {
	Bus         *platform.Bus
	SF          *sfapi.Client
	Checkpoints jetstream.KeyValue
	Config      Config
	Log         *slog.Logger
	// Extra are further Opportunity or parent fields to read: the ones a customised mapping names
	// (mapping.Mapping.SalesforceFields).
	Extra []string
	// Leads polls the Leads cosell syncs too (the mapping's coSellOnly off: lead referrals are Leads).
	Leads bool

	sel observed.Selection // the snapshot's field list fitted to the org, set by Describe
	cov *coverage          // what the change events handled (backstop.go); nil when polling only
	org *sforg.Org         // the org's describe, set by Describe
	// snaps are the last snapshots per record the change events build on (apply.go); nil while polling only.
	snaps *snapshotCache

	mu   sync.Mutex
	last map[string][sha256.Size]byte // Opportunity id → content of the last snapshot the poller published
}

// Describe fits the snapshot's field list to the org from its describe, once: the optional fields it
// lacks (CurrencyIsoCode in a single-currency org) are left out of every query and stand in every snapshot
// with the org's value; a mapped field it lacks is an error naming the field and the fix. The descriptor
// calls it while the stage starts (before it is ready, on every replica, as sf-writer reads the org);
// Run, the change-event path and Poll call it when nobody has.
func (in *Ingest) Describe(ctx context.Context) error {
	if in.sel.Fields != nil {
		return nil
	}
	org, err := sforg.Wait(ctx, in.SF, min(in.Config.Interval, 5*time.Second), in.Log, sf.ObjectOpportunity)
	if err != nil {
		return fmt.Errorf("read the org's shape: %w", err)
	}
	if in.sel, err = observed.Fit(ctx, org, in.Extra); err != nil {
		return err
	}
	in.org = org
	if len(in.sel.Fallback) > 0 {
		in.Log.Info("fields the org lacks stand in with the org's values", "fields", in.sel.Fallback)
	}
	return nil
}

const checkpointName = "opportunity"

// Run polls until ctx is cancelled.
func (in *Ingest) Run(ctx context.Context) error {
	if err := in.Describe(ctx); err != nil {
		return err
	}
	return in.runPoller(ctx, in.Config.Interval, true)
}

// runPoller polls every interval until ctx is cancelled; at once first when now is set.
func (in *Ingest) runPoller(ctx context.Context, interval time.Duration, now bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	if !now {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	for {
		if in.cov.replaying() {
			in.Log.Info("backstop poll waits: a change data capture subscription is replaying a backlog")
		} else if _, err := in.Poll(ctx); err != nil && ctx.Err() == nil {
			in.Log.Warn("poll failed; will try again", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// stream is one polled query: its keyset position and whether it has more rows.
type stream struct {
	object, parentField string    // "" parentField: the Opportunity query itself
	from                time.Time // where it reads from (the watermark's, or later: coverage.plan)
	after               string    // keyset condition continuing after the last row read
	last                time.Time
	done                bool
}

func (in *Ingest) pageSize() int {
	return min(max(in.Config.PageSize, 1), 2000)
}

// Poll reads every synced Opportunity changed since the watermark (itself, or one of its children),
// publishes a snapshot of each and moves the watermark. It returns how many snapshots were new to the stream.
func (in *Ingest) Poll(ctx context.Context) (int, error) {
	if in.sel.Fields == nil {
		if err := in.Describe(ctx); err != nil {
			return 0, err
		}
	}
	wm, err := watermark.Load(ctx, in.Checkpoints, contracts.CheckpointKey(contracts.StageSFIngest, checkpointName),
		in.Config.Since, "COSELL_SF_BACKFILL_SINCE")
	if err != nil {
		return 0, err
	}
	from := wm.From(in.Config.Overlap)
	plan := in.cov.plan(from, in.Config.Overlap)
	streams := []*stream{{object: sf.ObjectOpportunity}}
	if in.Leads {
		streams = append(streams, &stream{object: sf.ObjectLead})
	}
	for _, c := range children {
		streams = append(streams, &stream{object: c.object, parentField: c.parentField})
	}
	for _, s := range streams {
		s.from = plan.fromFor(s.object, from)
	}
	published := 0
	newest := wm.At
	for {
		n, seen, err := in.round(ctx, streams)
		published += n
		if err != nil {
			return published, err
		}
		if seen.After(newest) {
			newest = seen
		}
		// Safe point: everything up to it is published. Unfinished queries hold it back.
		safe, allDone := newest, true
		for _, s := range streams {
			if !s.done {
				allDone = false
				if s.last.Before(safe) {
					safe = s.last
				}
			}
		}
		if err := wm.Move(ctx, safe); err != nil {
			return published, err
		}
		if allDone {
			return published, in.cov.polled(ctx, plan)
		}
		if ctx.Err() != nil {
			return published, ctx.Err()
		}
	}
}

// round reads one page of every unfinished query in one Composite call, re-reads the parents of changed
// children, and publishes the snapshots. It returns the newest stamp read.
func (in *Ingest) round(ctx context.Context, streams []*stream) (int, time.Time, error) {
	n := in.pageSize()
	var reqs []sfapi.Subrequest
	var active []*stream
	for i, s := range streams {
		if s.done {
			continue
		}
		var where []string
		if s.parentField == "" {
			where = append(where, observed.Synced)
		}
		if !s.from.IsZero() {
			where = append(where, sf.FieldSystemModstamp+" >= "+sfapi.FormatTime(s.from))
		}
		if s.after != "" {
			where = append(where, s.after)
		}
		fields := "Id, " + s.parentField + ", SystemModstamp"
		switch {
		case s.object == sf.ObjectLead:
			fields = strings.Join(mapping.LeadFields, ", ")
		case s.parentField == "":
			fields = in.sel.Select()
		}
		q := "SELECT " + fields + " FROM " + s.object
		if len(where) > 0 {
			q += " WHERE " + strings.Join(where, " AND ")
		}
		q += fmt.Sprintf(" ORDER BY SystemModstamp, Id LIMIT %d", n)
		reqs = append(reqs, sfapi.Subrequest{Method: http.MethodGet, URL: sfapi.QueryURL(q, true), ReferenceID: fmt.Sprintf("q%d", i)})
		active = append(active, s)
	}
	// A Composite call holds at most 5 queries (the Opportunity and its four children): the Leads' query,
	// when polled, goes in a call of its own.
	var answers []sfapi.Subresponse
	for len(reqs) > 0 {
		chunk := reqs[:min(len(reqs), 5)]
		reqs = reqs[len(chunk):]
		got, err := in.SF.Composite(ctx, false, chunk)
		if err != nil {
			return 0, time.Time{}, err
		}
		answers = append(answers, got...)
	}
	var newest time.Time
	var opps, leads []map[string]any
	childChange := map[string]time.Time{} // opportunity id -> newest change among its children this round
	for i, a := range answers {
		s := active[i]
		if err := a.Err("poll " + s.object); err != nil {
			return 0, time.Time{}, err
		}
		var page sfapi.QueryPage
		if err := json.Unmarshal(a.Body, &page); err != nil {
			return 0, time.Time{}, fmt.Errorf("poll %s: %w", s.object, err)
		}
		for _, row := range page.Records {
			at, _ := sfapi.ParseTime(str(row[sf.FieldSystemModstamp]))
			if at.After(newest) {
				newest = at
			}
			if s.object == sf.ObjectLead {
				leads = append(leads, row)
				continue
			}
			if s.parentField == "" {
				opps = append(opps, row)
				continue
			}
			if parent := str(row[s.parentField]); strings.HasPrefix(parent, "006") && at.After(childChange[parent]) {
				childChange[parent] = at
			}
		}
		s.done = len(page.Records) < n
		if len(page.Records) > 0 {
			last := page.Records[len(page.Records)-1]
			s.last, _ = sfapi.ParseTime(str(last[sf.FieldSystemModstamp]))
			t := sfapi.FormatTime(s.last)
			s.after = fmt.Sprintf("(SystemModstamp > %s OR (SystemModstamp = %s AND Id > %s))", t, t, sfapi.Quote(str(last[sf.FieldID])))
		}
	}
	published := 0
	snapshotted := map[string]bool{}
	publish := func(row map[string]any) error {
		snap, ver, err := in.sel.Opportunity(row)
		if err != nil {
			return err
		}
		if c := childChange[snap.ID]; c.After(ver.At) {
			ver = observed.OpportunityVersionAt(c)
		}
		snapshotted[snap.ID] = true
		fresh, err := in.publish(ctx, snap, ver)
		if err != nil {
			return err
		}
		in.keep(snap, ver, row)
		if fresh {
			published++
		}
		return nil
	}
	for _, row := range opps {
		if err := publish(row); err != nil {
			return published, time.Time{}, err
		}
	}
	for _, row := range leads {
		snap, ver, err := observed.Lead(row)
		if err != nil {
			return published, time.Time{}, err
		}
		fresh, err := in.publish(ctx, snap, ver)
		if err != nil {
			return published, time.Time{}, err
		}
		in.keep(snap, ver, row)
		if fresh {
			published++
		}
	}
	var parents []string
	for id := range childChange {
		if !snapshotted[id] {
			parents = append(parents, id)
		}
	}
	for len(parents) > 0 {
		chunk := parents[:min(len(parents), 200)]
		parents = parents[len(chunk):]
		quoted := make([]string, len(chunk))
		for i, id := range chunk {
			quoted[i] = sfapi.Quote(id)
		}
		q := "SELECT " + in.sel.Select() +
			" FROM Opportunity WHERE Id IN (" + strings.Join(quoted, ", ") + ") AND " + observed.Synced
		if err := in.SF.QueryEach(ctx, q, false, func(rows []map[string]any) error {
			for _, row := range rows {
				if err := publish(row); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return published, time.Time{}, err
		}
	}
	return published, newest, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// publish publishes a polled snapshot, unless its content is the same as the last one this poller published
// for the Opportunity: a write that changed nothing a snapshot carries, only its SystemModstamp (cosell's own
// Audit write-back above all, which the poll reads back as a change), costs no snapshot, no decision and no
// delivery. A restarted poller, or a new leader, remembers nothing and publishes as before.
func (in *Ingest) publish(ctx context.Context, o contracts.Opportunity, v contracts.Version) (bool, error) {
	key, keyed := contentKey(o)
	in.mu.Lock()
	same := keyed && in.last[o.ID] == key
	in.mu.Unlock()
	if same {
		return false, nil
	}
	fresh, err := observed.PublishOpportunity(ctx, in.Bus, contracts.StageSFIngest, o, v, "poll")
	if err == nil {
		in.remember(o)
	}
	return fresh, err
}

// remember notes o as the content last published for its Opportunity, by the poller or by the change
// events (CDC.publishRow): a catch-up poll must not skip a change back to content the poller had seen
// before the change events moved it on.
func (in *Ingest) remember(o contracts.Opportunity) {
	key, keyed := contentKey(o)
	if !keyed {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.last == nil {
		in.last = map[string][sha256.Size]byte{}
	}
	in.last[o.ID] = key
}

// contentKey hashes what a snapshot carries besides its version stamp.
func contentKey(o contracts.Opportunity) ([sha256.Size]byte, bool) {
	fields := make(map[string]any, len(o.Fields))
	for k, v := range o.Fields {
		if !strings.EqualFold(k, sf.FieldSystemModstamp) {
			fields[k] = v
		}
	}
	o.Fields = fields
	b, err := json.Marshal(o) // map keys in sorted order: the same content, the same bytes
	if err != nil {
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256(b), true
}
