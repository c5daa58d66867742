package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runbookCommands returns every cosell command line docs/runbooks.md tells an operator to run: the lines of
// its code blocks and its inline code spans that start with "cosell ".
func runbookCommands(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	inBlock := false
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock {
			if c := strings.TrimSpace(strings.SplitN(line, "#", 2)[0]); strings.HasPrefix(c, "cosell ") {
				cmds = append(cmds, c)
			}
			continue
		}
		for _, m := range regexp.MustCompile("`(cosell [^`]+)`").FindAllStringSubmatch(line, -1) {
			cmds = append(cmds, m[1])
		}
	}
	return cmds
}

// TestRunbookCommandsExist runs every command line the runbooks name with --help added: cobra parses the
// whole line, so each subcommand and flag the runbook uses must exist (an unknown one is exit 2), and the
// help printed must be the named subcommand's own, so an alert's fix is never a command that does not exist.
func TestRunbookCommandsExist(t *testing.T) {
	t.Parallel()
	cmds := runbookCommands(t)
	if len(cmds) < 20 {
		t.Fatalf("found only %d cosell commands in docs/runbooks.md: %q", len(cmds), cmds)
	}
	for _, line := range cmds {
		words := strings.Fields(line)[1:]
		c, _, err := newRoot().Find(words)
		if err != nil || c.Parent() == nil {
			t.Errorf("runbook names %q: no such cosell command (%v)", line, err)
			continue
		}
		code, out, errOut := cli(t, append(words, "--help")...)
		if code != 0 || !strings.Contains(out, "Usage:\n  "+c.CommandPath()) {
			t.Errorf("runbook names %q, but `%s --help` refuses it: exit %d\n%s%s", line, line, code, out, errOut)
		}
	}
}
