package stage

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// InstrumentClients reports every Partner Center and Salesforce call this process makes into m: requests
// by endpoint and status, latency, and the Salesforce daily allowance left. The status label is the HTTP
// status, or "error" when no response came back.
func InstrumentClients(m *platform.APIMetrics) {
	pcapi.SetCallObserver(func(endpoint string, status int, elapsed time.Duration, _ http.Header) {
		m.ObserveHTTPCall(contracts.PartnerCenter, endpoint, status, elapsed)
	})
	sfapi.SetCallObserver(func(op string, status int, code string, elapsed time.Duration, usage sfapi.Usage) {
		s := "error"
		if status > 0 {
			s = strconv.Itoa(status)
		}
		m.ObserveCall(contracts.Salesforce, op, s, elapsed)
		if usage.Known() {
			m.SetBudget(contracts.Salesforce, usage.Used, usage.Max)
		}
	})
}

// pcRefreshExpiry and pcRefreshFailures report the Partner Center sign-in's health, so an alert fires before
// the refresh token bites (the PrometheusRule in deploy/k8s/components/monitoring): when the stored refresh token expires if left
// unused (Entra ID: 90 days after its last rotation), and how often Entra ID refused it.
var (
	pcRefreshExpiry = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "cosell", Name: "pc_refresh_token_expiry_timestamp_seconds",
		Help: "Unix time at which the stored Partner Center refresh token expires if unused (90 days after its last rotation); renew with cosell pc login."})
	pcRefreshFailures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "cosell", Name: "pc_refresh_token_failures_total",
		Help: "Refresh-token exchanges Entra ID refused (expired, revoked, MFA required); fix with cosell pc login."})
	pcRefreshOnce sync.Once
)

// InstrumentPCAuth registers the Partner Center sign-in metrics on reg (once per process).
func InstrumentPCAuth(reg prometheus.Registerer) {
	pcRefreshOnce.Do(func() {
		if reg != nil {
			reg.MustRegister(pcRefreshExpiry, pcRefreshFailures)
		}
	})
}

func observeRefreshToken(expires time.Time, err error) {
	if err != nil {
		pcRefreshFailures.Inc()
	}
	if !expires.IsZero() {
		pcRefreshExpiry.Set(float64(expires.Unix()))
	}
}
