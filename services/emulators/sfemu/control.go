package sfemu

import (
	"errors"
	"net/http"
	"time"
)

// FaultRequest is the body of POST /_emulator/faults; absent fields leave a fault as it is.
type FaultRequest struct {
	LatencyMs         *int `json:"latencyMs,omitempty"`
	FailNextCalls     *int `json:"failNextCalls,omitempty"`
	LockNextWrites    *int `json:"lockNextWrites,omitempty"`
	ExpireSessions    bool `json:"expireSessions,omitempty"`
	ExhaustDailyLimit bool `json:"exhaustDailyLimit,omitempty"`
	Reset             bool `json:"reset,omitempty"`
}

// serveControl serves /_emulator/: counts, faults, and record writes and reads as a Salesforce user. These
// calls need no token and do not count against the API allowance.
func (e *Emulator) serveControl(w http.ResponseWriter, r *http.Request, segs []string) {
	if len(segs) == 0 {
		writeError(w, errNotFound())
		return
	}
	switch {
	case segs[0] == "counts" && len(segs) == 1:
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, e.Counts())
		case http.MethodDelete:
			e.ResetCounts()
			w.WriteHeader(http.StatusNoContent)
		default:
			writeError(w, methodNotAllowed(r.Method, "GET", "DELETE"))
		}
	case segs[0] == "faults" && len(segs) == 1:
		switch r.Method {
		case http.MethodPost:
			b, err := readBody(r)
			if err != nil {
				writeError(w, err)
				return
			}
			var req FaultRequest
			if err := decodeBody(b, &req); err != nil {
				writeError(w, err)
				return
			}
			e.applyFaults(req)
			writeJSON(w, http.StatusOK, e.faultState())
		case http.MethodGet:
			writeJSON(w, http.StatusOK, e.faultState())
		default:
			writeError(w, methodNotAllowed(r.Method, "GET", "POST"))
		}
	case segs[0] == "leads" && len(segs) >= 2:
		e.serveLeadControl(w, r, segs)
	case segs[0] == "pubsub" && len(segs) == 1:
		e.servePubSubControl(w, r)
	case segs[0] == "sobjects" && len(segs) == 4 && segs[3] == "undelete" && r.Method == http.MethodPost:
		if err := e.Undelete(segs[1], segs[2]); err != nil {
			var apiErr *APIError
			if errors.As(err, &apiErr) {
				writeError(w, apiErr)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	case segs[0] == "sobjects" && len(segs) >= 2:
		e.serveControlRecords(w, r, segs)
	default:
		writeError(w, errNotFound())
	}
}

func (e *Emulator) applyFaults(req FaultRequest) {
	if req.Reset {
		e.ResetFaults()
	}
	if req.LatencyMs != nil {
		e.SetLatency(time.Duration(*req.LatencyMs) * time.Millisecond)
	}
	if req.FailNextCalls != nil {
		e.FailNextCalls(*req.FailNextCalls)
	}
	if req.LockNextWrites != nil {
		e.LockNextWrites(*req.LockNextWrites)
	}
	if req.ExpireSessions {
		e.ExpireSessions()
	}
	if req.ExhaustDailyLimit {
		e.ExhaustDailyLimit()
	}
}

func (e *Emulator) faultState() map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	return map[string]any{"latencyMs": e.faults.latency.Milliseconds(), "failNextCalls": e.faults.fail,
		"lockNextWrites": e.faults.lockRows, "apiUsed": e.apiUsed, "dailyApiLimit": e.opts.DailyAPILimit,
		"sessions": len(e.sessions)}
}

