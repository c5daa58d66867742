package pcapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// APIError is a call Partner Center (or Entra ID) answered with an error status.
type APIError struct {
	Status     int
	Code       string // Partner Center error code (itemNotFound, preconditionFailed, ...) or the Entra ID error
	Message    string
	Target     string
	RetryAfter time.Duration // from Retry-After on 429/503
	Op         string        // e.g. referrals.patch
	ReferralID string
}

func (e *APIError) Error() string {
	s := "pcapi: " + e.Op
	if e.ReferralID != "" {
		s += " referral " + e.ReferralID
	}
	s += fmt.Sprintf(": %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Target != "" {
		s += " (target " + e.Target + ")"
	}
	return s
}

// NetworkError is a call that got no HTTP answer; it is transient.
type NetworkError struct {
	Op, ReferralID string
	Err            error
}

func (e *NetworkError) Error() string {
	if e.ReferralID != "" {
		return fmt.Sprintf("pcapi: %s referral %s: %v", e.Op, e.ReferralID, e.Err)
	}
	return fmt.Sprintf("pcapi: %s: %v", e.Op, e.Err)
}

func (e *NetworkError) Unwrap() error { return e.Err }

func status(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// IsNotFound reports a 404: the referral (or registration) does not exist.
func IsNotFound(err error) bool { return status(err) == http.StatusNotFound }

// IsPreconditionFailed reports a 412: the If-Match eTag is stale, so the caller should re-read and re-decide.
func IsPreconditionFailed(err error) bool { return status(err) == http.StatusPreconditionFailed }

// IsConflict reports a 409, e.g. an edit of a closed referral or a second webhook registration.
func IsConflict(err error) bool { return status(err) == http.StatusConflict }

// IsThrottled reports a 429 and how long Partner Center asked to wait (at least one second).
func IsThrottled(err error) (time.Duration, bool) {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests {
		return 0, false
	}
	return max(ae.RetryAfter, time.Second), true
}

// IsTransient reports an error worth retrying later: 408, 429, 5xx, 509 and network failures. Everything
// else (400, 401 after a token refresh, 403, 404, 409, 412) is permanent for the same request.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	// Entra ID refusing a token (an expired or revoked sign-in, a wrong secret) is fixed by the operator
	// (`cosell pc login`, a new secret), not by the record: retry later rather than fail every command.
	if ae := (*AuthError)(nil); errors.As(err, &ae) {
		return true
	}
	if s := status(err); s != 0 {
		return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500
	}
	var ne *NetworkError
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}
