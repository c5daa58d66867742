// Package stack starts the whole system in one process: an embedded nats-server, both emulators over real
// HTTP on loopback, and the six stages, each with its own NATS connection as if it were its own process.
// `cosell run` and the end-to-end tests use it. The stages are the production descriptors (Components),
// configured through the production loader from variables that point them at the emulators.
package stack

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/harness/emuenv"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/platform/natsembed"
	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/mapper/mapper"
	"github.com/cosell-dev/cosell/services/pc-ingest/pcingest"
	"github.com/cosell-dev/cosell/services/pc-writer/pcwriter"
	"github.com/cosell-dev/cosell/services/sf-ingest/sfingest"
	"github.com/cosell-dev/cosell/services/sf-writer/sfwriter"
)

// Components are the six stages, in the order the stack starts them (contracts.Stages).
func Components() []stage.Component {
	return []stage.Component{pcingest.Stage, sfingest.Stage, mapper.Stage, pcwriter.Stage, sfwriter.Stage, auditor.Stage}
}

// Options configure a stack; zero values suit tests (random ports, a temporary store).
type Options struct {
	// DataDir holds the embedded server's store; "" = a temporary directory removed by Stop.
	DataDir    string
	NATSListen string // default 127.0.0.1:-1
	// NATSLogin makes the embedded server admit only a generated login (natsembed.StartWithLogin, as
	// `cosell run`'s does): every stage connects with it, Stack.NATSLogin holds it, the data directory has
	// its login file. Off, the server admits anyone on the loopback port (the tests' default).
	NATSLogin bool
	// Addresses of the HTTP listeners; default 127.0.0.1:0 (a free port).
	PCEmulatorAddr, SFEmulatorAddr, WebhookAddr, StatusAddr string
	// SFPubSubAddr is the Salesforce emulator's Pub/Sub API (gRPC) listener; default 127.0.0.1:0.
	SFPubSubAddr string
	// Vars are configuration variables (COSELL_*) every stage reads, over the ones the stack sets to
	// point the stages at the emulators. They go through the production loader: a variable left out takes
	// the production default.
	Vars map[string]string
	// StageVars, when set, gives one stage (or "provision", the connection that creates the streams, or
	// any other name passed to Connect) variables of its own over Vars, e.g. its own NATS user (the deploy
	// tests run every stage under its least-privilege user). A COSELL_NATS_URL connects over TCP to that
	// server instead of in-process to the stack's embedded one.
	StageVars func(stage string) map[string]string
	// Consume tunes every stage's consumer loops (zero = the production defaults).
	Consume platform.ConsumeOptions
	// SFMetadataDir is the SFDX project the Salesforce emulator loads: an org with fields of its own, for a
	// mapping that names them (give the stages COSELL_MAPPING_METADATA with the same directory); "" =
	// deploy/salesforce.
	SFMetadataDir string
	// SFOrg shapes the emulated Salesforce org (SingleCurrency, Currency, Sandbox, ...); its credentials,
	// metadata (SFMetadataDir) and logger are the stack's own.
	SFOrg sfemu.Options
	// SFLogin is how the stages log in to the emulated org: "" for the client credentials flow on its My
	// Domain, sfapi.AuthJWT for the JWT bearer flow on its login host (with a key pair made for the run).
	SFLogin string
	Log     *slog.Logger
	// PCAfterWrite and SFAfterWrite are test hooks called between a writer's external write and its outcome.
	PCAfterWrite, SFAfterWrite func(commandID string)
	// MapperAfterStore is a test hook called between the mapper's store of a link and the publishing of
	// the commands and decisions in its outbox.
	MapperAfterStore func(linkID string)
}

// Emulator credentials the stack configures on both sides.
const (
	SFClientID     = "cosell-connected-app"
	SFClientSecret = "cosell-connected-app-secret"
)

