package auditor

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
)

// eachConsumer calls fn with every durable's spec and current info; a durable that cannot be read now
// (not provisioned yet, NATS away) is left out.
func (a *Auditor) eachConsumer(ctx context.Context, fn func(contracts.ConsumerSpec, *jetstream.ConsumerInfo)) {
	for _, c := range contracts.Consumers() {
		if info, err := a.Bus.ConsumerInfo(ctx, c.Durable); err == nil {
			fn(c, info)
		}
	}
}

// deadLetterDepth is how many messages are parked (0 when the stream cannot be read now).
func (a *Auditor) deadLetterDepth(ctx context.Context) uint64 {
	info, err := a.Bus.StreamInfo(ctx, contracts.StreamDeadLetter)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// StageLag is one consumer's backlog and pace.
type StageLag struct {
	Stage      string `json:"stage"`
	Consumer   string `json:"consumer"`
	Stream     string `json:"stream"`
	Pending    uint64 `json:"pending"`
	AckPending uint64 `json:"ackPending"`
	// Redelivered counts messages being retried right now.
	Redelivered uint64 `json:"redelivered"`
	// Waiting is the number of pull requests waiting: at least one means a replica of the stage is up.
	Waiting int `json:"waiting"`
	// PerMinute is deliveries per minute over the last minute of samples.
	PerMinute float64 `json:"perMinute"`
	// LastActive is when the consumer last delivered a message.
	LastActive *time.Time `json:"lastActive,omitempty"`
}

// Status is the one-screen summary.
type Status struct {
	Lag         []StageLag     `json:"lag"`
	DeadLetters uint64         `json:"deadLetters"`
	Links       int            `json:"links"`
	LinkStates  map[string]int `json:"linkStates"`
	Decisions   map[string]int `json:"decisions"`
}

// Status gathers lag, dead-letter depth and counts.
func (a *Auditor) Status(ctx context.Context) Status {
	st := Status{Decisions: a.Counts(), LinkStates: map[string]int{}}
	tp := a.throughput()
	a.eachConsumer(ctx, func(c contracts.ConsumerSpec, info *jetstream.ConsumerInfo) {
		l := StageLag{Stage: c.Stage, Consumer: c.Durable, Stream: c.Stream, Pending: info.NumPending,
			AckPending: uint64(info.NumAckPending), Redelivered: uint64(info.NumRedelivered), Waiting: info.NumWaiting,
			PerMinute: tp[c.Durable]}
		if info.Delivered.Last != nil {
			t := info.Delivered.Last.UTC()
			l.LastActive = &t
		}
		st.Lag = append(st.Lag, l)
	})
	st.DeadLetters = a.deadLetterDepth(ctx)
	if links, err := a.ListLinks(ctx); err == nil {
		st.Links = len(links)
		for _, l := range links {
			st.LinkStates[l.State]++
		}
	}
	return st
}

// Routes mounts the status API and page:
//
//	GET  /api/status                      lag, throughput, dead-letter depth, counts
//	GET  /api/links                       every link
//	GET  /api/links?id=ID                 one link (by referral, opportunity or link id) and its timeline
//	GET  /api/timeline?id=ID              the same, also for a record with no link yet
//	GET  /api/decisions                   the latest decisions, newest first
//	GET  /api/history                     the last hour of lag and throughput samples
//	GET  /api/deadletters                 the parked messages
//	GET  /api/deadletters/{seq}           one parked message, with its data
//	POST /api/deadletters/{seq}/retry     re-drive it
//	DELETE /api/deadletters/{seq}         purge it
//	GET  /  and  /link?id=ID              the page, and a record's timeline page
//
// Every route but /login goes through the Guard (a.Guard; nil refuses everyone): see Guard.Protect.
func (a *Auditor) Routes(routes interface {
	Handle(string, http.Handler)
}) {
	if a.Guard == nil {
		a.Guard, _ = NewGuard(AuthConfig{}, a.Log)
	}
	a.Guard.Routes(routes)
	mux := guarded{routes, a.Guard}
	mux.Handle("/api/status", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.Status(r.Context()))
	}))
	mux.Handle("/api/links", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.URL.Query().Get("id"); id != "" {
			l, err := a.Link(r.Context(), id)
			if err != nil {
				httpError(w, err)
				return
			}
			tl, err := a.Timeline(r.Context(), l.ID)
			if err != nil {
				httpError(w, err)
				return
			}
			writeJSON(w, Record{Link: l, Timeline: tl})
			return
		}
		links, err := a.ListLinks(r.Context())
		if err != nil {
			httpError(w, err)
			return
		}
		if links == nil {
			links = []LinkRecord{}
		}
		writeJSON(w, links)
	}))
	mux.Handle("/api/timeline", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, err := a.Lookup(r.Context(), strings.TrimSpace(r.URL.Query().Get("id")))
		if err != nil {
			httpError(w, err)
			return
		}
		writeJSON(w, rec)
	}))
	mux.Handle("/api/decisions", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.Recent())
	}))
	mux.Handle("/api/history", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := a.History()
		if h == nil {
			h = []Sample{}
		}
		writeJSON(w, h)
	}))
	mux.Handle("/api/deadletters", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dls, err := a.DeadLetters(r.Context())
		if err != nil {
			httpError(w, err)
			return
		}
		if dls == nil {
			dls = []DeadLetterEntry{}
		}
		writeJSON(w, dls)
	}))
	mux.Handle("/api/deadletters/", http.HandlerFunc(a.serveDeadLetter))
	mux.Handle("/deadletters/", http.HandlerFunc(a.serveRedriveForm))
	mux.Handle("/link", http.HandlerFunc(a.linkPage))
	mux.Handle("/", http.HandlerFunc(a.page))
}

