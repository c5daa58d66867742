package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a child process with its output kept for diagnostics.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProc(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, tail(p.out.String(), 3000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func postJSON(t *testing.T, url string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s %s", url, resp.Status, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

var stages = []string{"pc-ingest", "sf-ingest", "mapper", "pc-writer", "sf-writer", "auditor"}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds the six stages and the cosell CLI once per test run.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "cosell-bin-")
		if binErr != nil {
			return
		}
		pkgs := []string{"../cosell"}
		for _, s := range stages {
			pkgs = append(pkgs, "../"+s)
		}
		out, err := exec.Command("go", append([]string{"build", "-o", binDir + string(filepath.Separator)}, pkgs...)...).CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
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
	for _, want := range []string{"COSELL_SF_URL", "COSELL_NATS_URL", "COSELL_ADMIN_ADDR", "COSELL_SF_LIMIT_PAUSE"} {
		if !strings.Contains(string(help), want) {
			t.Errorf("--help does not list %s:\n%s", want, help)
		}
	}
}

// TestStagesAsSeparateProcesses runs the README's multi-process recipe: a nats-server, both emulators and
// the six stages as their own OS processes, syncs one record each way, then stops every stage with SIGTERM
// and expects a clean drain (exit 0).
func TestStagesAsSeparateProcesses(t *testing.T) {
	bin := binaries(t)
	cosell := filepath.Join(bin, "cosell")
	natsAddr, pcAddr, sfAddr, hookAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	ca := filepath.Join(t.TempDir(), "pc-ca.pem")
	startProc(t, "nats", cosell, nil, "nats", "--listen", natsAddr, "--data", t.TempDir())
	startProc(t, "pc-emulator", cosell, nil, "emulator", "pc", "--listen", pcAddr, "--ca-out", ca)
	startProc(t, "sf-emulator", cosell, nil, "emulator", "sf", "--listen", sfAddr)
	pcURL, sfURL := "http://"+pcAddr, "http://"+sfAddr
	eventually(t, 30*time.Second, "infrastructure up", func() (bool, string) {
		for _, a := range []string{natsAddr, pcAddr, sfAddr} {
			c, err := net.Dial("tcp", a)
			if err != nil {
				return false, err.Error()
			}
			c.Close()
		}
		_, err := os.Stat(ca)
		return err == nil, "no CA file yet"
	})
	env := []string{
		"COSELL_NATS_URL=nats://" + natsAddr,
		"COSELL_SF_URL=" + sfURL, "COSELL_SF_CLIENT_ID=cosell-emulator-client", "COSELL_SF_CLIENT_SECRET=cosell-emulator-secret",
		"COSELL_PC_URL=" + pcURL, "COSELL_PC_WEBHOOKS_URL=" + pcURL,
		"COSELL_PC_TOKEN_URL=" + pcURL + "/00000000-0000-0000-0000-000000000001/oauth2/v2.0/token",
		"COSELL_PC_CLIENT_ID=cosell-emulator-client", "COSELL_PC_CLIENT_SECRET=cosell-emulator-secret",
		"COSELL_SF_POLL_INTERVAL=300ms", "COSELL_ACK_WAIT=5s",
		"COSELL_PC_WEBHOOK_TRUSTED_HOSTS=" + pcAddr, "COSELL_PC_WEBHOOK_CA_FILE=" + ca,
		"COSELL_PC_WEBHOOK_ALLOW_HTTP=true", "COSELL_PC_WEBHOOK_CERT_PATH_PREFIX=/_emulator/cert/",
		"COSELL_PC_WEBHOOK_LISTEN=" + hookAddr,
	}
	procs := map[string]*proc{}
	admin := map[string]string{}
	for _, s := range stages {
		admin[s] = freeAddr(t)
		procs[s] = startProc(t, s, filepath.Join(bin, s), append(env, "COSELL_ADMIN_ADDR="+admin[s]))
	}
	for _, s := range stages {
		eventually(t, 30*time.Second, s+" ready", func() (bool, string) {
			select {
			case err := <-procs[s].done:
				t.Fatalf("%s exited early: %v\n%s", s, err, procs[s].out.String())
			default:
			}
			resp, err := http.Get("http://" + admin[s] + "/readyz")
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, resp.Status
		})
	}
	reg := exec.Command(cosell, "pc", "webhook", "register", "--url", "http://"+hookAddr+"/webhooks/partner-center", "--overwrite")
	reg.Env = append(os.Environ(), env...)
	if out, err := reg.CombinedOutput(); err != nil {
		t.Fatalf("webhook register: %v\n%s", err, out)
	}

	ref := postJSON(t, pcURL+"/_emulator/referrals", map[string]any{
		"name":            "Process test referral",
		"customerProfile": map[string]any{"name": "Proc Customer", "address": map[string]any{"city": "Oslo", "postalCode": "0150", "country": "NO"}},
		"consent":         map[string]any{"consentToToShareInfoWithOthers": true, "consentToContact": true},
		"details":         map[string]any{"dealValue": 15000, "currency": "EUR", "closingDateTime": "2027-06-30T00:00:00Z"},
	})
	refID, _ := ref["id"].(string)
	opp := postJSON(t, sfURL+"/_emulator/sobjects/Opportunity", map[string]any{
		"Name": "Process test opportunity", "Amount": 2500, "CurrencyIsoCode": "USD", "CloseDate": "2027-05-01",
		"StageName": "Qualification", "Sync_with_Partner_Center__c": true,
	})
	oppID, _ := opp["id"].(string)
	if refID == "" || oppID == "" {
		t.Fatalf("seed failed: %v %v", ref, opp)
	}
	eventually(t, 60*time.Second, "both directions synced across processes", func() (bool, string) {
		var opps struct {
			Records []map[string]any `json:"records"`
		}
		if err := getJSON(sfURL+"/_emulator/sobjects/Opportunity", &opps); err != nil {
			return false, err.Error()
		}
		fromPC, linkedBack := 0, false
		for _, o := range opps.Records {
			if o["Referral_Identifier__c"] == refID {
				fromPC++
			}
			if o["Id"] == oppID && o["Referral_Identifier__c"] != nil {
				linkedBack = true
			}
		}
		var refs []map[string]any
		if err := getJSON(pcURL+"/_emulator/referrals", &refs); err != nil {
			var wrapped struct {
				Value []map[string]any `json:"value"`
			}
			if err2 := getJSON(pcURL+"/_emulator/referrals", &wrapped); err2 != nil {
				return false, err.Error()
			}
			refs = wrapped.Value
		}
		fromSF := 0
		for _, r := range refs {
			if r["externalReferenceId"] == oppID {
				fromSF++
			}
		}
		return fromPC == 1 && fromSF == 1 && linkedBack, fmt.Sprintf("opps from PC %d, referrals from SF %d, linked back %v", fromPC, fromSF, linkedBack)
	})

	for _, s := range stages {
		_ = procs[s].cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, s := range stages {
		select {
		case err := <-procs[s].done:
			if err != nil {
				t.Errorf("%s did not exit 0 after SIGTERM: %v", s, err)
			}
			if !strings.Contains(procs[s].out.String(), "drained") {
				t.Errorf("%s did not log its drain", s)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s still running 30s after SIGTERM", s)
		}
	}
}