// Stack is a running system.
type Stack struct {
	opts Options
	NATS *server.Server
	// NATSLogin is the embedded server's generated login when Options.NATSLogin is set (zero otherwise).
	NATSLogin platform.Login
	PC        *pcemu.Emulator
	SF        *sfemu.Emulator
	PCURL     string
	SFURL     string
	// SFLoginURL serves the emulated org's shared login host (as login.salesforce.com).
	SFLoginURL string
	// SFPubSubURL is the Salesforce emulator's Pub/Sub API (Change Data Capture), as COSELL_SF_PUBSUB_URL.
	SFPubSubURL string
	// Webhook is pc-ingest's endpoint and Status the status page's base URL; both stay the same across
	// StopPipeline, CrashPipeline and StartPipeline.
	Webhook string
	Status  string
	// Operator and Viewer are the generated logins of the status page and API: the name and secret on
	// the login page, the secret as a bearer token.
	Operator, Viewer Login
	// Auditor is a read-only view of the audit trail (links, timelines, dead letters, lag), connected as
	// the auditor stage; it is set by the first StartPipeline and outlives pipeline restarts. The running
	// auditor serves the status API on Status.
	Auditor  *auditor.Auditor
	Registry *prometheus.Registry
	metrics  *platform.Metrics
	// clients are the metrics of the stages' external clients: every client built here reports into them
	// through an observer of its own, so two stacks in one process keep their counts apart.
	clients *stage.ClientMetrics
	servers []*http.Server
	pubsub  *grpc.Server
	tmp     string
	// vars point the stages at the emulators (under Options.Vars).
	vars    map[string]string
	webhook *relay
	view    *platform.Bus

	harnessMu sync.Mutex
	harness   *platform.Bus // PCClient's connection

	mu       sync.Mutex
	pipeline *pipeline
	status   http.Handler
}

// DataDir is the embedded server's store (Options.DataDir, or the temporary one Stop removes); with
// Options.NATSLogin it holds the server's login file (platform.LoginFileName).
func (s *Stack) DataDir() string { return s.opts.DataDir }

// Login is one status page login.
type Login struct{ Name, Secret string }

// The names of the generated logins.
const (
	OperatorName = "admin"
	ViewerName   = "viewer"
)

type pipeline struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	buses  []*platform.Bus
	errs   chan error
}

