package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cosell-dev/cosell/services/internal/harness/fleet"
	"github.com/cosell-dev/cosell/services/internal/testkit"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds the six stages and the cosell CLI once per test run.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "cosell-bin-"); binErr == nil {
			binErr = fleet.Build(context.Background(), binDir)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// startFleet starts a nats-server and both emulators as processes.
func startFleet(t *testing.T) *fleet.Fleet {
	t.Helper()
	f, err := fleet.New(binaries(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(f.Outputs(3000))
		}
		f.Close()
	})
	if err := f.StartInfra(t.Context()); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestStageConfigErrorsAndHelp checks that a stage refuses bad configuration with an error naming every
// bad variable (exit 2) and that --help lists the variables it reads.
func TestStageConfigErrorsAndHelp(t *testing.T) {
	bin := binaries(t)
	cmd := exec.Command(filepath.Join(bin, "sf-writer"))
	cmd.Env = append(os.Environ(), "COSELL_MAX_DELIVER=abc", "COSELL_SF_URL=not a url", "COSELL_SF_CLIENT_ID=", "COSELL_SF_CLIENT_SECRET=x")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("want exit 2, got %v\n%s", err, out)
	}
	for _, want := range []string{"COSELL_MAX_DELIVER", "COSELL_SF_URL", "COSELL_SF_CLIENT_ID", "required"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error output does not name %s:\n%s", want, out)
		}
	}
	help, err := exec.Command(filepath.Join(bin, "sf-writer"), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, help)
	}
	for _, want := range []string{"COSELL_SF_URL", "COSELL_NATS_URL", "COSELL_ADMIN_ADDR", "COSELL_SF_LIMIT_PAUSE", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER"} {
		if !strings.Contains(string(help), want) {
			t.Errorf("--help does not list %s:\n%s", want, help)
		}
	}
}

// TestStagesAsSeparateProcesses runs the README's multi-process recipe: a nats-server, both emulators and
// the six stages as their own OS processes, syncs one record each way, then stops every stage with SIGTERM
// and expects a clean drain (exit 0).
func TestStagesAsSeparateProcesses(t *testing.T) {
	f := startFleet(t)
	f.Env = append(f.Env, "COSELL_SF_POLL_INTERVAL=300ms", "COSELL_ACK_WAIT=5s")
	if err := f.StartStages(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := f.RegisterWebhook(t.Context()); err != nil {
		t.Fatal(err)
	}
	var ref, opp struct {
		ID string `json:"id"`
	}
	if err := fleet.SendJSON(t.Context(), "POST", f.PCURL()+"/_emulator/referrals", map[string]any{
		"name":            "Process test referral",
		"customerProfile": map[string]any{"name": "Proc Customer", "address": map[string]any{"city": "Oslo", "postalCode": "0150", "country": "NO"}},
		"consent":         map[string]any{"consentToToShareInfoWithOthers": true, "consentToContact": true},
		"details":         map[string]any{"dealValue": 15000, "currency": "EUR", "closingDateTime": "2027-06-30T00:00:00Z"},
	}, &ref); err != nil {
		t.Fatal(err)
	}
	var acc struct {
		ID string `json:"id"`
	}
	if err := fleet.SendJSON(t.Context(), "POST", f.SFURL()+"/_emulator/sobjects/Account", map[string]any{
		"Name": "Process test customer", "BillingCountry": "NO", "BillingPostalCode": "0150",
	}, &acc); err != nil {
		t.Fatal(err)
	}
	if err := fleet.SendJSON(t.Context(), "POST", f.SFURL()+"/_emulator/sobjects/Opportunity", map[string]any{
		"Name": "Process test opportunity", "AccountId": acc.ID, "Amount": 2500, "CurrencyIsoCode": "USD", "CloseDate": "2027-05-01",
		"StageName": "Qualification", "Sync_with_Partner_Center__c": true,
	}, &opp); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, "both directions synced across processes", func() (bool, string) {
		var opps struct {
			Records []map[string]any `json:"records"`
		}
		if err := fleet.GetJSON(t.Context(), f.SFURL()+"/_emulator/sobjects/Opportunity", &opps); err != nil {
			return false, err.Error()
		}
		fromPC, linkedBack := 0, false
		for _, o := range opps.Records {
			if o["Referral_Identifier__c"] == ref.ID {
				fromPC++
			}
			if o["Id"] == opp.ID && o["Referral_Identifier__c"] != nil {
				linkedBack = true
			}
		}
		var refs []map[string]any
		if err := fleet.GetJSON(t.Context(), f.PCURL()+"/_emulator/referrals", &refs); err != nil {
			return false, err.Error()
		}
		fromSF := 0
		for _, r := range refs {
			if r["externalReferenceId"] == opp.ID {
				fromSF++
			}
		}
		return fromPC == 1 && fromSF == 1 && linkedBack, fmt.Sprintf("opps from PC %d, referrals from SF %d, linked back %v", fromPC, fromSF, linkedBack)
	})
	for _, s := range fleet.Stages {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		err := f.Stop(ctx, s)
		cancel()
		if err != nil {
			t.Error(err)
			continue
		}
		if !strings.Contains(f.Proc(s).Output(), "drained") {
			t.Errorf("%s did not log its drain", s)
		}
	}
}
