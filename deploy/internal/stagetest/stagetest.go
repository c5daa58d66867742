// Package stagetest runs a cosell stage binary as the deployment runs it, for the deploy module's tests:
// a real process with only the environment the manifests give it, its JSON log read line by line, its
// admin port found from the log, and a real nats-server to talk to.
package stagetest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Stage is a running stage process.
type Stage struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan map[string]any
	exited chan error
	mu     sync.Mutex
	log    []string
	stderr syncBuffer
}

// Build compiles ./services/<service> under root into a temporary directory and returns the binary's path.
func Build(t *testing.T, root, service string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), service)
	cmd := exec.Command("go", "build", "-o", bin, "./services/"+service)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./services/%s: %v\n%s", service, err, out)
	}
	return bin
}

// Start runs bin with exactly env (nothing inherited), as uid:gid 65532 when asNonRoot and the test runs
// as root, and stops it at the end of the test.
func Start(t *testing.T, bin string, env []string, asNonRoot bool) *Stage {
	t.Helper()
	s := &Stage{t: t, cmd: exec.Command(bin), lines: make(chan map[string]any, 1024), exited: make(chan error, 1)}
	s.cmd.Env = env
	s.cmd.Dir = filepath.Dir(bin)
	if asNonRoot && os.Getuid() == 0 {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			s.mu.Lock()
			s.log = append(s.log, sc.Text())
			s.mu.Unlock()
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				select {
				case s.lines <- line:
				default: // nobody is waiting for lines this far ahead; the log above keeps them
				}
			}
		}
		close(s.lines)
		s.exited <- s.cmd.Wait()
	}()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	return s
}

// WaitLog returns the first log line from now on for which match is true; it fails the test when the
// process exits first or within passes.
func (s *Stage) WaitLog(within time.Duration, what string, match func(line map[string]any) bool) map[string]any {
	s.t.Helper()
	timeout := time.After(within)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("the stage exited before logging %s\n%s", what, s.Output())
			}
			if match(line) {
				return line
			}
		case <-timeout:
			s.t.Fatalf("the stage did not log %s within %s\n%s", what, within, s.Output())
		}
	}
}

// AdminAddr waits for the "admin listening" line and returns its address.
func (s *Stage) AdminAddr(within time.Duration) string {
	s.t.Helper()
	line := s.WaitLog(within, "its admin address", func(l map[string]any) bool { return l["msg"] == "admin listening" })
	addr, _ := line["addr"].(string)
	return addr
}

// Stop sends SIGTERM and returns the exit error (nil for exit 0).
func (s *Stage) Stop(within time.Duration) error {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	timeout := time.After(within)
	lines := s.lines
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				lines = nil
			}
		case err := <-s.exited:
			return err
		case <-timeout:
			s.t.Fatalf("the stage did not exit within %s of SIGTERM\n%s", within, s.Output())
		}
	}
}

// Output is the stage's stdout and stderr so far, for failure messages.
func (s *Stage) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := "stdout:\n"
	for _, l := range s.log {
		out += l + "\n"
	}
	return out + "stderr:\n" + s.stderr.String()
}

// GetOK fails unless GET http://addr/path answers 200.
func GetOK(addr, path string) error {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return nil
}

// NATS starts a JetStream nats-server on loopback with opts (nil for the defaults) and stops it at the end.
func NATS(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	if opts == nil {
		opts = &server.Options{}
	}
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir = "127.0.0.1", server.RANDOM_PORT, true, t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns
}

// Eventually polls cond until it returns nil, failing the test with its last error after within.
func Eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s within %s: %v", what, within, err)
		}
		<-tick.C
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
