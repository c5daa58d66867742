package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LoginFileName is the file, in the embedded server's data directory, that holds its generated login.
const LoginFileName = "nats-login.env"

// EmbeddedUser is the one user an embedded server started with a login admits.
const EmbeddedUser = "cosell"

// Login is how to reach an embedded nats-server: its client URL and the user it admits.
type Login struct {
	URL, User, Password string
}

// Apply puts the login into cfg (URL only when cfg names none).
func (l Login) Apply(cfg *BusConfig) {
	if cfg.URL == "" {
		cfg.URL = l.URL
	}
	cfg.User, cfg.Password = l.User, l.Password
}

// WriteFile writes the login as KEY=VALUE lines (the COSELL_CONFIG_FILE format, also `source`-able by a
// shell), mode 0600: only the user who started the server may read it.
func (l Login) WriteFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("nats login file: %w", err)
	}
	body := fmt.Sprintf("# The login of the embedded nats-server at %s, generated at %s; it changes at every start.\n"+
		"export COSELL_NATS_URL=%s\nexport COSELL_NATS_USER=%s\nexport COSELL_NATS_PASSWORD=%s\n",
		l.URL, time.Now().UTC().Format(time.RFC3339), l.URL, l.User, l.Password)
	// Written beside and renamed, so a reader never sees half a file and the mode is 0600 from the start.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".nats-login-*")
	if err != nil {
		return fmt.Errorf("nats login file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(body); err != nil {
		tmp.Close()
		return fmt.Errorf("nats login file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("nats login file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("nats login file: %w", err)
	}
	return nil
}

// ReadLoginFile reads a login file WriteFile wrote.
func ReadLoginFile(path string) (Login, error) {
	kv, err := readConfigFile(path)
	if err != nil {
		return Login{}, fmt.Errorf("COSELL_NATS_LOGIN_FILE: %w", err)
	}
	l := Login{URL: kv["COSELL_NATS_URL"], User: kv["COSELL_NATS_USER"], Password: kv["COSELL_NATS_PASSWORD"]}
	if l.User == "" || l.Password == "" {
		return Login{}, fmt.Errorf("COSELL_NATS_LOGIN_FILE %s: no COSELL_NATS_USER / COSELL_NATS_PASSWORD in it", path)
	}
	return l, nil
}

// RunLoginFile is where `cosell run` leaves the login of its embedded server listening on natsURL's host
// and port ($XDG_CONFIG_HOME/cosell, or the platform's user configuration directory), so the CLI and any
// stage on this machine find it from the URL alone; "" when there is no such directory or URL.
func RunLoginFile(natsURL string) string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(natsURL, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil || u.Host == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "4222"
	}
	host := strings.Trim(u.Hostname(), "[]")
	return filepath.Join(dir, "cosell", "nats-login-"+strings.ReplaceAll(host, ":", "_")+"-"+port+".env")
}

// findLogin completes cfg's login for Connect: an explicit user or creds file wins, then COSELL_NATS_LOGIN_FILE,
// then the file of a `cosell run` on this machine when the URL is a loopback address.
func (cfg *BusConfig) findLogin(log *slog.Logger) error {
	if cfg.User != "" || cfg.CredsFile != "" {
		return nil
	}
	if cfg.LoginFile != "" {
		l, err := ReadLoginFile(cfg.LoginFile)
		if err != nil {
			return err
		}
		l.Apply(cfg)
		return nil
	}
	if !loopbackURL(cfg.URL) {
		return nil
	}
	path := RunLoginFile(cfg.URL)
	if path == "" {
		return nil
	}
	l, err := ReadLoginFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	log.Info("nats: using the login of the cosell run on this machine", "file", path)
	l.Apply(cfg)
	return nil
}

func loopbackURL(natsURL string) bool {
	first, _, _ := strings.Cut(natsURL, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil {
		return false
	}
	return IsLoopback(u.Hostname())
}

// IsLoopback reports whether host (a name or an address, IPv6 bracketed or not) is this machine only.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.IsLoopback()
}