// Start starts the infrastructure and the pipeline.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	s, err := StartInfra(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := s.StartPipeline(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// StartInfra starts NATS, the emulators and the HTTP listeners, without the stages.
func StartInfra(ctx context.Context, opts Options) (*Stack, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.NATSListen == "" {
		opts.NATSListen = "127.0.0.1:-1"
	}
	for _, a := range []*string{&opts.PCEmulatorAddr, &opts.SFEmulatorAddr, &opts.SFPubSubAddr, &opts.WebhookAddr, &opts.StatusAddr} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	s := &Stack{opts: opts, Registry: prometheus.NewRegistry()}
	s.metrics = platform.NewMetrics(s.Registry)
	s.clients = stage.NewClientMetrics(s.Registry)
	tmp, err := os.MkdirTemp("", "cosell-stack-")
	if err != nil {
		return nil, err
	}
	s.tmp = tmp
	if s.opts.DataDir == "" {
		s.opts.DataDir = filepath.Join(tmp, "nats")
	}
	fail := func(err error) (*Stack, error) {
		s.Stop()
		return nil, err
	}
	if opts.NATSLogin {
		s.NATS, s.NATSLogin, err = natsembed.StartWithLogin(s.opts.DataDir, opts.NATSListen, opts.Log)
	} else {
		s.NATS, err = natsembed.Start(s.opts.DataDir, opts.NATSListen, opts.Log)
	}
	if err != nil {
		return fail(err)
	}
	// pcemu names itself (component=pcemu): a second component key would make its lines ambiguous JSON.
	if s.PC, err = pcemu.New(pcemu.Options{Logger: opts.Log, WebhookBackoff: 100 * time.Millisecond}); err != nil {
		return fail(err)
	}
	if s.PCURL, err = s.serve(opts.PCEmulatorAddr, s.PC); err != nil {
		return fail(err)
	}
	s.PC.SetBaseURL(s.PCURL)
	org := opts.SFOrg
	org.ClientID, org.ClientSecret, org.MetadataDir = SFClientID, SFClientSecret, opts.SFMetadataDir
	org.Logger = opts.Log.With("component", "sf-emulator")
	var sfKeyFile string
	if opts.SFLogin == sfapi.AuthJWT {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return fail(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		sfKeyFile = filepath.Join(tmp, "salesforce-jwt.key")
		if err := os.WriteFile(sfKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return fail(err)
		}
		org.JWTPublicKey = &key.PublicKey
	}
	if s.SF, err = sfemu.New(org); err != nil {
		return fail(err)
	}
	if s.SFURL, err = s.serve(opts.SFEmulatorAddr, s.SF); err != nil {
		return fail(err)
	}
	if s.SFLoginURL, err = s.serve("127.0.0.1:0", s.SF.LoginHost(s.SFURL)); err != nil {
		return fail(err)
	}
	pubsub, err := net.Listen("tcp", opts.SFPubSubAddr)
	if err != nil {
		return fail(fmt.Errorf("listen %s for the Pub/Sub API: %w", opts.SFPubSubAddr, err))
	}
	s.pubsub = s.SF.PubSubServer()
	go func() { _ = s.pubsub.Serve(pubsub) }()
	s.SFPubSubURL = "http://" + pubsub.Addr().String()
	hook, err := net.Listen("tcp", opts.WebhookAddr)
	if err != nil {
		return fail(fmt.Errorf("listen %s: %w", opts.WebhookAddr, err))
	}
	s.webhook = newRelay(hook)
	s.serveOn(s.webhook.idle, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "pc-ingest is not running", http.StatusServiceUnavailable)
	}))
	caFile := filepath.Join(tmp, "pc-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.PC.CACert().Raw}), 0o600); err != nil {
		return fail(err)
	}
	s.vars = emuenv.Emulators{PCURL: s.PCURL, PCAuthority: s.PC.Authority(), PCClientID: s.PC.ClientID(),
		SFURL: s.SFURL, SFClientID: SFClientID, SFClientSecret: SFClientSecret, SFPubSubURL: s.SFPubSubURL, CAFile: caFile,
		WebhookListen: hook.Addr().String()}.Vars()
	if opts.SFLogin == sfapi.AuthJWT {
		// The server-to-server setup docs/connect.md describes: the JWT bearer flow on the login host.
		delete(s.vars, "COSELL_SF_CLIENT_SECRET")
		s.vars["COSELL_SF_URL"], s.vars["COSELL_SF_AUTH"] = s.SFLoginURL, sfapi.AuthJWT
		s.vars["COSELL_SF_USERNAME"], s.vars["COSELL_SF_JWT_KEY_FILE"] = sfemu.DefaultUsername, sfKeyFile
	}
	// The generated logins of the status page and API (`cosell run` prints them).
	usersFile := filepath.Join(tmp, "status-users")
	secrets, err := auditor.WriteUsers(usersFile, map[string]string{OperatorName: auditor.RoleOperator, ViewerName: auditor.RoleViewer})
	if err != nil {
		return fail(err)
	}
	s.Operator, s.Viewer = Login{OperatorName, secrets[OperatorName]}, Login{ViewerName, secrets[ViewerName]}
	s.vars["COSELL_AUTH_USERS_FILE"] = usersFile
	if opts.NATSLogin {
		// Every connection the stack makes (the stages', provisioning, the view) uses the generated login.
		s.vars["COSELL_NATS_USER"], s.vars["COSELL_NATS_PASSWORD"] = s.NATSLogin.User, s.NATSLogin.Password
	}
	// Quicker than production, so a test sees a change within a second.
	s.vars["COSELL_SF_POLL_INTERVAL"], s.vars["COSELL_PC_POLL_INTERVAL"] = "1s", "1m"
	// Change Data Capture is opt-in here (Vars COSELL_SF_CDC=on): the suites built on the poller's rhythm
	// keep it. With it on, the backstop poll keeps the poll interval.
	s.vars["COSELL_SF_CDC"], s.vars["COSELL_SF_BACKSTOP_INTERVAL"] = "off", "1s"
	var in pcingest.Config
	if err := platform.LoadConfig(&in, s.lookup(contracts.StagePCIngest)); err != nil {
		return fail(err)
	}
	s.Webhook = "http://" + hook.Addr().String() + in.Path
	status := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		h := s.status
		s.mu.Unlock()
		if h == nil {
			http.Error(w, "auditor is not running", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
	if s.Status, err = s.serve(opts.StatusAddr, status); err != nil {
		return fail(err)
	}
	return s, nil
}

// lookup resolves a configuration variable for one stage: its StageVars, then Options.Vars, then the
// stack's own; nothing comes from the process environment.
func (s *Stack) lookup(stage string) func(string) (string, bool) {
	var own map[string]string
	if s.opts.StageVars != nil {
		own = s.opts.StageVars(stage)
	}
	return func(name string) (string, bool) {
		for _, m := range []map[string]string{own, s.opts.Vars, s.vars} {
			if v, ok := m[name]; ok {
				return v, true
			}
		}
		return "", false
	}
}

func (s *Stack) serve(addr string, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen %s: %w", addr, err)
	}
	s.serveOn(ln, h)
	return "http://" + ln.Addr().String(), nil
}

