package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRedactHidesCredentialsInURLs(t *testing.T) {
	cases := []struct{ in, want string }{
		{"nats://cosell:s3cret@nats.example:4222", "nats://cosell:REDACTED@nats.example:4222"},
		{"connect nats://tok3n@127.0.0.1:4222 failed", "connect nats://REDACTED@127.0.0.1:4222 failed"},
		{`dial "https://admin:hunter2@sf.example/services" refused.`, `dial "https://admin:REDACTED@sf.example/services" refused.`},
		{"GET https://login.example/cb?code=abc&state=xyz", "GET https://login.example/cb?code=REDACTED&state=xyz"},
		{"https://x.example/a?access_token=eyJ.x.y&page=2", "https://x.example/a?access_token=REDACTED&page=2"},
		{"two: nats://a:b@h1:1, nats://c:d@h2:2", "two: nats://a:REDACTED@h1:1, nats://c:REDACTED@h2:2"},
		{"https://blob.example/f?sv=2020&sig=AbC%2Bd", "https://blob.example/f?sig=REDACTED&sv=2020"},
		{"https://app.example/#access_token=abc", "https://app.example/#REDACTED"},
		{"nothing secret: https://api.partner.microsoft.com/v1.0/engagements/referrals?$top=10", "nothing secret: https://api.partner.microsoft.com/v1.0/engagements/referrals?$top=10"},
		{"no url at all: password=x", "no url at all: password=x"},
	}
	for _, c := range cases {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

// TestLogsAndConfigErrorsNeverCarryAURLsCredentials: a log line through the stages' logger (message, string
// attribute, error attribute, a Stringer) and a config error about a bad value both come out redacted.
func TestLogsAndConfigErrorsNeverCarryAURLsCredentials(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, "debug", "test")
	log.Info("connecting to nats://u:pw1@h:4222", "url", "nats://u:pw2@h:4222",
		"err", fmt.Errorf("bus: %w", errors.New("dial https://u:pw3@h/x?token=pw4")), "target", stringer("https://u:pw5@h"))
	log.WithGroup("g").Debug("in a group", "url", "nats://u:pw6@h:4222")
	out := buf.String()
	for i := 1; i <= 6; i++ {
		if strings.Contains(out, fmt.Sprintf("pw%d", i)) {
			t.Errorf("log carries secret pw%d:\n%s", i, out)
		}
	}
	if strings.Count(out, "REDACTED") != 6 {
		t.Errorf("want 6 redactions in the log, got:\n%s", out)
	}

	var cfg struct {
		URL string `env:"X_URL" validate:"url"`
	}
	err := LoadConfig(&cfg, envMap(map[string]string{"X_URL": "/relative?token=pw7&u=nats://a:pw8@h"}))
	if err == nil || strings.Contains(err.Error(), "pw8") || !strings.Contains(err.Error(), "X_URL") {
		t.Errorf("config error: %v", err)
	}
}

// TestConnectErrorRedactsTheURL: an unreachable server named with credentials gives an error without them.
func TestConnectErrorRedactsTheURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var buf bytes.Buffer
	_, err := Connect(ctx, BusConfig{URL: "nats://cosell:pw9@127.0.0.1:1"}, "test", NewLogger(&buf, "info", "test"), nil)
	if err == nil || strings.Contains(err.Error(), "pw9") || strings.Contains(buf.String(), "pw9") {
		t.Errorf("connect error %v; log:\n%s", err, buf.String())
	}
	if !strings.Contains(err.Error(), "cosell:REDACTED@127.0.0.1:1") {
		t.Errorf("connect error should still name the server: %v", err)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }
