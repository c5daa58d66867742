// Package stack starts the whole system in one process: an embedded nats-server, both emulators over real
// HTTP on loopback, and the six stages, each with its own NATS connection as if it were its own process.
// `cosell run` and the end-to-end tests use it.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/emulators/pcemu"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/pcwebhook"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/outcome"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
	"github.com/cosell-dev/cosell/services/mapper/mapper"
	"github.com/cosell-dev/cosell/services/pc-ingest/pcingest"
	"github.com/cosell-dev/cosell/services/pc-writer/pcwriter"
	"github.com/cosell-dev/cosell/services/sf-ingest/sfingest"
	"github.com/cosell-dev/cosell/services/sf-writer/sfwriter"
)

// Options configure a stack; zero values suit tests (random ports, a temporary store).
type Options struct {
	// DataDir holds the embedded server's store; "" = a temporary directory removed by Stop.
	DataDir    string
	NATSListen string // default 127.0.0.1:-1
	// Addresses of the HTTP listeners; default 127.0.0.1:0 (a free port).
	PCEmulatorAddr, SFEmulatorAddr, WebhookAddr, StatusAddr string
	Bus                                                     platform.BusConfig
	Consume                                                 platform.ConsumeOptions
	Mapping                                                 mapping.Mapping
	// SFMetadataDir is the SFDX project the Salesforce emulator loads: an org with fields of its own, for a
	// mapping that names them (load it with mapping.Config.Metadata set to the same directory); "" =
	// deploy/salesforce.
	SFMetadataDir                  string
	SFPollInterval, PCPollInterval time.Duration
	Log                            *slog.Logger
	// PCAfterWrite and SFAfterWrite are test hooks called between a writer's external write and its outcome.
	PCAfterWrite, SFAfterWrite func(commandID string)
	// Auditor tunes the auditor (Audit field write-back, chart sampling); zero = write-back off.
	Auditor auditor.Options
	// StageBus, when set, gives each stage (and "provision") its own bus settings, e.g. its own NATS user
	// (the deploy tests run every stage under its least-privilege user). A result with a URL connects
	// over TCP to that server instead of the stack's embedded one.
	StageBus func(stage string) platform.BusConfig
	// SFOrg shapes the emulated Salesforce org (SingleCurrency, Currency, Sandbox, ...); its credentials,
	// metadata (SFMetadataDir) and logger are the stack's own.
	SFOrg sfemu.Options
}

// Emulator credentials the stack configures on both sides.
const (
	SFClientID     = "cosell-connected-app"
	SFClientSecret = "cosell-connected-app-secret"
)

// Stack is a running system.
type Stack struct {
	opts     Options
	NATS     *server.Server
	PC       *pcemu.Emulator
	SF       *sfemu.Emulator
	PCURL    string
	SFURL    string
	Webhook  string
	Status   string
	Auditor  *auditor.Auditor
	Registry *prometheus.Registry
	metrics  *platform.Metrics
	servers  []*http.Server
	tmp      string

	mu       sync.Mutex
	pipeline *pipeline
	harness  *platform.Bus // PCClient's connection
	// webhook is the current pc-ingest handler (swapped on a pipeline restart).
	webhook http.Handler
	status  http.Handler
}

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
	for _, a := range []*string{&opts.PCEmulatorAddr, &opts.SFEmulatorAddr, &opts.WebhookAddr, &opts.StatusAddr} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	if opts.Mapping.Fields == nil {
		opts.Mapping = mapping.Default()
	}
	if opts.SFPollInterval == 0 {
		opts.SFPollInterval = time.Second
	}
	if opts.PCPollInterval == 0 {
		opts.PCPollInterval = time.Minute
	}
	fillBusDefaults(&opts.Bus)
	s := &Stack{opts: opts, Registry: prometheus.NewRegistry()}
	s.metrics = platform.NewMetrics(s.Registry)
	stage.InstrumentClients(platform.NewAPIMetrics(s.Registry))
	stage.InstrumentPCAuth(s.Registry)
	if opts.DataDir == "" {
		dir, err := os.MkdirTemp("", "cosell-stack-")
		if err != nil {
			return nil, err
		}
		s.tmp, opts.DataDir = dir, dir
		s.opts.DataDir = dir
	}
	ns, err := platform.StartEmbedded(opts.DataDir, opts.NATSListen, opts.Log.With("component", "nats"))
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.NATS = ns

	if s.PC, err = pcemu.New(pcemu.Options{Logger: opts.Log.With("component", "pc-emulator"), WebhookBackoff: 100 * time.Millisecond}); err != nil {
		s.Stop()
		return nil, err
	}
	if s.PCURL, err = s.serve(opts.PCEmulatorAddr, s.PC); err != nil {
		s.Stop()
		return nil, err
	}
	s.PC.SetBaseURL(s.PCURL)
	org := opts.SFOrg
	org.ClientID, org.ClientSecret, org.MetadataDir = SFClientID, SFClientSecret, opts.SFMetadataDir
	org.Logger = opts.Log.With("component", "sf-emulator")
	if s.SF, err = sfemu.New(org); err != nil {
		s.Stop()
		return nil, err
	}
	if s.SFURL, err = s.serve(opts.SFEmulatorAddr, s.SF); err != nil {
		s.Stop()
		return nil, err
	}
	hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		h := s.webhook
		s.mu.Unlock()
		if h == nil {
			http.Error(w, "pc-ingest is not running", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
	base, err := s.serve(opts.WebhookAddr, hook)
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.Webhook = base + "/webhooks/partner-center"
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
		s.Stop()
		return nil, err
	}
	return s, nil
}

