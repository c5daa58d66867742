package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

func newMappingCmd() *cobra.Command {
	def := &cobra.Command{Use: "default", Short: "print the default mapping built into the binary (a starting point for your own)", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(mapping.DefaultYAML())
			return err
		}}
	validate := &cobra.Command{Use: "validate FILE", Short: "check a mapping file; print every problem with file, line, field and fix",
		Long: `Check a mapping file against the referral schema and the Salesforce metadata (deploy/salesforce, or the
SFDX project at --metadata) and print every problem in one run, each with file:line, the field and the fix.
The COSELL_STAGE_* and COSELL_DEFAULT_CURRENCY overrides in the environment are applied first, as the stages
apply them. Exit code 0 when the file is valid, 1 when it has problems, 2 when it cannot be read.`,
		Example: "  cosell mapping validate mapping.yaml\n  cosell mapping validate mapping.yaml --metadata ./my-org -o json",
		Args:    cobra.ExactArgs(1)}
	mc := mappingEnv()
	validate.Flags().StringVar(&mc.Metadata, "metadata", mc.Metadata, metadataHelp)
	_ = validate.MarkFlagDirname("metadata")
	out := addOutput(validate)
	validate.RunE = runE(func(_ context.Context, args []string, stdout, stderr io.Writer) int {
		return mappingValidate(*mc, args[0], out, stdout, stderr)
	})
	return group("mapping", "mapping validate FILE | default: check a mapping file, or print the built-in one",
		"The field mapping the mapper decides with and sf-ingest reads (docs/mapping.md).", validate, def)
}

// validation is cosell mapping validate as data.
type validation struct {
	File     string           `json:"file"`
	Valid    bool             `json:"valid"`
	Problems mapping.Problems `json:"problems"`
}

func mappingValidate(mc mapping.Config, file string, out *output, stdout, stderr io.Writer) int {
	mc.File = file
	m, err := mapping.Load(mc)
	var problems mapping.Problems
	if err != nil && !errors.As(err, &problems) {
		fmt.Fprintf(stderr, "cosell mapping validate: %v\n", err)
		return exitUsage
	}
	out.print(stdout, validation{File: file, Valid: len(problems) == 0, Problems: problems}, func(w io.Writer) {
		if len(problems) == 0 {
			fmt.Fprintf(w, "%s: valid (%d fields; hold %q, active %q, won %q, lost %q)\n", file, len(m.Fields),
				m.Stages.Hold, m.Stages.Active, m.Stages.Won, m.Stages.Lost)
			return
		}
		for _, p := range problems {
			fmt.Fprintln(w, p.String())
		}
		fmt.Fprintf(w, "%d problem(s)\n", len(problems))
	})
	if len(problems) > 0 {
		return exitFailure
	}
	return exitOK
}

const metadataHelp = "an SFDX project directory to check the Salesforce fields against, e.g. your org's retrieved metadata (env COSELL_MAPPING_METADATA); empty = deploy/salesforce built into the binary"

// addMappingFlags adds --mapping and --metadata over the settings the stages load the mapping with
// (COSELL_MAPPING_FILE, COSELL_MAPPING_METADATA and the COSELL_STAGE_* / COSELL_DEFAULT_CURRENCY
// overrides, read from the environment), so the command sees the mapping the stages use.
func addMappingFlags(fs *pflag.FlagSet, purpose string) *mapping.Config {
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