func (e *Emulator) serveControlRecords(w http.ResponseWriter, r *http.Request, segs []string) {
	const version = "v62.0"
	e.mu.Lock()
	defer e.mu.Unlock()
	defer e.commitChanges("")
	o, err := e.object(segs[1])
	if err != nil {
		writeError(w, err)
		return
	}
	switch {
	case len(segs) == 2 && r.Method == http.MethodGet && r.URL.Query().Get("count") == "true":
		// A count without the records (the shape of a SOQL COUNT() query's answer), so a harness can wait
		// for records without the emulator rendering all of them on each poll: ?notNull=Field counts only
		// the rows where that field holds a value.
		var with *field
		if name := r.URL.Query().Get("notNull"); name != "" {
			if with = o.field(name); with == nil {
				writeError(w, badRequest("INVALID_FIELD", "No such column '%s' on entity '%s'.", name, o.Name))
				return
			}
		}
		n := 0
		for _, rec := range e.st.tables[o].rows {
			if rec["IsDeleted"] != true && (with == nil || rec[with.Name] != nil) {
				n++
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"totalSize": n, "done": true, "records": []any{}})
	case len(segs) == 2 && r.Method == http.MethodGet:
		tb := e.st.tables[o]
		records := []*orderedMap{}
		for _, id := range tb.order {
			if rec := tb.rows[id]; rec["IsDeleted"] != true {
				records = append(records, renderRecord(o, rec, nil, version))
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"totalSize": len(records), "done": true, "records": records})
	case len(segs) == 2 && r.Method == http.MethodPost:
		body, err := readObject(r)
		if err != nil {
			writeError(w, err)
			return
		}
		id, err := e.insert(o.Name, body)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, saveResult{ID: id, Success: true, Errors: []resultError{}})
	case len(segs) == 3 && r.Method == http.MethodGet:
		id, err := pathID(o, segs[2])
		if err != nil {
			writeError(w, err)
			return
		}
		rec := e.st.tables[o].rows[id]
		if rec == nil {
			writeError(w, errNotFound())
			return
		}
		writeJSON(w, http.StatusOK, renderRecord(o, rec, nil, version))
	case len(segs) == 3 && r.Method == http.MethodPatch:
		body, err := readObject(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if err := e.update(o.Name, segs[2], body); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case len(segs) == 3 && r.Method == http.MethodDelete:
		id, err := pathID(o, segs[2])
		if err != nil {
			writeError(w, err)
			return
		}
		if err := e.st.remove(o, id, writeOpts{actor: e.userID}); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, errNotFound())
	}
}

// PubSubRequest is the body of POST /_emulator/pubsub: faults of the event bus behind the Pub/Sub API.
type PubSubRequest struct {
	// GapNextChanges makes the next n change events GAP_ events (no field data: re-read by REST).
	GapNextChanges *int `json:"gapNextChanges,omitempty"`
	// Overflow publishes a GAP_OVERFLOW event for the named object.
	Overflow string `json:"overflow,omitempty"`
	// ExpireEvents drops every retained event, as if 72 hours had passed: stored replay ids become invalid.
	ExpireEvents bool `json:"expireEvents,omitempty"`
	// ResetStreams ends every open Subscribe stream with UNAVAILABLE.
	ResetStreams bool `json:"resetStreams,omitempty"`
}

// servePubSubControl serves /_emulator/pubsub: GET describes the event bus (channels, retained events),
// POST applies a PubSubRequest.
func (e *Emulator) servePubSubControl(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		b, err := readBody(r)
		if err != nil {
			writeError(w, err)
			return
		}
		var req PubSubRequest
		if err := decodeBody(b, &req); err != nil {
			writeError(w, err)
			return
		}
		if req.Overflow != "" {
			if err := e.Overflow(req.Overflow); err != nil {
				writeError(w, badRequest("INVALID_TYPE", "%v", err).withFields("overflow"))
				return
			}
		}
		if req.GapNextChanges != nil {
			e.GapNextChanges(*req.GapNextChanges)
		}
		if req.ExpireEvents {
			e.ExpireEvents()
		}
		if req.ResetStreams {
			e.ResetStreams()
		}
	default:
		writeError(w, methodNotAllowed(r.Method, "GET", "POST"))
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	channels := []string{AllChangeEvents}
	for _, o := range cdcObjects {
		if e.bus.byObject[o] != nil {
			channels = append(channels, ChannelName(o))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"channels": channels, "retainedEvents": len(e.bus.events),
		"gapNextChanges": e.bus.gapNext})
}
