package platform

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/nats-io/nats-server/v2/server"
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
	Server *server.Server

	cfg       BusConfig
	stage     string
	log       *slog.Logger
	metrics   *Metrics
	ownServer bool
	closed    chan struct{}

	kv      handles[jetstream.KeyValue]
	streams handles[jetstream.Stream]
}

// Connect connects to cfg.URL, or, when it is empty, starts an embedded nats-server (JetStream on, file
// store in cfg.DataDir, a generated login: StartEmbeddedWithLogin) and connects to it in-process. The login
// comes from cfg (user/password, creds file), else from cfg.LoginFile, else, for a loopback URL, from the
// login file a `cosell run` on this machine wrote for that address (RunLoginFile).
// m nil means metrics are collected but not registered anywhere.
func Connect(ctx context.Context, cfg BusConfig, stage string, log *slog.Logger, m *Metrics) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.URL == "" && cfg.LoginFile == "" {
		ns, login, err := StartEmbeddedWithLogin(cfg.DataDir, cfg.EmbeddedListen, log)
		if err != nil {
			return nil, err
		}
		cfg.User, cfg.Password = login.User, login.Password
		b, err := ConnectServer(ctx, ns, cfg, stage, log, m)
		if err != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, err
		}
		b.ownServer = true
		return b, nil
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
// embedded server among its six buses. The bus does not own ns: Close leaves it running.
func ConnectServer(ctx context.Context, ns *server.Server, cfg BusConfig, stage string, log *slog.Logger, m *Metrics) (*Bus, error) {
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

// serverLogger routes nats-server's log lines into slog; its notices are start-up chatter, so debug.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
