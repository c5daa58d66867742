package sfapi

import (
	"errors"
	"sync/atomic"
	"time"
)

// CallObserver is told about every REST call to Salesforce: the operation (e.g. "query", "update"), the HTTP
// status (0 when no response came back), the Salesforce error code ("" on success), how long it took and
// the daily allowance as known after the call. Metrics are wired through it, so this package stays free
// of any metrics library.
type CallObserver func(op string, status int, code string, elapsed time.Duration, usage Usage)

var callObserver atomic.Pointer[CallObserver]

// SetCallObserver installs the process-wide observer (nil removes it). Every Client reports to it.
func SetCallObserver(f CallObserver) {
	if f == nil {
		callObserver.Store(nil)
		return
	}
	callObserver.Store(&f)
}

func (c *Client) observeCall(op string, status int, err error, start time.Time) {
	f := callObserver.Load()
	if f == nil {
		return
	}
	code := ""
	var se *Error
	if errors.As(err, &se) {
		code = se.Code
	} else if err != nil {
		code = "error"
	}
	(*f)(op, status, code, time.Since(start), c.Usage())
}
