// Package fleet runs cosell the way it runs in production: every stage as its own OS process, next to a
// nats-server and both emulators (also processes), on loopback ports. The process-level tests, the
// fault-injection suite and the benchmarks use it to start, SIGTERM, kill -9 and restart processes.
package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/harness/emuenv"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// Stages are the six stage binaries.
var Stages = []string{"pc-ingest", "sf-ingest", "mapper", "pc-writer", "sf-writer", "auditor"}

const modulePath = "github.com/cosell-dev/cosell/services/"

// Build compiles the six stages and the cosell CLI into dir the way deploy/image builds what ships (static,
// no cgo, no symbol tables, -trimpath, no embeddednats tag: no nats-server in a stage), so a fleet's resident
// memory is the shipped binaries': the cgo build mapped libc and a larger binary, 2 MiB more per stage.
func Build(ctx context.Context, dir string) error {
	pkgs := []string{modulePath + "cosell"}
	for _, s := range Stages {
		pkgs = append(pkgs, modulePath+s)
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

// Proc is one running process with its output kept.
type Proc struct {
	Name  string
	Admin string // the admin address of a stage
	cmd   *exec.Cmd
	out   *buffer
	done  chan struct{}
	err   error
}

type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 4<<20 {
		// Keep the tail only: a long benchmark must not grow without bound.
		keep := b.b.Bytes()[b.b.Len()-(1<<20):]
		b.b = *bytes.NewBuffer(append([]byte(nil), keep...))
	}
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Output returns what the process printed.
func (p *Proc) Output() string { return p.out.String() }

// Exited reports whether the process has ended, and its error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Wait waits for the process to end, or for ctx to be done.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("%s still running: %w", p.Name, ctx.Err())
	}
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// RSS returns the resident set size in bytes (Linux).
func (p *Proc) RSS() (int64, error) {
	rss, _, err := p.Memory()
	return rss, err
}

// Memory is the process's resident memory (VmRSS) and, of it, the anonymous part (RssAnon: its heap,
// stacks and runtime; the rest is file pages, a binary's code and read-only data, shared page cache).
func (p *Proc) Memory() (rss, anon int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		return 0, 0, err
	}
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		var into *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			into, found = &rss, true
		case strings.HasPrefix(line, "RssAnon:"):
			into = &anon
		default:
			continue
		}
		f := strings.Fields(line)
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		*into = kb * 1024
	}
	if !found {
		return 0, 0, errors.New("no VmRSS")
	}
	return rss, anon, nil
}

// Fleet is one deployment on loopback.
type Fleet struct {
	Bin      string
	Dir      string
	NATSAddr string
	PCAddr   string
	SFAddr   string
	HookAddr string
	// PubSubAddr is the Salesforce emulator's Pub/Sub API (gRPC) address.
	PubSubAddr string
	CAFile     string
	// Env is the environment every stage gets (plus COSELL_ADMIN_ADDR); add to it before StartStage.
	Env []string
	// NATSArgs are added to `cosell nats`'s flags (e.g. --pprof), NATSEnv to its environment (e.g.
	// GOMEMLIMIT); set them before StartNATS.
	NATSArgs, NATSEnv []string

	mu    sync.Mutex
	procs map[string]*Proc
}

// New prepares a fleet whose binaries are in bin and whose state (NATS store, CA file) lives in dir.
func New(bin, dir string) (*Fleet, error) {
	f := &Fleet{Bin: bin, Dir: dir, procs: map[string]*Proc{}, CAFile: filepath.Join(dir, "pc-ca.pem")}
	for _, a := range []*string{&f.NATSAddr, &f.PCAddr, &f.SFAddr, &f.HookAddr, &f.PubSubAddr} {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		*a = addr
	}
	// The emulators' default tenant and apps (cosell emulator pc|sf prints them).
	f.Env = append([]string{"COSELL_NATS_URL=nats://" + f.NATSAddr}, emuenv.Emulators{
		PCURL: f.PCURL(), PCAuthority: f.PCURL() + "/00000000-0000-0000-0000-000000000001", PCClientID: "cosell-emulator-client",
		SFURL: f.SFURL(), SFClientID: "cosell-emulator-client", SFClientSecret: "cosell-emulator-secret",
		SFPubSubURL: "http://" + f.PubSubAddr, CAFile: f.CAFile, WebhookListen: f.HookAddr,
	}.Env()...)
	return f, nil
}

