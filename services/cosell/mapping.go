package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/cosell-dev/cosell/services/mapper/decide"
	"github.com/cosell-dev/cosell/services/mapper/mapping"
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
		_, _ = stdout.Write(decide.DefaultMappingYAML())
		return 0
	case "validate":
		return mappingValidate(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "cosell mapping: unknown subcommand %q\n%s\n", args[0], mappingUsage)
	return 2
}

func mappingValidate(args []string, stdout, stderr io.Writer) int {
	fl := flags("mapping validate", "check a mapping file (cosell mapping validate FILE)", stderr)
	meta := fl.String("metadata", "", "an SFDX project directory to check Salesforce fields against (default: the embedded deploy/salesforce)")
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
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "cosell mapping validate: %v\n", err)
		return 2
	}
	var metaFS fs.FS
	if *meta != "" {
		metaFS = os.DirFS(*meta)
	}
	m, err := mapping.Validate(file, data, metaFS)
	var problems decide.Problems
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
