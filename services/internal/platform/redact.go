package platform

import (
	"log/slog"
	"net/url"
	"regexp"
	"strings"
)

// redacted replaces a secret in a log line or an error message.
const redacted = "REDACTED"

// urlInText finds URLs (scheme://...) inside free text, up to the first character that cannot be part of one.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>` + "`" + `]+`)

// secretParams are query parameters that carry a credential (OAuth tokens and codes, signed URLs' signatures,
// API keys, passwords); their values never reach a log.
var secretParams = map[string]bool{
	"access_token": true, "refresh_token": true, "id_token": true, "token": true, "code": true,
	"client_secret": true, "password": true, "pass": true, "pwd": true, "secret": true, "apikey": true,
	"api_key": true, "key": true, "sig": true, "signature": true, "auth": true, "authorization": true,
	"x-amz-signature": true, "x-amz-credential": true, "x-amz-security-token": true, "sessionid": true, "sid": true,
}

// Redact returns s with the credentials of every URL in it replaced: the password of userinfo
// (nats://user:pass@host, https://user:pass@host; a lone user part, which NATS takes as a token, too) and the
// values of query parameters that carry a secret (token, access_token, code, sig, password, ...). Logs and
// error messages go through it (NewLogger, LoadConfig, Connect), so a connection URL an operator configured
// with its credentials is never written out whole.
func Redact(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, redactURL)
}

func redactURL(raw string) string {
	// A URL at the end of a sentence keeps its full stop or comma outside.
	trail := ""
	for strings.HasSuffix(raw, ".") || strings.HasSuffix(raw, ",") || strings.HasSuffix(raw, ")") || strings.HasSuffix(raw, ";") {
		trail = raw[len(raw)-1:] + trail
		raw = raw[:len(raw)-1]
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Unparseable: keep the scheme and host part only when there is no userinfo to hide.
		if i := strings.Index(raw, "@"); i >= 0 {
			return raw[:strings.Index(raw, "://")+3] + redacted + raw[i:] + trail
		}
		return raw + trail
	}
	changed := false
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), redacted)
		} else {
			// nats://TOKEN@host: a lone user part is a token to NATS.
			u.User = url.User(redacted)
		}
		changed = true
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if secretParams[strings.ToLower(k)] {
				q[k] = []string{redacted}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if u.Fragment != "" && strings.Contains(u.Fragment, "token=") {
		// The implicit flow's #access_token=...: never logged.
		u.Fragment = redacted
		changed = true
	}
	if !changed {
		return raw + trail
	}
	return u.String() + trail
}

// redactAttr is the ReplaceAttr of every cosell logger: string values and errors go through Redact.
func redactAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); strings.Contains(s, "://") {
			a.Value = slog.StringValue(Redact(s))
		}
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			if s := v.Error(); strings.Contains(s, "://") {
				a.Value = slog.StringValue(Redact(s))
			}
		case interface{ String() string }:
			if s := v.String(); strings.Contains(s, "://") {
				a.Value = slog.StringValue(Redact(s))
			}
		}
	}
	return a
}

// LogHandlerOptions are the options of every cosell JSON logger: the level, and Redact on every value.
func LogHandlerOptions(level string) *slog.HandlerOptions {
	return &slog.HandlerOptions{Level: ParseLevel(level), ReplaceAttr: redactAttr}
}
