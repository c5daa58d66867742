package mapping

import (
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	k8s "github.com/cosell-dev/cosell/deploy/k8s"
	metadata "github.com/cosell-dev/cosell/deploy/salesforce"
)

// Config says where a mapping comes from. The mapper, sf-ingest and the cosell CLI read the same two
// settings, so a customised file means the same fields to each of them.
type Config struct {
	File string `env:"COSELL_MAPPING_FILE" help:"the mapping file (YAML): the mapper decides with it, sf-ingest polls the Salesforce fields it names (give both the same file); empty = the default built into the binary (cosell mapping default)"`
	// Metadata is an SFDX project directory the mapping's Salesforce fields are checked against, for an org
	// with fields of its own; empty = deploy/salesforce as built into the binary.
	Metadata string `env:"COSELL_MAPPING_METADATA" help:"an SFDX project directory (e.g. your org's retrieved metadata, with its own custom fields and stages) the mapping is checked against; empty = deploy/salesforce built into the binary"`
	// Overrides of the file's settings, checked like the file; empty = the file's value.
	Hold       string `env:"COSELL_STAGE_HOLD" help:"overrides the mapping's hold stage (where received referrals wait)"`
	Active     string `env:"COSELL_STAGE_ACTIVE" help:"overrides the mapping's active stage (an accepted referral)"`
	Won        string `env:"COSELL_STAGE_WON" help:"overrides the mapping's won stage"`
	Lost       string `env:"COSELL_STAGE_LOST" help:"overrides the mapping's lost stage"`
	Currency   string `env:"COSELL_DEFAULT_CURRENCY" help:"overrides the mapping's default currency"`
	NameMark   string `env:"COSELL_NAME_MARK" help:"overrides the mapping's nameMark: true appends ✔ (in step) or ✖ (failed) to the Opportunity Name, false leaves the Name alone"`
	CoSellOnly string `env:"COSELL_COSELL_ONLY" help:"overrides the mapping's coSellOnly: true (default) brings every Partner Center referral in as an Opportunity; false brings lead referrals (incoming, Independent, marketing-qualified or direct from a customer) in as Salesforce Leads"`
}

// override applies the settings c overrides to m and notes where each came from, for problems.
func (c Config) override(m *Mapping) Problems {
	for _, o := range []struct {
		key, env, value string
		to              *string
	}{
		{"stages.hold", "COSELL_STAGE_HOLD", c.Hold, &m.Stages.Hold},
		{"stages.active", "COSELL_STAGE_ACTIVE", c.Active, &m.Stages.Active},
		{"stages.won", "COSELL_STAGE_WON", c.Won, &m.Stages.Won},
		{"stages.lost", "COSELL_STAGE_LOST", c.Lost, &m.Stages.Lost},
		{"defaultCurrency", "COSELL_DEFAULT_CURRENCY", c.Currency, &m.DefaultCurrency},
	} {
		if v := strings.TrimSpace(o.value); v != "" {
			*o.to = v
			if m.from == nil {
				m.from = map[string]string{}
			}
			m.from[o.key] = o.env
		}
	}
	if v := strings.TrimSpace(c.NameMark); v != "" {
		b, ok := parseBool(v)
		if !ok {
			return Problems{{File: "COSELL_NAME_MARK", Message: fmt.Sprintf("COSELL_NAME_MARK %q is not true or false", c.NameMark), Fix: "set COSELL_NAME_MARK=true or COSELL_NAME_MARK=false"}}
		}
		m.NameMark = b
	}
	if v := strings.TrimSpace(c.CoSellOnly); v != "" {
		b, ok := parseBool(v)
		if !ok {
			return Problems{{File: "COSELL_COSELL_ONLY", Message: fmt.Sprintf("COSELL_COSELL_ONLY %q is not true or false", c.CoSellOnly), Fix: "set COSELL_COSELL_ONLY=true or COSELL_COSELL_ONLY=false"}}
		}
		m.CoSellOnly = b
	}
	if c.Currency != "" && code(m.DefaultCurrency, 3) == nil {
		return Problems{m.problem("defaultCurrency", "", "use an ISO-4217 code such as USD", "defaultCurrency %q is not a three-letter currency code", c.Currency)}
	}
	return nil
}

// DefaultSource is the name problems of the built-in mapping are reported under.
const DefaultSource = "built-in mapping"

// DefaultYAML returns the text of the built-in mapping: deploy/k8s/base/mapping.yaml, which is also the
// file the kustomize base turns into the cosell-mapping ConfigMap.
func DefaultYAML() []byte {
	b, err := fs.ReadFile(k8s.Files, k8s.DefaultMappingFile)
	if err != nil {
		// The file is embedded at build time: it cannot be missing from a binary that compiled.
		panic(fmt.Sprintf("embedded default mapping: %v", err))
	}
	return b
}

var defaultMapping = sync.OnceValues(func() (Mapping, error) { return validate(DefaultSource, DefaultYAML(), nil, Config{}) })

// Default is the built-in mapping, checked against the built-in Salesforce metadata; it reproduces the
// Microsoft co-sell connector's field mapping. Each call returns its own copy of the rules.
func Default() Mapping {
	m, err := defaultMapping()
	if err != nil {
		// The embedded file is checked by the tests; this cannot happen in a released binary.
		panic(fmt.Sprintf("embedded default mapping: %v", err))
	}
	m.Fields = append([]FieldRule(nil), m.Fields...)
	return m
}

// Load reads the mapping c names (the built-in one when c.File is empty), applies c's overrides, and checks
// it against the referral schema and the Salesforce metadata (c.Metadata, or the built-in
// deploy/salesforce). The error, when the file is readable but wrong, is Problems: the file, line, field
// and fix of each problem (an override names its environment variable instead of a line).
func Load(c Config) (Mapping, error) {
	if c == (Config{}) {
		return Default(), nil
	}
	var meta fs.FS
	if c.Metadata != "" {
		if st, err := os.Stat(c.Metadata); err != nil || !st.IsDir() {
			return Mapping{}, fmt.Errorf("mapping metadata %q is not a directory: give the SFDX project directory, the one holding force-app/ (COSELL_MAPPING_METADATA or --metadata)", c.Metadata)
		}
		meta = os.DirFS(c.Metadata)
	}
	if c.File == "" {
		return validate(DefaultSource, DefaultYAML(), meta, c)
	}
	data, err := os.ReadFile(c.File)
	if err != nil {
		return Mapping{}, fmt.Errorf("mapping file: %w", err)
	}
	return validate(c.File, data, meta, c)
}

// validate parses a mapping file, applies c's overrides and checks the result against the Salesforce
// metadata in meta (an SFDX project; nil = deploy/salesforce). Text fields without maxLength get their
// Salesforce field's length.
//
// Every problem is reported in one run: the file's own (structure, keys, the referral schema) and, on
// whatever of it is readable, the overrides', the stage rules' and the Salesforce metadata's, each once.
func validate(file string, data []byte, meta fs.FS, c Config) (Mapping, error) {
	m, ps, readable := parseAll(file, data)
	if !readable {
		return Mapping{}, ps
	}
	if meta == nil {
		meta = metadata.Metadata
	}
	s, err := loadSchema(meta)
	if err != nil {
		return Mapping{}, err
	}
	ps = append(ps, c.override(&m)...)
	ps = append(ps, stageRules(m)...)
	ps = append(ps, check(&m, s)...)
	if len(ps) > 0 {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
		return Mapping{}, slices.Compact(ps)
	}
	return m, nil
}
