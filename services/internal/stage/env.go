package stage

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// Env is what a stage's build gets from the composition root: everything that differs between a stage
// running as its own process (Main) and inside the in-process system (internal/harness/stack).
type Env struct {
	// Stage is the stage's name.
	Stage string
	// Log is the stage's logger (it carries the stage attribute).
	Log *slog.Logger
	// Bus is the stage's own connection to NATS JetStream, streams and buckets already provisioned.
	Bus *platform.Bus
	// Routes takes HTTP routes a stage adds (the auditor's status API and page): the admin port of a
	// process, the status address of the in-process system.
	Routes Routes
	// Registry takes a stage's own collectors, served on /metrics with the runtime's.
	Registry prometheus.Registerer
	// Clients are the stage's metrics of its Partner Center and Salesforce clients; each client built by
	// PCClient or SFClient reports into them through an observer of its own (nil: no metrics).
	Clients *ClientMetrics
	// Listener opens the listener a stage serves outside traffic on (pc-ingest's webhook); nil =
	// net.Listen. The in-process system hands out one that keeps its address across pipeline restarts.
	Listener func(addr string) (net.Listener, error)
	// Consume tunes the stage's consumer loops; zero values take the defaults (the in-process system
	// shortens the waits so tests run fast).
	Consume platform.ConsumeOptions
	// AfterWrite, when set, is called by a writer between its external write and its outcome, and by the
	// mapper between its store of a link (with the link id) and the publishing of that link's outbox: the
	// crash tests stop the pipeline exactly there.
	AfterWrite func(id string)
}

// Routes is where a stage mounts HTTP routes.
type Routes interface {
	Handle(pattern string, h http.Handler)
}

// Listen opens a TCP listener on addr through Listener.
func (e *Env) Listen(addr string) (net.Listener, error) {
	if e.Listener != nil {
		return e.Listener(addr)
	}
	return net.Listen("tcp", addr)
}

// PCClient builds the stage's Partner Center client, with an HTTP client of its own and its calls and
// sign-in health reported into the stage's metrics; every stage builds its clients here.
func (e *Env) PCClient(ctx context.Context, c PCConfig) (*pcapi.Client, error) {
	return c.Client(ctx, e.Log, e.Bus, e.Clients)
}

// SFClient logs the stage's Salesforce client in, its calls reported into the stage's metrics; every stage
// builds its clients here. A login Salesforce refuses for a passing reason — a spent daily API allowance
// (REQUEST_LIMIT_EXCEEDED on the token check), an outage, a 500 — is tried again, logged, every
// sfLoginRetry until ctx is done, so the stage waits it out before it reports ready instead of exiting (a
// pod restarted during the outage would otherwise crash-loop); a refused login (a wrong secret, key or
// user, from the token endpoint) and a settings mistake return at once.
func (e *Env) SFClient(ctx context.Context, c sfapi.Config) (*sfapi.Client, error) {
	c.Observer = e.Clients.Observer(contracts.Salesforce)
	for attempt := uint64(1); ; attempt++ {
		client, err := sfapi.New(ctx, c)
		if err == nil || !sfapi.IsRefusedForNow(err) {
			return client, err
		}
		wait := platform.Backoff(attempt, sfLoginRetry, 30*time.Second)
		if e.Log != nil {
			e.Log.Warn("Salesforce refused the login for now; trying again before the stage reports ready", "err", err, "retry", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// sfLoginRetry is the first wait between logins Salesforce refused for now (doubling to 30 s).
var sfLoginRetry = time.Second
