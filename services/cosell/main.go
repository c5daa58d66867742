// Command cosell is the all-in-one runner and admin CLI: `cosell run` starts the whole system in one
// process (embedded NATS, both emulators, the six stages, demo data, the status page); `cosell emulator`
// serves one emulator on its own; `cosell pc webhook` manages the Partner Center webhook registration;
// `cosell links get` shows a link and its audit timeline.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// command is one CLI command.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "start the whole system in one process with demo data and print its URLs", cmdRun},
		{"emulator", "serve the Partner Center or Salesforce emulator on its own (emulator pc|sf)", cmdEmulator},
		{"nats", "run a standalone nats-server with JetStream for development", cmdNATS},
		{"pc", "Partner Center: webhook register|show|delete|test", cmdPC},
		{"links", "links get <referral-or-opportunity-id>: the link, both sides' versions and its timeline", cmdLinks},
		{"status", statusSummary, cmdStatus},
		{"replay", replaySummary, cmdReplay},
		{"dlq", dlqSummary, cmdDLQ},
		{"drift", driftSummary, cmdDrift},
		{"mapping", "mapping validate FILE | default: check a mapping file, or print the built-in one", cmdMapping},
		{"plan", "dry run: the field changes each side would receive, for one record, a time range or a backfill", cmdPlan},
		{"doctor", doctorSummary, cmdDoctor},
	}
}

// Run dispatches a command line and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "cosell: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "cosell — keeps Partner Center co-sell referrals and Salesforce Opportunities in sync.")
	fmt.Fprintln(w, "\nUsage: cosell <command> [flags]   (cosell <command> --help for its flags)\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

// flags makes a flag set whose --help prints the summary and the flags.
func flags(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cosell "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "cosell %s — %s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; done is true when the command should stop with code.
func parse(fs *flag.FlagSet, args []string) (done bool, code int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, 0
		}
		return true, 2
	}
	return false, 0
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func env(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}