// guarded mounts every route behind the Guard.
type guarded struct {
	mux interface{ Handle(string, http.Handler) }
	g   *Guard
}

func (m guarded) Handle(pattern string, h http.Handler) { m.mux.Handle(pattern, m.g.Protect(h)) }

// serveDeadLetter serves /api/deadletters/{seq}[/retry].
func (a *Auditor) serveDeadLetter(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/deadletters/"), "/")
	seqS, action, _ := strings.Cut(rest, "/")
	seq, err := strconv.ParseUint(seqS, 10, 64)
	if err != nil || seq == 0 {
		http.Error(w, "dead letter sequence must be a positive number", http.StatusBadRequest)
		return
	}
	switch {
	case action == "" && r.Method == http.MethodGet:
		en, err := a.DeadLetter(r.Context(), seq)
		if err != nil {
			httpError(w, err)
			return
		}
		writeJSON(w, en)
	case action == "" && r.Method == http.MethodDelete:
		if _, err := a.Purge(r.Context(), seq); err != nil {
			httpError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case action == "retry" && r.Method == http.MethodPost:
		en, err := a.Retry(r.Context(), seq)
		if err != nil {
			httpError(w, err)
			return
		}
		writeJSON(w, map[string]any{"retried": en.Seq, "subject": en.Subject, "linkId": en.LinkID})
	default:
		w.Header().Set("Allow", "GET, DELETE, POST (…/retry)")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// serveRedriveForm is the page's re-drive button: POST /deadletters/{seq}/retry, then back to the page.
func (a *Auditor) serveRedriveForm(w http.ResponseWriter, r *http.Request) {
	seqS, action, _ := strings.Cut(strings.Trim(strings.TrimPrefix(r.URL.Path, "/deadletters/"), "/"), "/")
	seq, err := strconv.ParseUint(seqS, 10, 64)
	if err != nil || action != "retry" || r.Method != http.MethodPost {
		http.Error(w, "use POST /deadletters/{seq}/retry", http.StatusBadRequest)
		return
	}
	msg := "re-driven dead letter " + seqS
	if _, err := a.Retry(r.Context(), seq); err != nil {
		msg = "re-drive+failed"
		a.Log.Warn("re-drive from the page failed", "seq", seq, "err", err)
	}
	http.Redirect(w, r, "/?flash="+url.QueryEscape(msg)+"#deadletters", http.StatusSeeOther)
}

func httpError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrNoLink) || errors.Is(err, ErrNoDeadLetter) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
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
	dls, _ := a.DeadLetters(ctx)
	samples := a.History()
	recent := a.Recent()
	if len(recent) > 30 {
		recent = recent[:30]
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplate.Execute(w, map[string]any{
		"Status": st, "Links": links, "Recent": recent, "Now": time.Now().UTC().Format(time.RFC3339),
		"Kinds": sortedKinds(st.Decisions), "DeadLetters": dls, "Flash": r.URL.Query().Get("flash"),
		"CSRF": a.Guard.CSRF(r), "Who": Who(ctx),
		"LagChart": chart("Consumer lag", "messages pending + in flight", samples, a.Options.withDefaults().History, func(s Sample, n string) float64 {
			return float64(s.Lag[n])
		}),
		"ThroughputChart": chart("Throughput", "deliveries per minute", samples, a.Options.withDefaults().History, func(s Sample, n string) float64 {
			return s.Throughput[n]
		}),
	}); err != nil {
		a.Log.Warn("status page", "err", err)
	}
}

func (a *Auditor) linkPage(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	rec, err := a.Lookup(r.Context(), id)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err != nil && !errors.Is(err, ErrNoLink) {
		w.WriteHeader(http.StatusInternalServerError)
	} else if err != nil {
		w.WriteHeader(http.StatusNotFound)
	}
	data := map[string]any{"ID": id, "Record": rec, "Err": err}
	if err := linkTemplate.Execute(w, data); err != nil {
		a.Log.Warn("link page", "err", err)
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
	if len([]rune(s)) > 18 {
		return string([]rune(s)[:18]) + "…"
	}
	return s
}
