package auditor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
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
	// InStep counts the linked pairs with nothing held, failed or parked for review; Attention the links
	// that need a person (see LinkView.Attention).
	InStep    int `json:"inStep"`
	Attention int `json:"attention"`
	// Drift is what the last `cosell drift` found (nil: it never ran).
	Drift *DriftReport `json:"drift"`
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
	st.Drift, _ = a.LastDrift(ctx)
	if links, err := a.ListLinks(ctx); err == nil {
		st.Links = len(links)
		dls, _ := a.DeadLetters(ctx)
		for _, l := range links {
			st.LinkStates[l.State]++
			switch v := a.Records.View(l).Parked(dls); {
			case v.Attention != "":
				st.Attention++
			case l.State == contracts.LinkLinked:
				st.InStep++
			}
		}
	}
	return st
}

// Routes mounts the status API and page:
//
//	GET  /api/status                      lag, throughput, dead-letter depth, counts, links needing a person
//	GET  /api/links[?q=TEXT]              every link (deal, customer, value, both sides' status and record
//	                                      links), or those whose name, customer or id contains TEXT
//	GET  /api/links?id=ID                 one link (by referral, opportunity or link id) and its timeline
//	GET  /api/timeline?id=ID              the same, also for a record with no link yet
//	GET  /api/decisions                   the latest decisions, newest first
//	GET  /api/changes[?outcome=O]         the latest changes (decisions folded per change), newest first
//	GET  /api/history                     the last hour of lag and throughput samples
//	GET  /api/deadletters                 the parked messages
//	POST /api/deadletters/retry           re-drive all of them
//	GET  /api/deadletters/{seq}           one parked message, with its data
//	POST /api/deadletters/{seq}/retry     re-drive it
//	DELETE /api/deadletters/{seq}         purge it
//	GET  /  and  /link?id=ID|TEXT         the page, and a record's timeline page (or the deals TEXT finds)
//	POST /deadletters/{seq}/retry, /deadletters/retry   the page's re-drive buttons
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
			v := a.Records.View(*l)
			writeJSON(w, RecordView{Link: &v, Timeline: tl})
			return
		}
		views, err := a.Views(r.Context(), r.URL.Query().Get("q"))
		if err != nil {
			httpError(w, err)
			return
		}
		writeJSON(w, views)
	}))
	mux.Handle("/api/timeline", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, err := a.Lookup(r.Context(), strings.TrimSpace(r.URL.Query().Get("id")))
		if err != nil {
			httpError(w, err)
			return
		}
		out := RecordView{Timeline: rec.Timeline}
		if rec.Link != nil {
			v := a.Records.View(*rec.Link)
			out.Link = &v
		}
		writeJSON(w, out)
	}))
	mux.Handle("/api/decisions", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.Recent())
	}))
	mux.Handle("/api/changes", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.RecentChanges(r.URL.Query().Get("outcome")))
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
	if rest == "retry" {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "use POST /api/deadletters/retry to re-drive every dead letter", http.StatusMethodNotAllowed)
			return
		}
		n, err := a.RetryAll(r.Context())
		if err != nil {
			http.Error(w, fmt.Sprintf("%d re-driven; %v", n, err), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"retried": n})
		return
	}
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

