package stage

import (
	"net/http"
	"strconv"
	"time"

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
