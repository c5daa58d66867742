package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/cosell-dev/cosell/services/internal/testkit"
)

// commandPaths lists every command of the tree (hidden ones aside), each as the words after "cosell",
// with cobra's completion commands, which it adds when it executes.
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		out = append(out, path)
		for _, sub := range c.Commands() {
			if !sub.Hidden {
				walk(sub, append(append([]string(nil), path...), sub.Name()))
			}
		}
	}
	walk(newRoot(), nil)
	for _, sh := range []string{"", "bash", "zsh", "fish", "powershell"} {
		p := []string{"completion"}
		if sh != "" {
			p = append(p, sh)
		}
		out = append(out, p)
	}
	if len(out) < 25 {
		t.Fatalf("only %d commands in the tree: %q", len(out), out)
	}
	return out
}

// find returns the command at path.
func find(path []string) *cobra.Command {
	c, _, err := newRoot().Find(path)
	if err != nil {
		return &cobra.Command{}
	}
	return c
}

// TestEveryCommandAnswersHelp walks the whole command tree: every command and subcommand prints its own
// usage for --help and -h on stdout with exit 0 (also after an argument, where --help used to be taken
// as an id), an unknown flag anywhere is a usage error (exit 2) naming the flag, and so is an unknown
// subcommand or a surplus argument — and none of them runs the command.
func TestEveryCommandAnswersHelp(t *testing.T) {
	t.Parallel()
	for _, path := range commandPaths(t) {
		name := strings.TrimSpace("cosell " + strings.Join(path, " "))
		asks := [][]string{{"--help"}, {"-h"}}
		if c := find(path); !c.HasSubCommands() {
			asks = append(asks, []string{"some-id", "--help"})
		}
		for _, h := range asks {
			args := append(append([]string(nil), path...), h...)
			code, out, errOut := cli(t, args...)
			if code != 0 || errOut != "" || !strings.Contains(out, "Usage:\n  "+name) {
				t.Errorf("%s %s: exit %d, want 0 and its usage on stdout\nstdout:\n%s\nstderr:\n%s", name, strings.Join(h, " "), code, out, errOut)
			}
		}
		if len(path) > 0 && path[0] == "help" {
			continue // cosell help TOPIC takes any words as the topic
		}
		for _, bad := range [][]string{
			append(append([]string(nil), path...), "--no-such-flag"),
			append([]string{"--no-such-flag"}, path...),
		} {
			code, out, errOut := cli(t, bad...)
			if code != 2 || out != "" || !strings.Contains(errOut, "unknown flag: --no-such-flag") || !strings.Contains(errOut, "--help' for usage") {
				t.Errorf("cosell %s: exit %d, want 2 and the unknown flag named on stderr\nstdout:\n%s\nstderr:\n%s", strings.Join(bad, " "), code, out, errOut)
			}
		}
		surplus := append(append([]string(nil), path...), "x1", "x2", "x3", "x4", "x5")
		code, out, errOut := cli(t, surplus...)
		if code != 2 || out != "" || !strings.Contains(errOut, "--help' for usage") {
			t.Errorf("cosell %s: exit %d, want 2 and a usage error on stderr\nstdout:\n%s\nstderr:\n%s", strings.Join(surplus, " "), code, out, errOut)
		}
	}
	if code, _, errOut := cli(t, "dlq", "lss", "--help"); code != 2 || !strings.Contains(errOut, `unknown command "lss" for "cosell dlq"; did you mean ls?`) {
		t.Errorf("an unknown subcommand with --help: exit %d\n%s", code, errOut)
	}
	// A group without its subcommand, and cosell alone, print their help on stderr as a usage error.
	for _, args := range [][]string{nil, {"dlq"}, {"pc", "webhook"}} {
		if code, out, errOut := cli(t, args...); code != 2 || out != "" || !strings.Contains(errOut, "Usage:") {
			t.Errorf("cosell %s: exit %d, want 2 and the help on stderr\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// TestFlagsAnywhere: a flag may come before or after the subcommand and its arguments, and the
// connection flags of a group before its subcommand.
func TestFlagsAnywhere(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "mapping.yaml")
	if err := os.WriteFile(file, []byte("fields: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"mapping", "validate", file, "-o", "json"},
		{"mapping", "validate", "-o", "json", file},
		{"mapping", "-o", "json", "validate", file},
	} {
		code, out, errOut := cli(t, args...)
		if code != 1 || !strings.HasPrefix(out, "{") || !strings.Contains(out, `"valid": false`) {
			t.Errorf("cosell %s: exit %d, want 1 and JSON\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	// --nats is dlq's: before or after the subcommand, it is the URL used (an unreachable one here).
	for _, args := range [][]string{
		{"dlq", "--nats", "nats://127.0.0.1:1", "--connect-timeout", "1ms", "ls"},
		{"dlq", "ls", "--nats", "nats://127.0.0.1:1", "--connect-timeout=1ms"},
		{"dlq", "--connect-timeout", "1ms", "retry", "--all", "--nats=nats://127.0.0.1:1"},
	} {
		code, _, errOut := cli(t, args...)
		if code != 1 || !strings.Contains(errOut, "127.0.0.1:1") {
			t.Errorf("cosell %s: exit %d, want 1 with the connection error\n%s", strings.Join(args, " "), code, errOut)
		}
	}
}

// TestCompletion: cosell completion writes each shell's script, and the completion engine offers the
// subcommands, the -o formats and the emulator names.
func TestCompletion(t *testing.T) {
	t.Parallel()
	for sh, want := range map[string]string{"bash": "__start_cosell", "zsh": "#compdef cosell", "fish": "complete -c cosell", "powershell": "Register-ArgumentCompleter"} {
		if code, out, errOut := cli(t, "completion", sh); code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, script lacks %q\n%s", sh, code, want, errOut)
		}
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "dl"}, []string{"dlq"}},
		{[]string{"__complete", "dlq", ""}, []string{"ls", "show", "retry", "purge"}},
		{[]string{"__complete", "status", "-o", ""}, []string{"table", "json", "yaml"}},
		{[]string{"__complete", "emulator", ""}, []string{"pc", "sf"}},
		{[]string{"__complete", "replay", "--stream", ""}, []string{"COSELL_REQUESTED", "COSELL_OBSERVED"}},
	} {
		code, out, _ := cli(t, c.args...)
		for _, w := range c.want {
			if code != 0 || !strings.Contains(out, w+"\t") && !strings.Contains(out, w+"\n") {
				t.Errorf("cosell %s: exit %d, no %q offered:\n%s", strings.Join(c.args, " "), code, w, out)
			}
		}
	}
}

// TestExitCodesDocumented: cosell --help, the README and docs/cli.md list the same exit codes.
func TestExitCodesDocumented(t *testing.T) {
	t.Parallel()
	_, help, _ := cli(t, "--help")
	for _, f := range []string{filepath.Join("..", "..", "README.md"), filepath.Join("..", "..", "docs", "cli.md")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for code, word := range map[string]string{"0": "success", "1": "failure", "2": "usage error", "3": "drift"} {
			for where, text := range map[string]string{"cosell --help": help, f: string(b)} {
				if !strings.Contains(text, "  "+code+"  ") && !strings.Contains(text, "| "+code+" |") || !strings.Contains(text, word) {
					t.Errorf("%s does not document exit code %s (%s)", where, code, word)
				}
			}
		}
	}
}

// TestServersPrintWhereTheyListen: cosell emulator pc|sf and cosell nats print their addresses and the
// credentials they accept as a person reads them, or as one JSON object with -o json, before they serve.
func TestServersPrintWhereTheyListen(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"emulator", "sf", "--listen", "127.0.0.1:0", "--pubsub-listen", "127.0.0.1:0"}, []string{"Salesforce emulator on http://127.0.0.1:", "secret cosell-emulator-secret", "COSELL_SF_PUBSUB_URL=http://127.0.0.1:"}},
		{[]string{"emulator", "pc", "--listen", "127.0.0.1:0", "-o", "json"}, []string{`"emulator": "pc"`, `"authority": "http://127.0.0.1:`, `"deviceLogin": "http://127.0.0.1:`}},
		{[]string{"nats", "--listen", "127.0.0.1:-1", "--data", t.TempDir(), "-o", "yaml"}, []string{"url: nats://127.0.0.1:", "store: /"}},
		{[]string{"nats", "--listen", "127.0.0.1:-1", "--data", t.TempDir(), "--pprof", "127.0.0.1:0"}, []string{"nats-server with JetStream on nats://127.0.0.1:", "profiles on http://127.0.0.1:", "Go memory limit (GOMEMLIMIT) 256 MiB"}},
		{[]string{"nats", "--listen", "127.0.0.1:-1", "--data", t.TempDir(), "--memory-limit", "1GiB", "-o", "json"}, []string{`"memoryLimit": "1024 MiB"`}},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var out syncWriter
		done := make(chan int, 1)
		go func() { done <- Run(ctx, c.args, &out, io.Discard) }()
		testkit.Eventually(t, 20*time.Second, "cosell "+strings.Join(c.args, " ")+" printing its addresses", func() (bool, string) {
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					return false, out.String()
				}
			}
			return true, ""
		})
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("cosell %s exited %d after cancel", strings.Join(c.args, " "), code)
		}
	}
}
