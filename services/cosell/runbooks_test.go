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

// TestRunbookCommandsExist checks every command the runbooks name against the CLI itself: the command
// answers --help, and its help names the subcommand and every flag the runbook uses, so an alert's fix is
// never a command that does not exist.
func TestRunbookCommandsExist(t *testing.T) {
	t.Parallel()
	cmds := runbookCommands(t)
	if len(cmds) < 20 {
		t.Fatalf("found only %d cosell commands in docs/runbooks.md: %q", len(cmds), cmds)
	}
	subcommands := map[string]bool{"dlq": true, "mapping": true, "links": true, "pc": true}
	for _, line := range cmds {
		words := strings.Fields(line)
		name := words[1]
		_, out, errOut := cli(t, name, "--help")
		help := out + errOut
		if !strings.Contains(help, "cosell "+name) || strings.Contains(help, "unknown command") {
			t.Errorf("runbook names %q, but `cosell %s --help` does not describe it:\n%s", line, name, help)
			continue
		}
		if subcommands[name] && len(words) > 2 && !strings.Contains(help, " "+words[2]) {
			t.Errorf("runbook names %q, but `cosell %s --help` has no subcommand %q:\n%s", line, name, words[2], help)
		}
		for _, w := range words[2:] {
			if !strings.HasPrefix(w, "--") {
				continue
			}
			flag := strings.SplitN(strings.TrimPrefix(w, "--"), "=", 2)[0]
			if !regexp.MustCompile(`(^|[\s\[|])--?` + regexp.QuoteMeta(flag) + `\b`).MatchString(help) {
				t.Errorf("runbook names %q, but `cosell %s --help` has no flag --%s:\n%s", line, name, flag, help)
			}
		}
	}
}
