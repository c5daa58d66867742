package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/clients/pcapi"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

// adminFlags are the connection flags every admin command shares. A flag given on the command line wins
// over its environment variable, which wins over the --config file; the flags have no defaults of their
// own, so --help never prints a URL or a path with a secret in it.
type adminFlags struct {
	nats, creds, login, config string
	connectTimeout             time.Duration
}

// addAdminFlags adds --nats, --nats-creds and --config to fs (a group's persistent flags, so they may come
// anywhere after the group's name, or a command's own).
func addAdminFlags(fs *pflag.FlagSet) *adminFlags {
	f := &adminFlags{}
	fs.StringVar(&f.nats, "nats", "", "NATS URL (default: env COSELL_NATS_URL); user and TLS from COSELL_NATS_USER / COSELL_NATS_PASSWORD / COSELL_NATS_TLS_*")
	fs.StringVar(&f.creds, "nats-creds", "", "NATS user credentials (.creds) file (default: env COSELL_NATS_CREDS)")
	fs.StringVar(&f.login, "nats-login", "", "NATS login file, KEY=VALUE as cosell run writes it (default: env COSELL_NATS_LOGIN_FILE; for a loopback URL, the one cosell run left for it)")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 15*time.Second, "how long to keep trying to reach NATS")
	fs.StringVar(&f.config, "config", "", "KEY=VALUE file with COSELL_PC_* and COSELL_SF_* settings (default: env "+platform.ConfigFileEnv+"); the environment wins over it")
	return f
}

// lookup reads a setting: the flag that names it, then the environment, then (through LoadConfig) the
// --config file.
func (f *adminFlags) lookup(name string) (string, bool) {
	for _, o := range []struct{ env, flag string }{
		{platform.ConfigFileEnv, f.config}, {"COSELL_NATS_URL", f.nats}, {"COSELL_NATS_CREDS", f.creds}, {"COSELL_NATS_LOGIN_FILE", f.login},
	} {
		if name == o.env && o.flag != "" {
			return o.flag, true
		}
	}
	return os.LookupEnv(name)
}

// bus connects to NATS as the cli; it never starts an embedded server.
func (f *adminFlags) bus(ctx context.Context) (*platform.Bus, error) {
	var cfg platform.BusConfig
	if err := platform.LoadConfig(&cfg, f.lookup); err != nil {
		return nil, err
	}
	if cfg.URL == "" {
		return nil, errors.New("no NATS URL: pass --nats or set COSELL_NATS_URL (e.g. nats://127.0.0.1:4222 while `cosell run` is up)")
	}
	cctx, cancel := context.WithTimeout(ctx, f.connectTimeout)
	defer cancel()
	return platform.Connect(cctx, cfg, "cli", slog.New(slog.DiscardHandler), nil)
}

// auditorOn builds a read-only auditor view over the bus (links, timelines, dead letters, status).
func auditorOn(ctx context.Context, bus *platform.Bus) (*auditor.Auditor, error) {
	a, err := auditor.New(ctx, bus, slog.New(slog.DiscardHandler))
	if a != nil {
		// Its re-drives, purges and drift fixes are audited as this machine's user.
		a.Actor = auditor.CLIOperator()
	}
	return a, err
}

func (f *adminFlags) pc(ctx context.Context) (*pcapi.Client, error) {
	c, _, err := pcClient(ctx, f.lookup, f.bus)
	return c, err
}

// pcClient builds the Partner Center client the way the stages do. With COSELL_PC_AUTH=refresh-token it reads
// the shared token store over a NATS connection from connect (closed when ctx ends).
func pcClient(ctx context.Context, lookup func(string) (string, bool), connect func(context.Context) (*platform.Bus, error)) (*pcapi.Client, stage.PCConfig, error) {
	var cfg stage.PCConfig
	if err := platform.LoadConfig(&cfg, lookup); err != nil {
		return nil, cfg, err
	}
	if cfg.TokenURL != "" {
		return nil, cfg, stage.ErrAppOnly
	}
	var kv stage.KVOpener
	if cfg.Auth == string(pcapi.AuthRefreshToken) {
		bus, err := connect(ctx)
		if err != nil {
			return nil, cfg, fmt.Errorf("the Partner Center refresh token is kept in NATS (bucket %s): %w", contracts.BucketPCCredentials, err)
		}
		context.AfterFunc(ctx, bus.Close)
		kv = bus
	}
	c, err := cfg.Client(ctx, slog.New(slog.DiscardHandler), kv, nil)
	return c, cfg, err
}

func (f *adminFlags) sf(ctx context.Context) (*sfapi.Client, error) {
	var cfg sfapi.Config
	if err := platform.LoadConfig(&cfg, f.lookup); err != nil {
		return nil, err
	}
	return sfapi.New(ctx, cfg)
}
