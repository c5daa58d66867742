package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// opsStack starts the whole system on the real embedded server and writes the KEY=VALUE file the admin
// commands read the Partner Center and Salesforce settings from.
func opsStack(t *testing.T, mod func(*stack.Options)) (*stack.Stack, []string) {
	t.Helper()
	opts := stacktest.Options(t)
	opts.Vars["COSELL_MAX_DELIVER"] = "3"
	opts.Consume.BackoffMax = 500 * time.Millisecond
	if mod != nil {
		mod(&opts)
	}
	s := stacktest.Start(t, opts)
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

// referralSynced creates a Microsoft referral and waits for its Opportunity.
func referralSynced(t *testing.T, s *stack.Stack, name string, value float64) (pc.Referral, string) {
	t.Helper()
	r, err := s.PC.SellerCreate(stacktest.SellerReferral(name, value))
	if err != nil {
		t.Fatal(err)
	}
	var oppID string
	testkit.Eventually(t, 20*time.Second, "opportunity for "+name, func() (bool, string) {
		opps := stacktest.OpportunitiesFor(s, r.ID)
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
		code, out, errOut := cli(t, cmd, "--help")
		if code != 0 || !strings.Contains(out, "Usage:\n  cosell "+cmd) || !strings.Contains(out, "--nats") {
			t.Errorf("cosell %s --help: code %d, output:\n%s%s", cmd, code, out, errOut)
		}
	}
	code, out, _ := cli(t, "--help")
	for _, cmd := range []string{"status", "replay", "dlq", "drift"} {
		if code != 0 || !strings.Contains(out, "  "+cmd+" ") {
			t.Errorf("cosell --help does not list %s:\n%s", cmd, out)
		}
	}
	if code, _, errOut := cli(t, "replay", "--stream", contracts.StreamRequested); code != 2 || !strings.Contains(errOut, "[since from-seq] is required") {
		t.Errorf("replay without a start point: code %d, %s", code, errOut)
	}
}

func TestStatusCommand(t *testing.T) {
	t.Parallel()
	s, conn := opsStack(t, nil)
	referralSynced(t, s, "Contoso status", 1000)
	stacktest.Quiet(t, s)
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
	// --json is the older spelling of -o json; -o yaml carries the same names. An empty list is [].
	code, out, _ = admin(t, conn, "status", "--json", "--no-api")
	if code != 0 || !strings.Contains(out, `"deadLetters": 0`) || !strings.Contains(out, `"apiBudget": []`) || strings.Contains(out, "daily API calls") {
		t.Errorf("status --json --no-api: code %d:\n%s", code, out)
	}
	code, out, _ = admin(t, conn, "status", "-o", "yaml", "--no-api")
	if code != 0 || !strings.Contains(out, "\n  deadLetters: 0\n") || !strings.Contains(out, "\napiBudget: []\n") {
		t.Errorf("status -o yaml --no-api: code %d:\n%s", code, out)
	}
}
