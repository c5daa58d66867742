package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

// opsStack starts the whole system on the real embedded server and writes the KEY=VALUE file the admin
// commands read the Partner Center and Salesforce settings from.
func opsStack(t *testing.T, mod func(*stack.Options)) (*stack.Stack, []string) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("COSELL_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts := stack.Options{
		DataDir: t.TempDir(), Log: log,
		Vars: map[string]string{"COSELL_SF_POLL_INTERVAL": "200ms", "COSELL_ACK_WAIT": "2s", "COSELL_MAX_DELIVER": "3",
			"COSELL_AUDIT_SUMMARY_INTERVAL": "0"},
		Consume: platform.ConsumeOptions{MaxWait: 200 * time.Millisecond, BackoffBase: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := stack.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Stop)
	file := filepath.Join(t.TempDir(), "cosell.env")
	conf := fmt.Sprintf(`COSELL_PC_URL=%s
COSELL_PC_WEBHOOKS_URL=%s
COSELL_PC_AUTHORITY=%s
COSELL_PC_CLIENT_ID=%s
COSELL_SF_URL=%s
COSELL_SF_CLIENT_ID=%s
COSELL_SF_CLIENT_SECRET=%s
`, s.PCURL, s.PCURL, s.PC.Authority(), s.PC.ClientID(), s.SFURL, stack.SFClientID, stack.SFClientSecret)
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return s, []string{"--nats", s.NATS.ClientURL(), "--config", file}
}

// cli runs one cosell command line in-process and returns its exit code and output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// admin runs an admin command with the connection flags placed right after the command name.
func admin(t *testing.T, conn []string, cmd string, rest ...string) (int, string, string) {
	t.Helper()
	return cli(t, append(append([]string{cmd}, conn...), rest...)...)
}

func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s; last state: %s", what, within, last)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not a wait for state
	}
}

// quiet waits until every consumer is caught up and sf-ingest polled three more times.
func quiet(t *testing.T, s *stack.Stack) {
	t.Helper()
	q0 := sfReads(s)
	eventually(t, 20*time.Second, "quiescence", func() (bool, string) {
		if n := sfReads(s); n < q0+3 {
			return false, fmt.Sprintf("%d polls so far", n-q0)
		}
		for _, l := range s.Auditor.Status(context.Background()).Lag {
			if l.Pending+l.AckPending > 0 {
				return false, fmt.Sprintf("%s pending %d ack-pending %d", l.Consumer, l.Pending, l.AckPending)
			}
		}
		return true, ""
	})
}

// sfReads counts the Salesforce reads so far (sf-ingest's polls among them).
func sfReads(s *stack.Stack) int {
	n := 0
	for k, v := range s.SF.Counts() {
		if strings.Contains(k, "query") {
			n += v
		}
	}
	return n
}

func sellerReferral(name string, value float64) pc.Referral {
	return pc.Referral{
		Name: name,
		CustomerProfile: &pc.CustomerProfile{Name: name + " Customer", Address: &pc.Address{
			AddressLine1: "One Microsoft Way", City: "Redmond", State: "WA", PostalCode: "98052", Country: "US"}},
		Consent: &pc.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true},
		Details: &pc.Details{DealValue: &value, Currency: "USD", ClosingDateTime: "2027-02-15T00:00:00Z", Notes: "Wants a pilot"},
	}
}

func opportunitiesFor(s *stack.Stack, referralID string) []map[string]any {
	var out []map[string]any
	for _, o := range s.SF.All(sf.ObjectOpportunity) {
		if o[sf.FieldReferralIdentifier] == referralID {
			out = append(out, o)
		}
	}
	return out
}

// referralSynced creates a Microsoft referral and waits for its Opportunity.
func referralSynced(t *testing.T, s *stack.Stack, name string, value float64) (pc.Referral, string) {
	t.Helper()
	r, err := s.PC.SellerCreate(sellerReferral(name, value))
	if err != nil {
		t.Fatal(err)
	}
	var oppID string
	eventually(t, 20*time.Second, "opportunity for "+name, func() (bool, string) {
		opps := opportunitiesFor(s, r.ID)
		if len(opps) != 1 {
			return false, fmt.Sprintf("%d opportunities", len(opps))
		}
		oppID = fmt.Sprint(opps[0][sf.FieldID])
		return true, ""
	})
	return r, oppID
}

func TestAdminCommandsHaveHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"status", "replay", "dlq", "drift"} {
		code, _, errOut := cli(t, cmd, "--help")
		if code != 0 || !strings.Contains(errOut, "cosell "+cmd+" —") || !strings.Contains(errOut, "-nats") {
			t.Errorf("cosell %s --help: code %d, output:\n%s", cmd, code, errOut)
		}
	}
	code, out, _ := cli(t, "--help")
	for _, cmd := range []string{"status", "replay", "dlq", "drift"} {
		if code != 0 || !strings.Contains(out, "  "+cmd+" ") {
			t.Errorf("cosell --help does not list %s:\n%s", cmd, out)
		}
	}
	if code, _, errOut := cli(t, "replay", "--stream", contracts.StreamRequested); code != 2 || !strings.Contains(errOut, "exactly one of --since or --from-seq") {
		t.Errorf("replay without a start point: code %d, %s", code, errOut)
	}
}

func TestStatusCommand(t *testing.T) {
	t.Parallel()
	s, conn := opsStack(t, nil)
	referralSynced(t, s, "Contoso status", 1000)
	quiet(t, s)
	code, out, errOut := admin(t, conn, "status")
	if code != 0 {
		t.Fatalf("status: code %d: %s", code, errOut)
	}
	for _, want := range []string{"SERVICE", "mapper", "sf-writer", "pc-ingest", "last observed event",
		"CONSUMER", "mapper-observed", "auditor-dlq", "DEAD LETTERS  0", "LINKS         1  (linked 1)",
		"API BUDGET", "daily API calls left", "not throttled"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	used, max := s.SF.APIUsage()
	if !strings.Contains(out, fmt.Sprintf("of %d daily API calls left", max)) || used == 0 {
		t.Errorf("status shows no Salesforce budget of %d (used %d):\n%s", max, used, out)
	}
	code, out, _ = admin(t, conn, "status", "--json", "--no-api")
	if code != 0 || !strings.Contains(out, `"deadLetters": 0`) || strings.Contains(out, "daily API calls") {
		t.Errorf("status --json --no-api: code %d:\n%s", code, out)
	}
}