func (s *Stack) serveOn(ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	go func() { _ = srv.Serve(ln) }()
}

// SeedPCLogin stores a refresh token of the emulator's Referrals Admin user in the cosell_pc_credentials
// bucket unless one is stored: the harness's stand-in for the one-time `cosell pc login`.
func (s *Stack) SeedPCLogin(ctx context.Context, kv stage.KVOpener) error {
	st, err := stage.TokenStore(ctx, kv)
	if err != nil {
		return err
	}
	if _, _, err := st.Load(ctx); err == nil || !errors.Is(err, pcapi.ErrNoRefreshToken) {
		return err
	}
	now := time.Now()
	return pcapi.Put(ctx, st, pcapi.StoredToken{RefreshToken: s.PC.IssueRefreshToken(), Method: "harness",
		User: pcemu.DefaultUser, Authority: s.PC.Authority(), ClientID: s.PC.ClientID(), LoggedInAt: now, RotatedAt: now})
}

// PCClientOn builds a Partner Center client configured the way the stages are (the emulator's tenant,
// signed in the delegated way), reading the token store over kv.
func (s *Stack) PCClientOn(ctx context.Context, kv stage.KVOpener) (*pcapi.Client, error) {
	var c stage.PCConfig
	if err := platform.LoadConfig(&c, s.lookup("")); err != nil {
		return nil, err
	}
	return c.Client(ctx, s.opts.Log, kv, s.clients)
}

// PCClient builds a Partner Center client for the emulator on a harness connection, provisioning the bus
// and seeding the sign-in first if needed.
func (s *Stack) PCClient(ctx context.Context) (*pcapi.Client, error) {
	s.harnessMu.Lock()
	defer s.harnessMu.Unlock()
	if s.harness == nil {
		b, err := s.Connect(ctx, "harness")
		if err != nil {
			return nil, err
		}
		if err := b.Provision(ctx); err != nil {
			b.Close()
			return nil, err
		}
		s.harness = b
	}
	if err := s.SeedPCLogin(ctx, s.harness); err != nil {
		return nil, err
	}
	return s.PCClientOn(ctx, s.harness)
}

// SingleCurrency reports whether the emulated org is single-currency (no CurrencyIsoCode field).
func (s *Stack) SingleCurrency() bool { return s.opts.SFOrg.SingleCurrency }

