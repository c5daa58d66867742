package mapping

import (
	"fmt"
	"io/fs"
	"os"
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

var defaultMapping = sync.OnceValues(func() (Mapping, error) { return validate(DefaultSource, DefaultYAML(), nil) })

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

// Load reads the mapping c names (the built-in one when c.File is empty) and checks it against the
// referral schema and the Salesforce metadata (c.Metadata, or the built-in deploy/salesforce). The error,
// when the file is readable but wrong, is Problems: the file, line, field and fix of each problem.
func Load(c Config) (Mapping, error) {
	if c.File == "" && c.Metadata == "" {
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
		return validate(DefaultSource, DefaultYAML(), meta)
	}
	data, err := os.ReadFile(c.File)
	if err != nil {
		return Mapping{}, fmt.Errorf("mapping file: %w", err)
	}
	return validate(c.File, data, meta)
}

// validate parses a mapping file and checks it against the Salesforce metadata in meta (an SFDX project;
// nil = deploy/salesforce). Text fields without maxLength get their Salesforce field's length.
func validate(file string, data []byte, meta fs.FS) (Mapping, error) {
	m, err := parse(file, data)
	if err != nil {
		return Mapping{}, err
	}
	if meta == nil {
		meta = metadata.Metadata
	}
	s, err := loadSchema(meta)
	if err != nil {
		return Mapping{}, err
	}
	if ps := check(&m, s); len(ps) > 0 {
		return Mapping{}, ps
	}
	return m, nil
}
