// Package apicall is what cosell's API clients (pcapi, sfapi) report about each HTTP call they make. Each
// client is given its own Observer in its config, so two clients in one process (the six stages of
// `cosell run`, two stacks in one test binary) never report into each other's metrics, and neither client
// depends on a metrics library.
package apicall

import "time"

// Call is one HTTP call to an external API.
type Call struct {
	// Op names the operation, e.g. "referrals.get", "token", "query", "collections.update".
	Op string
	// Status is the HTTP status; 0 when no response came back (network failure, timeout, cancellation).
	Status int
	// Code is the service's error code ("" on success, "error" when the failure has no code).
	Code    string
	Elapsed time.Duration
	// Used and Limit are the API allowance as known after the call (Salesforce's daily API requests from
	// Sforce-Limit-Info); Limit is 0 when the service has not told it.
	Used, Limit int
}

// Observer is told about every call a client makes. A nil Observer observes nothing.
type Observer func(Call)

// Observe reports c, if o is set. Clients call it once per HTTP call.
func (o Observer) Observe(c Call) {
	if o != nil {
		o(c)
	}
}