// SFClient logs a Salesforce client into the emulator, configured the way the stages are and reporting into
// the stack's metrics.
func (s *Stack) SFClient(ctx context.Context) (*sfapi.Client, error) {
	c, err := s.SFConfig()
	if err != nil {
		return nil, err
	}
	c.Observer = s.clients.Observer(contracts.Salesforce)
	return sfapi.New(ctx, c)
}

// SFConfig is the Salesforce login the stages use: client credentials on the org's My Domain, or with
// SFLogin jwt the JWT bearer flow on its login host.
func (s *Stack) SFConfig() (sfapi.Config, error) {
	var c sfapi.Config
	err := platform.LoadConfig(&c, s.lookup(""))
	return c, err
}

// Connect opens a bus named stage on the stack's server, with the bus settings that name is configured
// with.
func (s *Stack) Connect(ctx context.Context, stage string) (*platform.Bus, error) {
	var c platform.Common
	if err := platform.LoadConfig(&c, s.lookup(stage)); err != nil {
		return nil, fmt.Errorf("%s: %w", stage, err)
	}
	return s.connect(ctx, stage, c.Bus)
}

func (s *Stack) connect(ctx context.Context, stage string, cfg platform.BusConfig) (*platform.Bus, error) {
	log := s.opts.Log.With("stage", stage)
	if cfg.URL != "" {
		return platform.Connect(ctx, cfg, stage, log, s.metrics)
	}
	return platform.ConnectServer(ctx, s.NATS, cfg, stage, log, s.metrics)
}