// PCURL and SFURL are the emulators' base URLs; WebhookURL is pc-ingest's endpoint.
func (f *Fleet) PCURL() string      { return "http://" + f.PCAddr }
func (f *Fleet) SFURL() string      { return "http://" + f.SFAddr }
func (f *Fleet) WebhookURL() string { return "http://" + f.HookAddr + "/webhooks/partner-center" }

// Pause waits d, or less when ctx ends first (the chaos schedule, the benchmarks' windows).
func Pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// FreeAddr returns a loopback address with a free port.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (f *Fleet) start(name, bin string, env []string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, cmd: exec.Command(bin, args...), out: &buffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	f.mu.Lock()
	f.procs[name] = p
	f.mu.Unlock()
	return p, nil
}

// Proc returns the latest process started under name.
func (f *Fleet) Proc(name string) *Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs[name]
}

// StartNATS starts (or restarts, on the same store) the nats-server and waits, up to 30s or until ctx is
// done, until it listens.
func (f *Fleet) StartNATS(ctx context.Context) error {
	args := append([]string{"nats", "--listen", f.NATSAddr, "--data", filepath.Join(f.Dir, "nats")}, f.NATSArgs...)
	if _, err := f.start("nats", filepath.Join(f.Bin, "cosell"), f.NATSEnv, args...); err != nil {
		return err
	}
	return waitTCP(ctx, f.NATSAddr, 30*time.Second)
}

// StartInfra starts the nats-server and both emulators and seeds the Partner Center sign-in.
func (f *Fleet) StartInfra(ctx context.Context) error {
	if err := f.StartNATS(ctx); err != nil {
		return err
	}
	if _, err := f.start("pc-emulator", filepath.Join(f.Bin, "cosell"), nil, "emulator", "pc", "--listen", f.PCAddr, "--ca-out", f.CAFile); err != nil {
		return err
	}
	if _, err := f.start("sf-emulator", filepath.Join(f.Bin, "cosell"), nil, "emulator", "sf", "--listen", f.SFAddr, "--pubsub-listen", f.PubSubAddr); err != nil {
		return err
	}
	for _, a := range []string{f.PCAddr, f.SFAddr} {
		if err := waitTCP(ctx, a, 30*time.Second); err != nil {
			return err
		}
	}
	if err := waitFile(ctx, f.CAFile, 30*time.Second); err != nil {
		return err
	}
	return f.SeedPCLogin(ctx)
}

