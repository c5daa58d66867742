package platform

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// ConfigFileEnv names the variable that points at an optional KEY=VALUE file; values in the environment
// win over values in the file, which win over `default` tags.
const ConfigFileEnv = "COSELL_CONFIG_FILE"

// BusConfig holds the NATS settings every service shares.
type BusConfig struct {
	URL             string        `env:"COSELL_NATS_URL" help:"nats://host:4222; a stage refuses to start without it unless COSELL_NATS_EMBEDDED=true"`
	Embedded        bool          `env:"COSELL_NATS_EMBEDDED" help:"true = no COSELL_NATS_URL: run an embedded nats-server for development, in a binary built with -tags embeddednats as make build builds it (the images' binaries refuse it) (store in COSELL_DATA_DIR; on 127.0.0.1 unless COSELL_NATS_LISTEN names another host; it admits only a login generated at start, written 0600 to COSELL_DATA_DIR/nats-login.env)"`
	CredsFile       string        `env:"COSELL_NATS_CREDS" help:"NATS user credentials (.creds) file"`
	User            string        `env:"COSELL_NATS_USER" help:"NATS user name (static accounts, e.g. deploy/nats/cosell-auth.conf)"`
	Password        string        `env:"COSELL_NATS_PASSWORD" help:"that user's password"`
	LoginFile       string        `env:"COSELL_NATS_LOGIN_FILE" help:"the login file an embedded nats-server wrote (COSELL_DATA_DIR/nats-login.env: its URL, user and password); unset with a loopback COSELL_NATS_URL = the one a cosell run on this machine wrote for that address"`
	TLSCA           string        `env:"COSELL_NATS_TLS_CA" help:"PEM file of the CA that signed the NATS server certificate"`
	TLSCert         string        `env:"COSELL_NATS_TLS_CERT" help:"PEM client certificate for NATS mutual TLS"`
	TLSKey          string        `env:"COSELL_NATS_TLS_KEY" help:"PEM client key for NATS mutual TLS"`
	DataDir         string        `env:"COSELL_DATA_DIR" default:"data" help:"the embedded server's JetStream store directory"`
	EmbeddedListen  string        `env:"COSELL_NATS_LISTEN" default:"127.0.0.1:-1" help:"the embedded server's client address (port -1 = random; a host other than loopback exposes it to the network, behind its generated login)"`
	Replicas        int           `env:"COSELL_STREAM_REPLICAS" default:"1"`
	MaxAge          time.Duration `env:"COSELL_STREAM_MAX_AGE" default:"168h"`
	DuplicateWindow time.Duration `env:"COSELL_DUPLICATE_WINDOW" default:"10m"`
	MaxDeliver      int           `env:"COSELL_MAX_DELIVER" default:"8"`
	AckWait         time.Duration `env:"COSELL_ACK_WAIT" default:"30s"`
	Provision       bool          `env:"COSELL_PROVISION" default:"true"`
}

// Common is the settings struct every service embeds in its own config.
type Common struct {
	Bus       BusConfig
	AdminAddr string `env:"COSELL_ADMIN_ADDR" default:"127.0.0.1:0" validate:"hostport"`
	LogLevel  string `env:"COSELL_LOG_LEVEL" default:"info" validate:"oneof=debug|info|warn|error"`
	Runtime   RuntimeConfig
}

var durationType = reflect.TypeOf(time.Duration(0))