// serveRedriveForm is the page's re-drive buttons: POST /deadletters/{seq}/retry or /deadletters/retry
// (all), then back to the page with what happened.
func (a *Auditor) serveRedriveForm(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/deadletters/"), "/")
	if r.Method != http.MethodPost {
		http.Error(w, "use POST /deadletters/{seq}/retry or POST /deadletters/retry (all)", http.StatusMethodNotAllowed)
		return
	}
	var msg string
	if rest == "retry" {
		n, err := a.RetryAll(r.Context())
		msg = fmt.Sprintf("re-driven %d dead letter(s)", n)
		if err != nil {
			msg += "; failed: " + err.Error()
			a.Log.Warn("re-drive of all dead letters from the page failed", "err", err)
		}
	} else {
		seqS, action, _ := strings.Cut(rest, "/")
		seq, err := strconv.ParseUint(seqS, 10, 64)
		if err != nil || seq == 0 || action != "retry" {
			http.Error(w, "use POST /deadletters/{seq}/retry or POST /deadletters/retry (all)", http.StatusBadRequest)
			return
		}
		msg = "re-driven dead letter " + seqS
		if en, err := a.Retry(r.Context(), seq); err != nil {
			msg = fmt.Sprintf("re-drive of dead letter %d failed: %v", seq, err)
			a.Log.Warn("re-drive from the page failed", "seq", seq, "err", err)
		} else if en.LinkID != "" {
			msg += " (link " + en.LinkID + ")"
		}
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
	views, _ := a.Views(ctx, "")
	dls, _ := a.DeadLetters(ctx)
	samples := a.History()
	outcome := r.URL.Query().Get("outcome")
	changes := a.RecentChanges(outcome)
	if len(changes) > 25 {
		changes = changes[:25]
	}
	deals := map[string]LinkView{}
	var attention []LinkView
	for _, v := range views {
		deals[v.ID] = v
		if v.Attention != "" {
			attention = append(attention, v)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplate.Execute(w, map[string]any{
		"Status": st, "Links": views, "Attention": attention, "Deals": deals, "Changes": changes,
		"Outcome": outcome, "Outcomes": Outcomes, "ID": "",
		"Now":   time.Now().UTC().Format("2006-01-02 15:04:05 UTC"),
		"Kinds": sortedKinds(st.Decisions), "DeadLetters": dls, "Flash": r.URL.Query().Get("flash"),
		"CSRF": a.Guard.CSRF(r), "Who": Who(ctx),
		"LagChart": chart("Backlog per consumer", "messages pending + in flight", samples, func(s Sample, n string) float64 {
			return float64(s.Lag[n])
		}),
		"ThroughputChart": chart("Throughput per consumer", "deliveries per minute", samples, func(s Sample, n string) float64 {
			return s.Throughput[n]
		}),
	}); err != nil {
		a.Log.Warn("status page", "err", err)
	}
}

// Views lists every link as the page shows it, most recently changed first; q (name, customer or id,
// case-insensitive) keeps those that contain it. A link with a parked message needs attention too.
func (a *Auditor) Views(ctx context.Context, q string) ([]LinkView, error) {
	links, err := a.ListLinks(ctx)
	if err != nil {
		return nil, err
	}
	dls, _ := a.DeadLetters(ctx)
	out := []LinkView{}
	for _, l := range links {
		if v := a.Records.View(l); v.Matches(q) {
			out = append(out, v.Parked(dls))
		}
	}
	return out, nil
}

// RecentChanges folds the latest decisions into changes, newest first; outcome (one of Outcomes) keeps
// only the changes that ended so.
func (a *Auditor) RecentChanges(outcome string) []Change {
	recent := a.Recent()
	slices.Reverse(recent)
	all := Changes(recent)
	out := []Change{}
	for _, c := range all {
		if outcome == "" || c.Outcome == outcome {
			out = append(out, c)
		}
	}
	return out
}

// linkPage shows a record's timeline: by referral, opportunity or link id, or, for any other text, the
// deal whose name, customer or id contains it (a list when several do).
func (a *Auditor) linkPage(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	ctx := r.Context()
	data := map[string]any{"ID": id, "Who": Who(ctx), "CSRF": a.Guard.CSRF(r),
		"Now": time.Now().UTC().Format("2006-01-02 15:04:05 UTC")}
	rec, err := a.Lookup(ctx, id)
	if errors.Is(err, ErrNoLink) && id != "" {
		if found, ferr := a.Views(ctx, id); ferr == nil {
			switch len(found) {
			case 0:
				err = fmt.Errorf("no deal, customer or record id contains %q", id)
			case 1:
				rec, err = a.Lookup(ctx, found[0].ID)
			default:
				data["Found"] = found
				err = nil
			}
		}
	}
	if rec.Link != nil {
		v := a.Records.View(*rec.Link)
		data["Deal"] = v
		data["Steps"] = timelineRows(rec.Timeline)
	} else if len(rec.Timeline) > 0 {
		data["Steps"] = timelineRows(rec.Timeline)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err != nil && !errors.Is(err, ErrNoLink) && !strings.HasPrefix(err.Error(), "no deal") {
		w.WriteHeader(http.StatusInternalServerError)
	} else if err != nil {
		w.WriteHeader(http.StatusNotFound)
	}
	data["Err"] = err
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
