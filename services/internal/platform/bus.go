package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bus is one service's connection to NATS JetStream, optionally owning the embedded server it runs on.
// The connection is its own: stages publish, consume, read streams and use KV through its methods (and the
// small interfaces StreamReader, ...), never through raw JetStream.
type Bus struct {
	conn *nats.Conn
	js   jetstream.JetStream
	// Server is the embedded nats-server, nil when connected to an external one.
	Server InProcessServer

	cfg       BusConfig
	stage     string
	log       *slog.Logger
	metrics   *Metrics
	ownServer bool
	closed    chan struct{}

	kv      handles[jetstream.KeyValue]
	streams handles[jetstream.Stream]
}

// InProcessServer is an embedded nats-server (natsembed starts one) as a bus uses it: connected to
// in-process, and shut down by the bus that owns it. The stage binaries do not link the server.
type InProcessServer interface {
	ClientURL() string
	InProcessConn() (net.Conn, error)
	Running() bool
	Shutdown()
	WaitForShutdown()
}

// ErrNoServer is Connect's answer to a config that names no server: no URL and no login file.
var ErrNoServer = errors.New("bus: no COSELL_NATS_URL and no COSELL_NATS_LOGIN_FILE: no NATS server to connect to")

// Connect connects to cfg.URL (or the URL of cfg.LoginFile). The login comes from cfg (user/password, creds
// file), else from cfg.LoginFile, else, for a loopback URL, from the login file a `cosell run` on this
// machine wrote for that address (RunLoginFile). An embedded server is natsembed.Connect's.
// m nil means metrics are collected but not registered anywhere.
func Connect(ctx context.Context, cfg BusConfig, stage string, log *slog.Logger, m *Metrics) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.URL == "" && cfg.LoginFile == "" {
		return nil, ErrNoServer
	}
	if err := cfg.findLogin(log); err != nil {
		return nil, err
	}
	b := newBus(cfg, stage, log, m)
	opts := append(b.connOptions(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
	)
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	// The first connection is retried until ctx ends, so a service started before NATS waits for it
	// instead of crash-looping.
	wait := 500 * time.Millisecond
	for {
		nc, err := nats.Connect(cfg.URL, opts...)
		if err == nil {
			return b.attach(nc)
		}
		log.Warn("nats connect failed, retrying", "url", Redact(cfg.URL), "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bus: connect %s: %w (gave up: %v)", Redact(cfg.URL), err, context.Cause(ctx))
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// ConnectServer connects in-process to an already running server; the all-in-one runner shares one
// embedded server among its six buses. The bus does not own ns: Close leaves it running (unless OwnServer).
func ConnectServer(ctx context.Context, ns InProcessServer, cfg BusConfig, stage string, log *slog.Logger, m *Metrics) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := newBus(cfg, stage, log, m)
	nc, err := nats.Connect(ns.ClientURL(), append(b.connOptions(), nats.InProcessServer(ns))...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to embedded server: %w", err)
	}
	b.Server = ns
	return b.attach(nc)
}

func newBus(cfg BusConfig, stage string, log *slog.Logger, m *Metrics) *Bus {
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Bus{cfg: cfg, stage: stage, log: log, metrics: m, closed: make(chan struct{})}
}

// InboxPrefix is the reply-subject prefix of a stage's connections: with one prefix per stage, a NATS
// user can be allowed its own replies only (deploy/nats/cosell-auth.conf), never another stage's deliveries.
func InboxPrefix(stage string) string { return "_INBOX_" + contracts.Token(stage) }

func (b *Bus) connOptions() []nats.Option {
	opts := b.baseConnOptions()
	if b.cfg.User != "" {
		opts = append(opts, nats.UserInfo(b.cfg.User, b.cfg.Password))
	}
	return opts
}

func (b *Bus) baseConnOptions() []nats.Option {
	return []nats.Option{
		nats.Name("cosell-" + b.stage),
		nats.CustomInboxPrefix(InboxPrefix(b.stage)),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { b.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			b.log.Error("nats async error", "subscription", subj, "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }),
	}
}

func (b *Bus) attach(nc *nats.Conn) (*Bus, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(asyncAckTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	b.conn, b.js = nc, js
	b.log.Info("nats connected", "url", nc.ConnectedUrlRedacted(), "embedded", b.Server != nil)
	return b, nil
}

// OwnServer makes Close shut the bus's embedded server down too: the server was started for this bus alone.
func (b *Bus) OwnServer() { b.ownServer = b.Server != nil }

// Stage is the service this bus belongs to; it labels metrics, logs and dead letters.
func (b *Bus) Stage() string { return b.stage }

// Config returns the settings the bus was built with.
func (b *Bus) Config() BusConfig { return b.cfg }

// Metrics returns the collectors the bus records into.
func (b *Bus) Metrics() *Metrics { return b.metrics }

// Check reports whether the connection is up; use it as an Admin readiness check.
func (b *Bus) Check(context.Context) error {
	if s := b.conn.Status(); s != nats.CONNECTED {
		return fmt.Errorf("nats %s", s)
	}
	return nil
}

// Close drains the connection (pending acks and publishes are flushed) and shuts the embedded server
// down when this bus started it.
func (b *Bus) Close() {
	if b.conn != nil && !b.conn.IsClosed() {
		if err := b.conn.Drain(); err != nil {
			b.conn.Close()
		}
		select {
		case <-b.closed:
		case <-time.After(10 * time.Second):
			b.conn.Close()
		}
	}
	if b.ownServer && b.Server != nil {
		b.Server.Shutdown()
		b.Server.WaitForShutdown()
	}
}

// Abort cuts the connection at once, the way a killed process's is cut: nothing pending is flushed and
// nothing in flight is acked (the harness's kill -9; leases and redeliveries must cope).
func (b *Bus) Abort() {
	if b.conn != nil {
		b.conn.Close()
	}
}

// ConnectedURL is the server the bus is connected to, with any password redacted.
func (b *Bus) ConnectedURL() string { return b.conn.ConnectedUrlRedacted() }