// StartPipeline provisions the bus, then loads, builds and starts the six stages (Components) the way
// their binaries do, each on its own connection.
func (s *Stack) StartPipeline(ctx context.Context) error {
	s.mu.Lock()
	if s.pipeline != nil {
		s.mu.Unlock()
		return errors.New("pipeline already running")
	}
	s.mu.Unlock()
	p := &pipeline{errs: make(chan error, 16)}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	fail := func(err error) error {
		cancel()
		s.webhook.release()
		for _, b := range p.buses {
			b.Abort()
		}
		p.wg.Wait() // the stages started before the failure
		return err
	}
	admin, err := s.Connect(ctx, "provision")
	if err != nil {
		return fail(err)
	}
	p.buses = append(p.buses, admin)
	if err := admin.Provision(ctx); err != nil {
		return fail(fmt.Errorf("provision: %w", err))
	}
	if err := s.SeedPCLogin(ctx, admin); err != nil {
		return fail(fmt.Errorf("partner center sign-in: %w", err))
	}
	if s.Auditor == nil {
		if err := s.openView(ctx); err != nil {
			return fail(err)
		}
	}
	// The status address serves the running auditor's routes and /metrics: the stack's collectors plus
	// this pipeline's (the auditor's lag, DLQ depth, sync latency), registered afresh on every start.
	mux := http.NewServeMux()
	reg := prometheus.NewRegistry()
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{s.Registry, reg}, promhttp.HandlerOpts{}))
	hooks := map[string]func(string){contracts.StagePCWriter: s.opts.PCAfterWrite, contracts.StageSFWriter: s.opts.SFAfterWrite,
		contracts.StageMapper: s.opts.MapperAfterStore}
	for _, c := range Components() {
		name := c.Name()
		cfg, err := c.Load(s.lookup(name))
		if err != nil {
			return fail(fmt.Errorf("%s: %w", name, err))
		}
		bus, err := s.connect(ctx, name, cfg.Common.Bus)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", name, err))
		}
		p.buses = append(p.buses, bus)
		log := s.opts.Log.With("stage", name)
		runner, err := cfg.Build(ctx, &stage.Env{Stage: name, Log: log, Bus: bus, Routes: mux, Registry: reg, Clients: s.clients,
			Listener: s.webhook.Listen, Consume: s.opts.Consume, AfterWrite: hooks[name]})
		if err != nil {
			return fail(fmt.Errorf("%s: %w", name, err))
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := runner(runCtx); err != nil && runCtx.Err() == nil {
				log.Error("stage stopped", "err", err)
				p.errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	// What an operator does once with `cosell pc webhook register`.
	pcc, err := s.PCClientOn(ctx, admin)
	if err != nil {
		return fail(err)
	}
	if _, err := pcc.RegisterWebhook(ctx, s.Webhook, []string{pc.EventReferralCreated, pc.EventReferralUpdated,
		pc.EventRelatedReferralCreated, pc.EventRelatedReferralUpdated}, true); err != nil {
		return fail(fmt.Errorf("register webhook: %w", err))
	}

	s.mu.Lock()
	s.pipeline = p
	s.status = mux
	s.mu.Unlock()
	return nil
}

// openView connects the read-only auditor view tests read the audit trail through.
func (s *Stack) openView(ctx context.Context) error {
	b, err := s.Connect(ctx, contracts.StageAuditor)
	if err != nil {
		return err
	}
	a, err := auditor.New(ctx, b, s.opts.Log.With("component", "auditor-view"))
	if err != nil {
		b.Close()
		return err
	}
	s.view, s.Auditor = b, a
	return nil
}

// StopPipeline drains the stages (in-flight work finishes and is acked) and closes their connections.
func (s *Stack) StopPipeline() {
	s.mu.Lock()
	p := s.pipeline
	s.pipeline = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
	for _, b := range p.buses {
		b.Close()
	}
}

// CrashPipeline kills the stages the way kill -9 would: connections are cut at once, nothing in flight is
// acked. It does not wait; call WaitPipeline before starting again.
func (s *Stack) CrashPipeline() {
	s.mu.Lock()
	p := s.pipeline
	s.mu.Unlock()
	if p == nil {
		return
	}
	s.webhook.release()
	for _, b := range p.buses {
		b.Abort()
	}
	p.cancel()
}

// WaitPipeline waits for crashed stages to return and forgets them.
func (s *Stack) WaitPipeline() {
	s.mu.Lock()
	p := s.pipeline
	s.pipeline = nil
	s.mu.Unlock()
	if p != nil {
		p.wg.Wait()
	}
}

// Errors returns stage failures (a stage that stopped on its own).
func (s *Stack) Errors() []error {
	s.mu.Lock()
	p := s.pipeline
	s.mu.Unlock()
	var out []error
	if p == nil {
		return nil
	}
	for {
		select {
		case err := <-p.errs:
			out = append(out, err)
		default:
			return out
		}
	}
}

// Stop stops everything and removes a temporary store.
func (s *Stack) Stop() {
	s.StopPipeline()
	for _, b := range []*platform.Bus{s.view, s.harness} {
		if b != nil {
			b.Close()
		}
	}
	if s.webhook != nil {
		_ = s.webhook.Close()
	}
	if s.pubsub != nil {
		s.pubsub.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range s.servers {
		_ = srv.Shutdown(ctx)
	}
	if s.PC != nil {
		s.PC.Close()
	}
	if s.NATS != nil {
		s.NATS.Shutdown()
		s.NATS.WaitForShutdown()
	}
	if s.tmp != "" {
		_ = os.RemoveAll(s.tmp)
	}
}

// CaughtUp reports whether every consumer has settled every message its filter matches that is stored
// now (platform.Bus.CaughtUp: a message stored a moment ago counts, where a zero lag could miss it), and
// if not, the first consumer that has not.
func (s *Stack) CaughtUp(ctx context.Context) (bool, string) {
	for _, c := range contracts.Consumers() {
		ok, err := s.view.CaughtUp(ctx, c.Durable)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", c.Durable, err)
		}
		if !ok {
			p, ap, _ := s.view.Lag(ctx, c.Durable)
			return false, fmt.Sprintf("%s pending %d ack-pending %d", c.Durable, p, ap)
		}
	}
	return true, ""
}
