package stage

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/clients/apicall"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// ClientMetrics are one stage's metrics of its Partner Center and Salesforce clients: their calls
// (platform.APIMetrics) and the health of the Partner Center sign-in. Each stage registers its own on its
// own registry and each client it builds reports through an observer of its own, so the stages of `cosell
// run`, and two stacks in one test binary, never report into each other's metrics.
type ClientMetrics struct {
	API *platform.APIMetrics
	// pcRefreshExpiry and pcRefreshFailures let an alert fire before the refresh token bites
	// (the PrometheusRule in deploy/k8s/components/monitoring): when the stored refresh token expires if left unused (Entra ID:
	// 90 days after its last rotation), and how often Entra ID refused it.
	pcRefreshExpiry   prometheus.Gauge
	pcRefreshFailures prometheus.Counter
}

// NewClientMetrics builds a stage's client metrics and registers them on reg (nil: unregistered).
func NewClientMetrics(reg prometheus.Registerer) *ClientMetrics {
	m := &ClientMetrics{
		API: platform.NewAPIMetrics(reg),
		pcRefreshExpiry: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cosell", Name: "pc_refresh_token_expiry_timestamp_seconds",
			Help: "Unix time at which the stored Partner Center refresh token expires if unused (90 days after its last rotation); renew with cosell pc login."}),
		pcRefreshFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cosell", Name: "pc_refresh_token_failures_total",
			Help: "Refresh-token exchanges Entra ID refused (expired, revoked, MFA required); fix with cosell pc login."}),
	}
	if reg != nil {
		reg.MustRegister(m.pcRefreshExpiry, m.pcRefreshFailures)
	}
	return m
}

// Observer returns an observer for one client of system: requests by endpoint and status (the HTTP status,
// or "error" when no response came back), latency, and the API allowance left when the system tells it.
// A nil m observes nothing.
func (m *ClientMetrics) Observer(system contracts.System) apicall.Observer {
	if m == nil {
		return nil
	}
	return func(c apicall.Call) {
		m.API.ObserveHTTPCall(system, c.Op, c.Status, c.Elapsed)
		if c.Limit > 0 {
			m.API.SetBudget(system, c.Used, c.Limit)
		}
	}
}

// onPCRefresh is the Partner Center client's pcapi.Config.OnRefresh; nil when m is nil.
func (m *ClientMetrics) onPCRefresh() func(expires time.Time, err error) {
	if m == nil {
		return nil
	}
	return func(expires time.Time, err error) {
		if err != nil {
			m.pcRefreshFailures.Inc()
		}
		if !expires.IsZero() {
			m.pcRefreshExpiry.Set(float64(expires.Unix()))
		}
	}
}
