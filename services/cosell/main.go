// Command cosell is the all-in-one runner and admin CLI: `cosell run` starts the whole system in one
// process (embedded NATS, both emulators, the six stages, demo data, the status page); `cosell emulator`
// serves one emulator on its own; `cosell pc webhook` manages the Partner Center webhook registration;
// `cosell links get` shows a link and its audit timeline; status, replay, dlq, drift, plan, mapping and
// doctor are the operator's tools. The command tree is built on cobra (what kubectl and helm use): help on
// every command, flags anywhere on the line, shell completion, -o table|json|yaml on every command that
// prints data, and the exit codes below.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, the same for every command (cosell --help and docs/cli.md list them).
const (
	exitOK      = 0 // done; for checks: everything passed
	exitFailure = 1 // the command ran and failed (a call refused, a check failed, an invalid mapping)
	exitUsage   = 2 // the command line or the configuration is wrong: nothing was done
	exitDrift   = 3 // cosell drift: drift found (and not all of it fixed)
)

const exitCodesHelp = `Exit codes:
  0  success (for checks: everything passed)
  1  failure: the command ran and something failed (a call refused, a check failed, an invalid mapping)
  2  usage error: unknown command or flag, missing or bad argument, invalid configuration; nothing was done
  3  cosell drift only: drift found (and, with --fix, not all of it healed)`

func main() {
	os.Exit(Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// exitCode is how a command's RunE reports its exit code: it has already printed what went wrong.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// usageError is a command-line mistake a command found itself (beyond cobra's own checks): the message
// is printed with the command's usage hint and the exit code is 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// Run executes one command line and returns the exit code. Help goes to stdout with 0; a usage error
// (cobra's or a command's) to stderr with the command's help hint and 2.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	// --help stops cobra before it checks arguments: a group's help asked for with an unknown subcommand
	// (cosell dlq lss --help) must still be refused, not answered with the group's help.
	var unknown error
	help := root.HelpFunc()
	root.SetHelpFunc(func(c *cobra.Command, a []string) {
		if rest := c.Flags().Args(); c.HasSubCommands() && len(rest) > 0 {
			unknown = unknownCommand(c, rest[0])
			return
		}
		help(c, a)
	})
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(strings.NewReader(""))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil && unknown != nil {
		err = unknown
	}
	if err == nil {
		return exitOK
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", cmd.CommandPath(), err, cmd.CommandPath())
	return exitUsage
}

// newRoot builds the whole command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "cosell",
		Short: "keeps Partner Center co-sell referrals and Salesforce Opportunities in sync",
		Long: `cosell keeps Microsoft Partner Center co-sell referrals and Salesforce Opportunities in sync.

Start the whole system with demo data: cosell run. Every command answers --help; flags may come
anywhere on the line. Commands that print data take -o table|json|yaml (json lists are [] when empty).
Commands that connect to NATS read COSELL_NATS_URL (or --nats) and its credentials (COSELL_NATS_USER /
COSELL_NATS_PASSWORD, COSELL_NATS_CREDS / --nats-creds, or the login file cosell run writes, which they
find from a loopback URL alone); the Partner Center and
Salesforce settings come from COSELL_PC_* / COSELL_SF_* or a KEY=VALUE file (--config, COSELL_CONFIG_FILE).
Shell completion: cosell completion bash|zsh|fish|powershell --help.

` + exitCodesHelp,
		Args:          groupArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE:          groupRunE,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	root.AddGroup(&cobra.Group{ID: "system", Title: "Run the system:"},
		&cobra.Group{ID: "ops", Title: "Operate it:"},
		&cobra.Group{ID: "setup", Title: "Set it up:"})
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("system", newRunCmd(), newEmulatorCmd(), newNATSCmd())
	add("ops", newStatusCmd(), newLinksCmd(), newDLQCmd(), newReplayCmd(), newDriftCmd(), newPlanCmd())
	add("setup", newPCCmd(), newMappingCmd(), newDoctorCmd())
	root.SetHelpCommandGroupID("setup")
	root.SetCompletionCommandGroupID("setup")
	return root
}

// groupRunE runs a command that only groups subcommands: given none, it prints its help to stderr and
// fails as a usage error (an unknown subcommand is refused by groupArgs before this).
func groupRunE(cmd *cobra.Command, _ []string) error {
	cmd.SetOut(cmd.ErrOrStderr())
	_ = cmd.Help()
	return exitCode(exitUsage)
}

// unknownCommand is the usage error for a word that is not one of c's subcommands.
func unknownCommand(c *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's own default for the root's suggestions
	}
	if s := c.SuggestionsFor(name); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{msg}
}

// groupArgs refuses any word after a group's name: it can only be an unknown subcommand.
func groupArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return unknownCommand(c, args[0])
	}
	return nil
}

// noArgs refuses arguments to a command that takes none.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments, got %q (its settings are flags: see --help)", args)
	}
	return nil
}

// group makes a command that only holds subcommands.
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Long: long, Args: groupArgs, RunE: groupRunE}
	c.AddCommand(subs...)
	return c
}

// body is a command's work: it prints what went wrong itself and returns the exit code.
type body func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// runE adapts a body to cobra.
func runE(fn body) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if code := fn(cmd.Context(), args, cmd.OutOrStdout(), cmd.ErrOrStderr()); code != exitOK {
			return exitCode(code)
		}
		return nil
	}
}

func env(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}