// LoadConfig fills dst (a pointer to a struct) from environment variables named by `env:"COSELL_X"` tags,
// then from an optional KEY=VALUE file named by COSELL_CONFIG_FILE (env wins), then `default:"..."` tags.
// `required:"true"` fails when unset; `validate:"url|hostport|oneof=a|b"` checks the value; the error
// names every bad variable at once so an operator fixes them in one go. An empty value counts as unset.
// lookup nil means os.LookupEnv.
func LoadConfig(dst any, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: LoadConfig needs a non-nil pointer to a struct, got %T", dst)
	}
	file := map[string]string{}
	var problems []string
	if name, ok := lookup(ConfigFileEnv); ok && strings.TrimSpace(name) != "" {
		f, err := readConfigFile(strings.TrimSpace(name))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", ConfigFileEnv, err))
		}
		file = f
	}
	l := loader{lookup: lookup, file: file}
	l.problems = problems
	l.walk(rv.Elem(), "")
	if len(l.problems) > 0 {
		// A bad value is quoted in its problem: a URL in it keeps its credentials out of the message.
		return errors.New(Redact("config: " + strings.Join(l.problems, "; ")))
	}
	return nil
}

type loader struct {
	lookup   func(string) (string, bool)
	file     map[string]string
	problems []string
}

func (l *loader) walk(v reflect.Value, path string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		name, hasEnv := f.Tag.Lookup("env")
		if !hasEnv {
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				l.walk(fv, path+f.Name+".")
			}
			continue
		}
		raw, ok := l.value(name, f.Tag)
		if !ok {
			if f.Tag.Get("required") == "true" {
				msg := name + ": required, not set"
				if help := f.Tag.Get("help"); help != "" {
					msg += " (" + help + ")"
				}
				l.problems = append(l.problems, msg)
			}
			continue
		}
		if err := setField(fv, raw, f.Tag.Get("validate")); err != nil {
			l.problems = append(l.problems, name+": "+err.Error())
		}
	}
}

// value resolves one variable: environment, then the config file, then the default tag.
func (l *loader) value(name string, tag reflect.StructTag) (string, bool) {
	if v, ok := l.lookup(name); ok && v != "" {
		return v, true
	}
	if v, ok := l.file[name]; ok && v != "" {
		return v, true
	}
	if v, ok := tag.Lookup("default"); ok && v != "" {
		return v, true
	}
	return "", false
}

func setField(fv reflect.Value, raw, rule string) error {
	if fv.Type() == durationType {
		d, err := time.ParseDuration(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 30s, 5m, 1h)", raw)
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		if err := validate(raw, rule); err != nil {
			return err
		}
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", raw)
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, fv.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not an integer", raw)
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(strings.TrimSpace(raw), 10, fv.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a non-negative integer", raw)
		}
		fv.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(strings.TrimSpace(raw), fv.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a number", raw)
		}
		fv.SetFloat(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported field type %s", fv.Type())
		}
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			if err := validate(s, rule); err != nil {
				return err
			}
			items = append(items, s)
		}
		fv.Set(reflect.ValueOf(items).Convert(fv.Type()))
	default:
		return fmt.Errorf("unsupported field type %s", fv.Type())
	}
	return nil
}

func validate(v, rule string) error {
	switch {
	case rule == "":
		return nil
	case rule == "url":
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || u.Host == "" {
			return fmt.Errorf("%q is not an absolute URL (e.g. https://host/path)", v)
		}
	case rule == "hostport":
		_, port, err := net.SplitHostPort(v)
		if err == nil {
			var n int
			n, err = strconv.Atoi(port)
			if err == nil && (n < -1 || n > 65535) {
				err = errors.New("port out of range")
			}
		}
		if err != nil {
			return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:8080)", v)
		}
	case strings.HasPrefix(rule, "oneof="):
		allowed := strings.Split(strings.TrimPrefix(rule, "oneof="), "|")
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
	case rule == "memsize":
		_, err := ParseMemoryLimit(v)
		return err
	default:
		return fmt.Errorf("unknown validate rule %q", rule)
	}
	return nil
}

// readConfigFile parses KEY=VALUE lines; blank lines and # comments are skipped, an `export ` prefix and
// matching surrounding quotes are allowed so the same file can be sourced by a shell.
func readConfigFile(name string) (map[string]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return out, fmt.Errorf("%s:%d: not KEY=VALUE", name, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
