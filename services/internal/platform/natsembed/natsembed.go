// Package natsembed runs nats-server inside the process: the tests' server, `cosell nats`, `cosell run`'s,
// and a stage's own under COSELL_NATS_EMBEDDED. It is the only package that links nats-server into a binary,
// so the stage binaries the images ship (built without the embeddednats tag) leave its ~6 MB out.
package natsembed

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/nats-io/nats-server/v2/server"
)

// Start starts a nats-server with JetStream and a file store in dataDir, listening on listen
// (host:port, port -1 = random; no host = 127.0.0.1), and waits until it accepts connections. It admits
// anyone who reaches the port: the tests' server and `cosell nats`; a stage's and `cosell run`'s server
// is StartWithLogin's.
func Start(dataDir, listen string, log *slog.Logger) (*server.Server, error) {
	return start(dataDir, listen, nil, log)
}

// StartWithLogin starts the server Start does, admitting only the user platform.EmbeddedUser with a
// password generated now, and writes that login to dataDir/platform.LoginFileName (mode 0600).
func StartWithLogin(dataDir, listen string, log *slog.Logger) (*server.Server, platform.Login, error) {
	login := platform.Login{User: platform.EmbeddedUser, Password: rand.Text()}
	ns, err := start(dataDir, listen, []*server.User{{Username: login.User, Password: login.Password}}, log)
	if err != nil {
		return nil, platform.Login{}, err
	}
	login.URL = ns.ClientURL()
	path := filepath.Join(dataDir, platform.LoginFileName)
	if err := login.WriteFile(path); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, platform.Login{}, err
	}
	if log != nil {
		log.Info("embedded nats-server admits only its generated login", "user", login.User, "login_file", path)
	}
	return ns, login, nil
}

// Connect starts a server of the bus's own (StartWithLogin: store in cfg.DataDir, on cfg.EmbeddedListen)
// and connects to it in-process; closing the bus shuts the server down. A stage's COSELL_NATS_EMBEDDED.
func Connect(ctx context.Context, cfg platform.BusConfig, stage string, log *slog.Logger, m *platform.Metrics) (*platform.Bus, error) {
	ns, login, err := StartWithLogin(cfg.DataDir, cfg.EmbeddedListen, log)
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = login.User, login.Password
	b, err := platform.ConnectServer(ctx, ns, cfg, stage, log, m)
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	b.OwnServer()
	return b, nil
}

func start(dataDir, listen string, users []*server.User, log *slog.Logger) (*server.Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen port %q: %w", portStr, err)
	}
	if host == "" {
		// ":4222" would bind every interface; the embedded server is for this machine unless a host says otherwise.
		host = "127.0.0.1"
	}
	if !platform.IsLoopback(host) {
		log.Warn("embedded nats-server listens beyond this machine", "listen", net.JoinHostPort(host, portStr), "login_required", len(users) > 0)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "cosell-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dataDir,
		NoSigs:     true,
		Users:      users,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(serverLogger{log.With("component", "nats-server")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("embedded nats: not ready for connections after 10s")
	}
	log.Info("embedded nats-server started", "url", ns.ClientURL(), "store", dataDir)
	return ns, nil
}

// serverLogger routes nats-server's log lines into slog; its notices are start-up chatter, so debug.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
