// Package apicalltest holds an apicall.Observer for tests: one that keeps what it is told.
package apicalltest

import (
	"slices"
	"sync"

	"github.com/cosell-dev/cosell/services/internal/clients/apicall"
)

// Recorder keeps every call reported to its Observe method; safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	calls []apicall.Call
}

// Observe is an apicall.Observer: pass r.Observe in a client's config.
func (r *Recorder) Observe(c apicall.Call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

// Calls returns the calls reported so far, in order, with Elapsed zeroed so they compare by value.
func (r *Recorder) Calls() []apicall.Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.calls)
	for i := range out {
		out[i].Elapsed = 0
	}
	return out
}

// Ops returns the operation of every call reported so far, in order.
func (r *Recorder) Ops() []string {
	var out []string
	for _, c := range r.Calls() {
		out = append(out, c.Op)
	}
	return out
}
