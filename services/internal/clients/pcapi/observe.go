package pcapi

import (
	"net/http"
	"sync/atomic"
	"time"
)

// CallObserver is told about every call to Partner Center: the endpoint (e.g. "referrals.get"), the HTTP
// status (0 when no response came back), how long it took and the response headers (nil without one).
// Metrics are wired through it, so this package stays free of any metrics library.
type CallObserver func(endpoint string, status int, elapsed time.Duration, header http.Header)

var callObserver atomic.Pointer[CallObserver]

// SetCallObserver installs the process-wide observer (nil removes it). Every Client reports to it.
func SetCallObserver(f CallObserver) {
	if f == nil {
		callObserver.Store(nil)
		return
	}
	callObserver.Store(&f)
}

func observeCall(endpoint string, status int, start time.Time, header http.Header) {
	if f := callObserver.Load(); f != nil {
		(*f)(endpoint, status, time.Since(start), header)
	}
}
