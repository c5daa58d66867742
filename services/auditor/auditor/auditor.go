// Package auditor is the auditor stage: it consumes every audited decision, keeps counts and the most
// recent entries, and serves the status API and page. The durable per-link timeline is the audit stream
// itself (one subject per link), read back on demand, so nothing is lost when the auditor restarts.
package auditor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"

	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/runtime"
)

// Auditor is the auditor stage.
type Auditor struct {
	Bus     *runtime.Bus
	Links   jetstream.KeyValue
	Log     *slog.Logger
	Consume runtime.ConsumeOptions

	mu     sync.Mutex
	recent []contracts.Decision
	counts map[string]int
}

// New builds the auditor on a connected bus.
func New(ctx context.Context, bus *runtime.Bus, log *slog.Logger) (*Auditor, error) {
	kv, err := bus.KV(ctx, contracts.BucketLinks)
	if err != nil {
		return nil, fmt.Errorf("auditor: links bucket: %w", err)
	}
	return &Auditor{Bus: bus, Links: kv, Log: log, counts: map[string]int{}}, nil
}

const keepRecent = 200

// Run consumes decisions until ctx is cancelled.
func (a *Auditor) Run(ctx context.Context) error {
	for _, c := range contracts.Consumers() {
		if c.Durable == contracts.ConsumerAuditor {
			return a.Bus.Consume(ctx, c, a.Handle, a.Consume)
		}
	}
	return errors.New("auditor: no consumer spec")
}

// Handle records one decision.
func (a *Auditor) Handle(ctx context.Context, e runtime.Event) error {
	d, err := runtime.DataAs[contracts.Decision](e)
	if err != nil {
		return runtime.Permanent(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.counts == nil {
		a.counts = map[string]int{}
	}
	a.counts[d.Kind]++
	a.recent = append(a.recent, d)
	if len(a.recent) > keepRecent {
		a.recent = a.recent[len(a.recent)-keepRecent:]
	}
	return nil
}

// Counts returns how many decisions of each kind were seen.
func (a *Auditor) Counts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.counts {
		out[k] = v
	}
	return out
}

// Recent returns the latest decisions, newest first.
func (a *Auditor) Recent() []contracts.Decision {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]contracts.Decision, len(a.recent))
	for i, d := range a.recent {
		out[len(a.recent)-1-i] = d
	}
	return out
}

// LinkRecord is a link as the status API shows it.
type LinkRecord struct {
	contracts.Link
	Outbox []json.RawMessage `json:"outbox,omitempty"`
}

// ListLinks lists every link.
func (a *Auditor) ListLinks(ctx context.Context) ([]LinkRecord, error) {
	lister, err := a.Links.ListKeysFiltered(ctx, "link.>")
	if err != nil {
		return nil, err
	}
	var out []LinkRecord
	for k := range lister.Keys() {
		e, err := a.Links.Get(ctx, k)
		if err != nil {
			continue
		}
		var l LinkRecord
		if json.Unmarshal(e.Value(), &l) == nil {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UpdatedAt.After(out[j].UpdatedAt) })
	return out, nil
}

// Link finds the link of a referral id, an opportunity id or a link id.
func (a *Auditor) Link(ctx context.Context, id string) (*LinkRecord, error) {
	linkID := id
	for _, sys := range []contracts.System{contracts.PartnerCenter, contracts.Salesforce} {
		if e, err := a.Links.Get(ctx, contracts.IndexKey(sys, id)); err == nil {
			linkID = string(e.Value())
			break
		}
	}
	e, err := a.Links.Get(ctx, contracts.LinkKey(linkID))
	if err != nil {
		return nil, fmt.Errorf("no link for %q: %w", id, err)
	}
	var l LinkRecord
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Timeline reads a link's audited decisions, oldest first, from the audit stream.
func (a *Auditor) Timeline(ctx context.Context, linkID string) ([]contracts.Decision, error) {
	cons, err := a.Bus.JS.OrderedConsumer(ctx, contracts.StreamAudit, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{contracts.Subject(contracts.SubjectAudit, linkID)},
	})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []contracts.Decision
	remaining := int(info.NumPending)
	for remaining > 0 {
		batch, err := cons.Fetch(min(remaining, 256), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return out, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var d contracts.Decision
			if json.Unmarshal(m.Data(), &d) == nil {
				out = append(out, d)
			}
		}
		if n == 0 {
			break
		}
		remaining -= n
	}
	return out, nil
}

// StageLag is one consumer's backlog.
type StageLag struct {
	Stage      string `json:"stage"`
	Consumer   string `json:"consumer"`
	Pending    uint64 `json:"pending"`
	AckPending uint64 `json:"ackPending"`
}

// Status is the one-screen summary.
type Status struct {
	Lag         []StageLag     `json:"lag"`
	DeadLetters uint64         `json:"deadLetters"`
	Links       int            `json:"links"`
	Decisions   map[string]int `json:"decisions"`
}

// Status gathers lag, dead-letter depth and counts.
func (a *Auditor) Status(ctx context.Context) Status {
	st := Status{Decisions: a.Counts()}
	for _, c := range contracts.Consumers() {
		p, ap, err := a.Bus.Lag(ctx, c)
		if err != nil {
			continue
		}
		st.Lag = append(st.Lag, StageLag{Stage: c.Stage, Consumer: c.Durable, Pending: p, AckPending: ap})
	}
	if s, err := a.Bus.JS.Stream(ctx, contracts.StreamDeadLetter); err == nil {
		if info, err := s.Info(ctx); err == nil {
			st.DeadLetters = info.State.Msgs
		}
	}
	if links, err := a.ListLinks(ctx); err == nil {
		st.Links = len(links)
	}
	return st
}

// Routes mounts the status API and page.
func (a *Auditor) Routes(mux interface {
	Handle(string, http.Handler)
}) {
	mux.Handle("/api/status", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.Status(r.Context()))
	}))
	mux.Handle("/api/links", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.URL.Query().Get("id"); id != "" {
			l, err := a.Link(r.Context(), id)
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			tl, _ := a.Timeline(r.Context(), l.ID)
			writeJSON(w, map[string]any{"link": l, "timeline": tl})
			return
		}
		links, err := a.ListLinks(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, links)
	}))
	mux.Handle("/api/decisions", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.Recent())
	}))
	mux.Handle("/", http.HandlerFunc(a.page))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (a *Auditor) page(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" && r.URL.Path != "/status" {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	st := a.Status(ctx)
	links, _ := a.ListLinks(ctx)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplate.Execute(w, map[string]any{
		"Status": st, "Links": links, "Recent": a.Recent(), "Now": time.Now().UTC().Format(time.RFC3339),
		"Kinds": sortedKinds(st.Decisions),
	}); err != nil {
		a.Log.Warn("status page", "err", err)
	}
}

func sortedKinds(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func short(s string) string {
	if len(s) > 14 {
		return s[:14] + "…"
	}
	return s
}
