package platform

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	var c Common
	if err := LoadConfig(&c, envMap(nil)); err != nil {
		t.Fatal(err)
	}
	want := Common{
		Bus: BusConfig{
			DataDir: "data", EmbeddedListen: "127.0.0.1:-1", Replicas: 1, MaxAge: 168 * time.Hour,
			DuplicateWindow: 10 * time.Minute, MaxDeliver: 8, AckWait: 30 * time.Second, Provision: true,
		},
		AdminAddr: "127.0.0.1:0",
		LogLevel:  "info",
		Runtime:   RuntimeConfig{MemoryLimit: "24MiB"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
}

func TestLoadConfigEnvOverridesFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "cosell.env")
	content := "# comment\n\nCOSELL_MAX_DELIVER=5\nexport COSELL_ACK_WAIT=1m\nCOSELL_NATS_URL=\"nats://file:4222\"\nCOSELL_LOG_LEVEL=debug\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var c Common
	err := LoadConfig(&c, envMap(map[string]string{
		ConfigFileEnv:        file,
		"COSELL_MAX_DELIVER": "9",
		"COSELL_LOG_LEVEL":   "", // empty counts as unset: the file's value applies
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bus.MaxDeliver != 9 {
		t.Errorf("MaxDeliver = %d, want 9 (env wins over file)", c.Bus.MaxDeliver)
	}
	if c.Bus.AckWait != time.Minute {
		t.Errorf("AckWait = %s, want 1m (from file)", c.Bus.AckWait)
	}
	if c.Bus.URL != "nats://file:4222" {
		t.Errorf("URL = %q, want quotes stripped", c.Bus.URL)
	}
	if c.LogLevel != "debug" {
		t.Errorf("LogLevel = %q, want debug from file", c.LogLevel)
	}
	if c.Bus.Replicas != 1 {
		t.Errorf("Replicas = %d, want default 1", c.Bus.Replicas)
	}
}

type kindsConfig struct {
	S     string        `env:"K_S"`
	B     bool          `env:"K_B"`
	I     int           `env:"K_I"`
	I64   int64         `env:"K_I64"`
	U64   uint64        `env:"K_U64"`
	F     float64       `env:"K_F"`
	D     time.Duration `env:"K_D"`
	L     []string      `env:"K_L"`
	URL   string        `env:"K_URL" validate:"url"`
	HP    string        `env:"K_HP" validate:"hostport"`
	One   string        `env:"K_ONE" validate:"oneof=a|b|c"`
	Inner struct {
		Deep string `env:"K_DEEP" default:"deep"`
	}
	untagged string
}

func TestLoadConfigKinds(t *testing.T) {
	t.Parallel()
	var c kindsConfig
	err := LoadConfig(&c, envMap(map[string]string{
		"K_S": "hello", "K_B": "true", "K_I": "-7", "K_I64": "9000000000", "K_U64": "18446744073709551615",
		"K_F": "0.25", "K_D": "1h30m", "K_L": " a, b ,,c ", "K_URL": "https://login.salesforce.com",
		"K_HP": ":8080", "K_ONE": "b",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.S != "hello" || !c.B || c.I != -7 || c.I64 != 9000000000 || c.U64 != 18446744073709551615 ||
		c.F != 0.25 || c.D != 90*time.Minute || !reflect.DeepEqual(c.L, []string{"a", "b", "c"}) ||
		c.URL != "https://login.salesforce.com" || c.HP != ":8080" || c.One != "b" || c.Inner.Deep != "deep" {
		t.Fatalf("got %+v", c)
	}
}

type requiredConfig struct {
	SFURL string `env:"COSELL_SF_URL" required:"true" validate:"url" help:"the Salesforce login URL, e.g. https://login.salesforce.com"`
	Bus   BusConfig
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, key, value, want string
	}{
		{"int", "K_I", "abc", `K_I: "abc" is not an integer`},
		{"int64", "K_I64", "1.5", `K_I64: "1.5" is not an integer`},
		{"uint64", "K_U64", "-1", `K_U64: "-1" is not a non-negative integer`},
		{"float", "K_F", "x", `K_F: "x" is not a number`},
		{"bool", "K_B", "yes please", `K_B: "yes please" is not a boolean`},
		{"duration", "K_D", "10", `K_D: "10" is not a duration`},
		{"url", "K_URL", "login.salesforce.com", `K_URL: "login.salesforce.com" is not an absolute URL`},
		{"hostport", "K_HP", "localhost", `K_HP: "localhost" is not host:port`},
		{"hostport port", "K_HP", "localhost:http", `K_HP: "localhost:http" is not host:port`},
		{"oneof", "K_ONE", "d", `K_ONE: "d" is not one of a, b, c`},
		{"list item", "K_L", "x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c kindsConfig
			err := LoadConfig(&c, envMap(map[string]string{tt.key: tt.value}))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), "config: "+tt.want) {
				t.Fatalf("err = %v, want it to start with %q", err, "config: "+tt.want)
			}
		})
	}
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	var c requiredConfig
	err := LoadConfig(&c, envMap(map[string]string{"COSELL_MAX_DELIVER": "abc"}))
	// Fields are walked in declaration order; SFURL comes first.
	want := `config: COSELL_SF_URL: required, not set (the Salesforce login URL, e.g. https://login.salesforce.com); ` +
		`COSELL_MAX_DELIVER: "abc" is not an integer`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}

func TestLoadConfigFileProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("COSELL_MAX_DELIVER=3\nnot a pair\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string]string{"missing": filepath.Join(dir, "nope.env"), "malformed": bad} {
		t.Run(name, func(t *testing.T) {
			var c Common
			err := LoadConfig(&c, envMap(map[string]string{ConfigFileEnv: file}))
			if err == nil || !strings.Contains(err.Error(), ConfigFileEnv+": ") || !strings.Contains(err.Error(), file) {
				t.Fatalf("err = %v, want it to name %s and the file", err, ConfigFileEnv)
			}
		})
	}
	t.Run("file value invalid", func(t *testing.T) {
		f := filepath.Join(dir, "val.env")
		if err := os.WriteFile(f, []byte("COSELL_ACK_WAIT=soon\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		var c Common
		err := LoadConfig(&c, envMap(map[string]string{ConfigFileEnv: f}))
		if err == nil || !strings.Contains(err.Error(), `COSELL_ACK_WAIT: "soon" is not a duration`) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLoadConfigNeedsStructPointer(t *testing.T) {
	t.Parallel()
	var c Common
	for _, dst := range []any{c, nil, (*Common)(nil), new(int)} {
		if err := LoadConfig(dst, envMap(nil)); err == nil {
			t.Errorf("LoadConfig(%T) succeeded, want an error", dst)
		}
	}
}

func TestLoadConfigUsesProcessEnvWhenLookupNil(t *testing.T) {
	t.Setenv("COSELL_LOG_LEVEL", "warn")
	var c Common
	if err := LoadConfig(&c, nil); err != nil {
		t.Fatal(err)
	}
	if c.LogLevel != "warn" {
		t.Fatalf("LogLevel = %q", c.LogLevel)
	}
}