func fillBusDefaults(c *platform.BusConfig) {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = 168 * time.Hour
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 10 * time.Minute
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 8
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
}

func (s *Stack) serve(addr string, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// PCConfig is the Partner Center configuration of the stages in the harness: the emulator's tenant, signed in
// the delegated way through the shared token store (SeedPCLogin fills it, as `cosell pc login` would).
func (s *Stack) PCConfig() stage.PCConfig {
	return stage.PCConfig{ReferralsURL: s.PCURL, WebhooksURL: s.PCURL, Authority: s.PC.Authority(),
		ClientID: s.PC.ClientID(), Auth: string(pcapi.AuthRefreshToken)}
}

// SeedPCLogin stores a refresh token of the emulator's Referrals Admin user in the cosell_pc_credentials bucket
// unless one is stored: the harness's stand-in for the one-time `cosell pc login`.
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

// PCClientOn builds a stage's Partner Center client, reading the token store over kv (the stage's bus).
func (s *Stack) PCClientOn(ctx context.Context, kv stage.KVOpener) (*pcapi.Client, error) {
	return s.PCConfig().Client(ctx, s.opts.Log, kv)
}

// PCClient builds a Partner Center client for the emulator on a harness connection, provisioning the bus and
// seeding the sign-in first if needed.
func (s *Stack) PCClient(ctx context.Context) (*pcapi.Client, error) {
	s.mu.Lock()
	b := s.harness
	s.mu.Unlock()
	if b == nil {
		var err error
		if b, err = platform.ConnectServer(ctx, s.NATS, s.opts.Bus, "harness", s.opts.Log, s.metrics); err != nil {
			return nil, err
		}
		if err := b.Provision(ctx); err != nil {
			b.Close()
			return nil, err
		}
		s.mu.Lock()
		s.harness = b
		s.mu.Unlock()
	}
	if err := s.SeedPCLogin(ctx, b); err != nil {
		return nil, err
	}
	return s.PCClientOn(ctx, b)
}

// SingleCurrency reports whether the emulated org is single-currency (no CurrencyIsoCode field).
func (s *Stack) SingleCurrency() bool { return s.opts.SFOrg.SingleCurrency }

// SFClient logs a Salesforce client into the emulator.
func (s *Stack) SFClient() (*sfapi.Client, error) {
	return sfapi.New(sfapi.Config{Domain: s.SFURL, ClientID: SFClientID, ClientSecret: SFClientSecret, RequestTimeout: 30 * time.Second})
}

// Connect opens a bus for a stage on the stack's server.
func (s *Stack) Connect(ctx context.Context, stage string) (*platform.Bus, error) {
	if s.opts.StageBus != nil {
		cfg := s.opts.StageBus(stage)
		fillBusDefaults(&cfg)
		if cfg.URL != "" {
			return platform.Connect(ctx, cfg, stage, s.opts.Log.With("stage", stage), s.metrics)
		}
		return platform.ConnectServer(ctx, s.NATS, cfg, stage, s.opts.Log.With("stage", stage), s.metrics)
	}
	return platform.ConnectServer(ctx, s.NATS, s.opts.Bus, stage, s.opts.Log.With("stage", stage), s.metrics)
}

// StartPipeline provisions the bus and starts the six stages.
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
		for _, b := range p.buses {
			b.Abort()
		}
		return err
	}
	bus := func(stage string) (*platform.Bus, error) {
		b, err := s.Connect(ctx, stage)
		if err == nil {
			p.buses = append(p.buses, b)
		}
		return b, err
	}
	admin, err := bus("provision")
	if err != nil {
		return fail(err)
	}
	if err := admin.Provision(ctx); err != nil {
		return fail(fmt.Errorf("provision: %w", err))
	}
	if err := s.SeedPCLogin(ctx, admin); err != nil {
		return fail(fmt.Errorf("partner center sign-in: %w", err))
	}
	log := s.opts.Log
	run := func(name string, f func(context.Context) error) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := f(runCtx); err != nil && runCtx.Err() == nil {
				log.Error("stage stopped", "stage", name, "err", err)
				p.errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}

	// mapper
	mb, err := bus(contracts.StageMapper)
	if err != nil {
		return fail(err)
	}
	m, err := mapper.New(ctx, mb, s.opts.Mapping, log.With("stage", contracts.StageMapper))
	if err != nil {
		return fail(err)
	}
	m.Consume = s.opts.Consume
	run(contracts.StageMapper, m.Run)

	// pc-writer
	pwb, err := bus(contracts.StagePCWriter)
	if err != nil {
		return fail(err)
	}
	pcw, err := s.PCClientOn(ctx, pwb)
	if err != nil {
		return fail(err)
	}
	prec, err := outcome.NewRecorder(ctx, pwb, contracts.StagePCWriter)
	if err != nil {
		return fail(err)
	}
	pw := &pcwriter.Writer{Bus: pwb, PC: pcw, Outcomes: prec, Log: log.With("stage", contracts.StagePCWriter),
		Consume: s.opts.Consume, AfterWrite: s.opts.PCAfterWrite}
	run(contracts.StagePCWriter, pw.Run)

	// sf-writer
	swb, err := bus(contracts.StageSFWriter)
	if err != nil {
		return fail(err)
	}
	sfw, err := s.SFClient()
	if err != nil {
		return fail(err)
	}
	srec, err := outcome.NewRecorder(ctx, swb, contracts.StageSFWriter)
	if err != nil {
		return fail(err)
	}
	sw := &sfwriter.Writer{Bus: swb, SF: sfw, Outcomes: srec, Log: log.With("stage", contracts.StageSFWriter),
		Consume: s.opts.Consume, LimitPause: time.Minute, AfterWrite: s.opts.SFAfterWrite}
	run(contracts.StageSFWriter, sw.Run)

	// sf-ingest
	sib, err := bus(contracts.StageSFIngest)
	if err != nil {
		return fail(err)
	}
	sfi, err := s.SFClient()
	if err != nil {
		return fail(err)
	}
	cps, err := sib.KV(ctx, contracts.BucketCheckpoints)
	if err != nil {
		return fail(err)
	}
	si := &sfingest.Ingest{Bus: sib, SF: sfi, Checkpoints: cps, Log: log.With("stage", contracts.StageSFIngest),
		Extra:  s.opts.Mapping.SalesforceFields(),
		Config: sfingest.Config{Interval: s.opts.SFPollInterval, Overlap: 5 * time.Second, PageSize: 200}}
	run(contracts.StageSFIngest, func(ctx context.Context) error { return sib.RunAsLeader(ctx, "sf-ingest", si.Run) })

	// pc-ingest
	pib, err := bus(contracts.StagePCIngest)
	if err != nil {
		return fail(err)
	}
	pci, err := s.PCClientOn(ctx, pib)
	if err != nil {
		return fail(err)
	}
	pcps, err := pib.KV(ctx, contracts.BucketCheckpoints)
	if err != nil {
		return fail(err)
	}
	host := mustHost(s.PCURL)
	pi := &pcingest.Ingest{Bus: pib, PC: pci, Checkpoints: pcps, Log: log.With("stage", contracts.StagePCIngest),
		Verifier: &pcwebhook.Verifier{TrustedHosts: []string{host}, IntermediateHosts: []string{host}, Roots: s.PC.RootPool(),
			AllowInsecureHTTP: true, AllowedPathPrefix: "/_emulator/cert/"},
		Config: pcingest.Config{MaxBodyBytes: 64 << 10, PollInterval: s.opts.PCPollInterval}}
	pi.Consume = s.opts.Consume
	run(contracts.StagePCIngest, pi.Run)
	if _, err := pci.RegisterWebhook(ctx, s.Webhook, []string{pc.EventReferralCreated, pc.EventReferralUpdated,
		pc.EventRelatedReferralCreated, pc.EventRelatedReferralUpdated}, true); err != nil {
		return fail(fmt.Errorf("register webhook: %w", err))
	}

	// auditor
	ab, err := bus(contracts.StageAuditor)
	if err != nil {
		return fail(err)
	}
	au, err := auditor.New(ctx, ab, log.With("stage", contracts.StageAuditor))
	if err != nil {
		return fail(err)
	}
	au.Consume = s.opts.Consume
	au.Options = s.opts.Auditor
	run(contracts.StageAuditor, au.Run)
	mux := http.NewServeMux()
	au.Routes(mux)
	// /metrics on the status address: the stack's collectors plus this pipeline's auditor (lag, DLQ
	// depth, sync latency), registered afresh on every pipeline start.
	auReg := prometheus.NewRegistry()
	if err := au.Register(auReg); err != nil {
		return fail(err)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{s.Registry, auReg}, promhttp.HandlerOpts{}))

	s.mu.Lock()
	s.pipeline = p
	s.webhook = pi
	s.status = mux
	s.Auditor = au
	s.mu.Unlock()
	return nil
}

func mustHost(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Host
}

// StopPipeline drains the stages (in-flight work finishes and is acked) and closes their connections.
func (s *Stack) StopPipeline() {
	s.mu.Lock()
	p := s.pipeline
	s.pipeline, s.webhook = nil, nil
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
	s.webhook = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
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
	s.mu.Lock()
	if s.harness != nil {
		s.harness.Close()
		s.harness = nil
	}
	s.mu.Unlock()
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