// SeedPCLogin stands in for the one-time `cosell pc login`: it asks the emulator (its control API) for a refresh
// token of the Referrals Admin user and stores it in the cosell_pc_credentials bucket, provisioning the bus.
func (f *Fleet) SeedPCLogin(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	bus, err := platform.Connect(ctx, platform.BusConfig{URL: "nats://" + f.NATSAddr, Replicas: 1, MaxAge: 24 * time.Hour,
		DuplicateWindow: 2 * time.Minute, MaxDeliver: 10, AckWait: 30 * time.Second}, "harness", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return err
	}
	defer bus.Close()
	if err := bus.Provision(ctx); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.PCURL()+"/_emulator/refresh-tokens", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var seed struct {
		RefreshToken string `json:"refresh_token"`
		User         string `json:"user"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&seed); err != nil || seed.RefreshToken == "" {
		return fmt.Errorf("pc emulator refresh token: status %d: %v", resp.StatusCode, err)
	}
	store, err := stage.TokenStore(ctx, bus)
	if err != nil {
		return err
	}
	now := time.Now()
	return pcapi.Put(ctx, store, pcapi.StoredToken{RefreshToken: seed.RefreshToken, Method: "harness", User: seed.User,
		Authority: f.PCURL() + "/00000000-0000-0000-0000-000000000001", ClientID: "cosell-emulator-client", LoggedInAt: now, RotatedAt: now})
}

// StartStage starts one stage and waits until its /readyz answers 200 (up to 60s, or until ctx is done).
func (f *Fleet) StartStage(ctx context.Context, name string, extraEnv ...string) (*Proc, error) {
	return f.startStage(ctx, name, name, extraEnv...)
}

// StartReplica starts one more process of a stage, kept under "<stage>#<n>" (Proc, Kill, Stop take that
// name), sharing the stage's durable consumers as every replica of a Deployment does.
func (f *Fleet) StartReplica(ctx context.Context, stage string, n int, extraEnv ...string) (*Proc, error) {
	return f.startStage(ctx, fmt.Sprintf("%s#%d", stage, n), stage, extraEnv...)
}

// Names lists every process started so far, by the name it is kept under.
func (f *Fleet) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.procs))
	for n := range f.procs {
		names = append(names, n)
	}
	return names
}

func (f *Fleet) startStage(ctx context.Context, name, binary string, extraEnv ...string) (*Proc, error) {
	admin, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	env := append(append(append([]string{}, f.Env...), extraEnv...), "COSELL_ADMIN_ADDR="+admin)
	p, err := f.start(name, filepath.Join(f.Bin, binary), env)
	if err != nil {
		return nil, err
	}
	p.Admin = admin
	err = poll(ctx, 60*time.Second, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		if done, err := p.Exited(); done {
			return false, fmt.Errorf("%s exited while starting: %v\n%s", name, err, tailOf(p.Output(), 2000))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/readyz", nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return p, fmt.Errorf("%s not ready: %w\n%s", name, err, tailOf(p.Output(), 2000))
	}
	return p, nil
}

// StartStages starts the given stages (all six when none are named).
func (f *Fleet) StartStages(ctx context.Context, names ...string) error {
	if len(names) == 0 {
		names = Stages
	}
	for _, n := range names {
		if _, err := f.StartStage(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// RegisterWebhook points the Partner Center webhook at pc-ingest.
func (f *Fleet) RegisterWebhook(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(f.Bin, "cosell"), "pc", "webhook", "register", "--url", f.WebhookURL(), "--overwrite")
	cmd.Env = append(os.Environ(), f.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("webhook register: %v\n%s", err, out)
	}
	return nil
}

// Kill stops a process the way kill -9 does and waits (up to 10s, or until ctx is done) for it to end.
func (f *Fleet) Kill(ctx context.Context, name string) error {
	p := f.Proc(name)
	if p == nil {
		return fmt.Errorf("no process %s", name)
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Wait(ctx); err != nil && ctx.Err() != nil {
		return fmt.Errorf("after SIGKILL: %w", err)
	}
	// The exit status of a killed process is "signal: killed": that is the point.
	return nil
}

// Stop sends SIGTERM and waits for a clean exit (status 0) until ctx is done.
func (f *Fleet) Stop(ctx context.Context, name string) error {
	p := f.Proc(name)
	if p == nil {
		return fmt.Errorf("no process %s", name)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.Wait(ctx); err != nil {
		return fmt.Errorf("%s after SIGTERM: %w\n%s", name, err, tailOf(p.Output(), 2000))
	}
	return nil
}

// Close kills everything still running.
func (f *Fleet) Close() {
	f.mu.Lock()
	procs := make([]*Proc, 0, len(f.procs))
	for _, p := range f.procs {
		procs = append(procs, p)
	}
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.Wait(ctx)
	}
}

// Outputs returns every process's output tail, for diagnostics.
func (f *Fleet) Outputs(n int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for name, p := range f.procs {
		fmt.Fprintf(&b, "--- %s ---\n%s\n", name, tailOf(p.Output(), n))
	}
	return b.String()
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// poll calls check every interval until it reports done or an error, giving up after within or when ctx
// is done.
func poll(ctx context.Context, within, interval time.Duration, check func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := check(ctx)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", within, ctx.Err())
		case <-t.C:
		}
	}
}

func waitTCP(ctx context.Context, addr string, within time.Duration) error {
	var d net.Dialer
	err := poll(ctx, within, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s not listening: %w", addr, err)
	}
	return nil
}

func waitFile(ctx context.Context, name string, within time.Duration) error {
	err := poll(ctx, within, 20*time.Millisecond, func(context.Context) (bool, error) {
		_, err := os.Stat(name)
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s not written: %w", name, err)
	}
	return nil
}

// GetJSON reads a JSON document over HTTP.
func GetJSON(ctx context.Context, url string, v any) error {
	return SendJSON(ctx, http.MethodGet, url, nil, v)
}

// SendJSON sends a JSON body (none when body is nil) and decodes the JSON answer (when out is not nil).
func SendJSON(ctx context.Context, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, url, resp.Status, raw)
	}
	if out != nil && len(raw) > 0 {
		return json.Unmarshal(raw, out)
	}
	return nil
}
