// Package stage is the composition root every stage shares. Each stage package exports one descriptor
// (Define): its name, a summary, its typed configuration and a build from an Env to a Runner. Main runs a
// descriptor as its own process (the six binaries); the in-process system (internal/harness/stack) loads
// and builds the same descriptors in a loop, so `cosell run` and the tests run the production wiring.
package stage

import (
	"context"

	"github.com/cosell-dev/cosell/services/internal/platform"
)

// Runner is a built stage: it works until ctx is cancelled, then drains and returns.
type Runner func(ctx context.Context) error

// Component is a stage descriptor with its configuration type erased, so a composition root can hold the
// six in one list.
type Component interface {
	// Name is the stage's name (contracts.Stage*): its binary, its NATS user, its metrics label.
	Name() string
	// Summary is the one-line description --help prints.
	Summary() string
	// Vars lists the environment variables the stage reads (platform.Common's, then its own), one line each
	// with its default and help, as --help prints them.
	Vars() []string
	// Load reads the configuration through lookup (nil = the process environment) with the production
	// loader, defaults and validation, and returns the stage ready to build.
	Load(lookup func(string) (string, bool)) (*Configured, error)
}

// Configured is a stage whose configuration has been read and validated.
type Configured struct {
	// Common holds the settings every stage shares (bus, admin address, log level).
	Common platform.Common
	// Config points at the stage's own typed configuration.
	Config any

	name  string
	build func(ctx context.Context, env *Env) (Runner, error)
}

// Name is the stage's name.
func (c *Configured) Name() string { return c.name }

// Build wires the stage on env and returns its runner; nothing runs until the runner is called.
func (c *Configured) Build(ctx context.Context, env *Env) (Runner, error) { return c.build(ctx, env) }

// Descriptor is one stage as a component, generic over its configuration struct C (fields tagged for
// platform.LoadConfig; platform.Common is added by the descriptor, not part of C).
type Descriptor[C any] struct {
	name, summary string
	build         func(ctx context.Context, cfg *C, env *Env) (Runner, error)
}

// Define makes a stage's descriptor: build wires the stage from its loaded config and the environment.
func Define[C any](name, summary string, build func(ctx context.Context, cfg *C, env *Env) (Runner, error)) *Descriptor[C] {
	return &Descriptor[C]{name: name, summary: summary, build: build}
}

// settings is what a stage process reads: the shared settings, then the stage's own.
type settings[C any] struct {
	Common platform.Common
	Stage  C
}

// Name is the stage's name.
func (d *Descriptor[C]) Name() string { return d.name }

// Summary is the one-line description.
func (d *Descriptor[C]) Summary() string { return d.summary }

// Vars lists the variables the stage reads, as --help prints them.
func (d *Descriptor[C]) Vars() []string { return configVars(&settings[C]{}) }

// LoadConfig reads the shared settings and the stage's typed configuration through lookup (nil = the
// process environment); the error names every bad variable.
func (d *Descriptor[C]) LoadConfig(lookup func(string) (string, bool)) (platform.Common, *C, error) {
	var s settings[C]
	if err := platform.LoadConfig(&s, lookup); err != nil {
		return platform.Common{}, nil, err
	}
	return s.Common, &s.Stage, nil
}

// Load reads the configuration and binds it to the stage's build.
func (d *Descriptor[C]) Load(lookup func(string) (string, bool)) (*Configured, error) {
	common, cfg, err := d.LoadConfig(lookup)
	if err != nil {
		return nil, err
	}
	return &Configured{Common: common, Config: cfg, name: d.name,
		build: func(ctx context.Context, env *Env) (Runner, error) { return d.build(ctx, cfg, env) }}, nil
}
