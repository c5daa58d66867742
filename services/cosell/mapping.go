package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

const mappingUsage = `usage:
  cosell mapping validate FILE [--metadata DIR] [--json]
      check a mapping file against the referral schema and the Salesforce metadata (deploy/salesforce,
      or the SFDX project at DIR); prints each problem with file, line, field and fix; exit 1 if any
  cosell mapping default
      print the default mapping built into the binary (a starting point for your own)`

func cmdMapping(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, mappingUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "default":
		_, _ = stdout.Write(mapping.DefaultYAML())
		return 0
	case "validate":
		return mappingValidate(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "cosell mapping: unknown subcommand %q\n%s\n", args[0], mappingUsage)
	return 2
}

func mappingValidate(args []string, stdout, stderr io.Writer) int {
	fl := flags("mapping validate", "check a mapping file (cosell mapping validate FILE)", stderr)
	mc := mappingEnv()
	fl.StringVar(&mc.Metadata, "metadata", mc.Metadata, metadataHelp)
	asJSON := fl.Bool("json", false, "print the result as JSON")
	var file string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		file, args = args[0], args[1:]
	}
	if done, code := parse(fl, args); done {
		return code
	}
	if file == "" && fl.NArg() > 0 {
		file = fl.Arg(0)
	}
	if file == "" {
		fmt.Fprintln(stderr, mappingUsage)
		return 2
	}
	mc.File = file
	m, err := mapping.Load(*mc)
	var problems mapping.Problems
	if err != nil && !errors.As(err, &problems) {
		fmt.Fprintf(stderr, "cosell mapping validate: %v\n", err)
		return 2
	}
	if *asJSON {
		printJSON(stdout, map[string]any{"file": file, "valid": len(problems) == 0, "problems": problems})
	} else if len(problems) == 0 {
		fmt.Fprintf(stdout, "%s: valid (%d fields; hold %q, active %q, won %q, lost %q)\n", file, len(m.Fields),
			m.Stages.Hold, m.Stages.Active, m.Stages.Won, m.Stages.Lost)
	} else {
		for _, p := range problems {
			fmt.Fprintln(stdout, p.String())
		}
		fmt.Fprintf(stdout, "%d problem(s)\n", len(problems))
	}
	if len(problems) > 0 {
		return 1
	}
	return 0
}

const metadataHelp = "an SFDX project directory to check the Salesforce fields against, e.g. your org's retrieved metadata (env COSELL_MAPPING_METADATA); empty = deploy/salesforce built into the binary"

// addMappingFlags adds --mapping and --metadata over the settings the stages load the mapping with
// (COSELL_MAPPING_FILE, COSELL_MAPPING_METADATA and the COSELL_STAGE_* / COSELL_DEFAULT_CURRENCY
// overrides, read from the environment), so the command sees the mapping the stages use.
func addMappingFlags(fs *flag.FlagSet, purpose string) *mapping.Config {
	c := mappingEnv()
	fs.StringVar(&c.File, "mapping", c.File, purpose+" (env COSELL_MAPPING_FILE); empty = the built-in mapping")
	fs.StringVar(&c.Metadata, "metadata", c.Metadata, metadataHelp)
	return c
}

// mappingEnv is the mapping settings in the environment (as the stages read them, without a
// COSELL_CONFIG_FILE: that file holds the commands' API settings).
func mappingEnv() *mapping.Config {
	c := &mapping.Config{}
	envOnly := func(k string) (string, bool) {
		if k == platform.ConfigFileEnv {
			return "", false
		}
		return os.LookupEnv(k)
	}
	if err := platform.LoadConfig(c, envOnly); err != nil {
		// Plain strings without defaults, rules or a file: loading them cannot fail.
		panic(err)
	}
	return c
}
