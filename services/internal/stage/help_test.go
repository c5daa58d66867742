package stage_test

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/stage"
)

var varName = regexp.MustCompile(`\b(?:(?:COSELL|OTEL)_[A-Z0-9_]+|GOMEMLIMIT)\b`)

// TestEveryStageHelpListsWhatItReads: for each of the six stages, what --help prints is what the stage
// reads. The variables its configuration looks up (recorded through the loader's lookup while the
// descriptor loads) are exactly the ones its variables block lists, and every variable read directly
// (os.Getenv / os.LookupEnv with a name, in any package of this module the stage's binary is built from)
// is named somewhere in its --help.
func TestEveryStageHelpListsWhatItReads(t *testing.T) {
	t.Parallel()
	direct := directReads(t)
	for _, c := range stack.Components() {
		var out, errOut bytes.Buffer
		if code := stage.Run(context.Background(), c, []string{"--help"}, &out, &errOut, func(string) (string, bool) { return "", false }); code != 0 {
			t.Fatalf("%s --help: exit %d\n%s", c.Name(), code, errOut.String())
		}
		help := out.String() + errOut.String()
		listed := helpBlock(help, "Configured by environment variables")
		read := map[string]bool{}
		_, _ = c.Load(func(name string) (string, bool) {
			read[name] = true
			return "", false
		})
		if !read[platform.ConfigFileEnv] || !strings.Contains(help, platform.ConfigFileEnv) {
			t.Errorf("%s: %s is read but --help does not name it", c.Name(), platform.ConfigFileEnv)
		}
		delete(read, platform.ConfigFileEnv)
		if got, want := slices.Sorted(mapKeys(read)), slices.Sorted(slices.Values(listed)); !slices.Equal(got, want) {
			t.Errorf("%s: the configuration reads\n  %s\nbut --help lists\n  %s", c.Name(), strings.Join(got, " "), strings.Join(want, " "))
		}
		for name, where := range direct[c.Name()] {
			if !slices.Contains(varName.FindAllString(help, -1), name) {
				t.Errorf("%s reads %s (%s) but its --help does not name it", c.Name(), name, where)
			}
		}
		if len(helpBlock(help, "Tracing")) == 0 {
			t.Errorf("%s --help lists no tracing variables", c.Name())
		}
	}
}

// helpBlock returns the variable names of the indented block after the line starting with title.
func helpBlock(help, title string) []string {
	lines := strings.Split(help, "\n")
	at := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, title) })
	var names []string
	for i := at + 2; at >= 0 && i < len(lines) && strings.HasPrefix(lines[i], "  "); i++ {
		names = append(names, strings.Fields(lines[i])[0])
	}
	return names
}

// directReads finds, for each stage binary, the variables read by name with os.Getenv or os.LookupEnv in
// the non-test Go files of the module's packages it is built from, with where.
func directReads(t *testing.T) map[string]map[string]string {
	t.Helper()
	const module = "github.com/cosell-dev/cosell/"
	out := map[string]map[string]string{}
	for _, c := range stack.Components() {
		b, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Dir}} {{join .GoFiles \",\"}}", module+"services/"+c.Name()).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", c.Name(), err)
		}
		out[c.Name()] = map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || !strings.HasPrefix(f[0], module) {
				continue
			}
			for _, file := range strings.Split(f[2], ",") {
				reads, loads := envReads(t, filepath.Join(f[1], file))
				for name, pos := range reads {
					out[c.Name()][name] = pos
				}
				// The descriptor's loader is the one configuration read; another would read variables
				// --help does not list.
				for _, pos := range loads {
					if !strings.Contains(filepath.ToSlash(pos), "services/internal/stage/stage.go:") {
						t.Errorf("%s loads configuration outside its descriptor at %s: make it part of the stage's config struct", c.Name(), pos)
					}
				}
			}
		}
	}
	if len(out["mapper"]) == 0 {
		t.Fatal("found no direct read at all: the scan is broken (platform reads OTEL_SDK_DISABLED)")
	}
	return out
}

// envReads lists the names passed as string literals (or platform.ConfigFileEnv) to os.Getenv and
// os.LookupEnv in one file, and where it calls platform.LoadConfig.
func envReads(t *testing.T, path string) (reads map[string]string, loads []string) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if ok && sel.Sel.Name == "LoadConfig" {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "platform" {
				loads = append(loads, fset.Position(call.Pos()).String())
			}
		}
		if !ok || len(call.Args) != 1 || (sel.Sel.Name != "Getenv" && sel.Sel.Name != "LookupEnv") {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "os" {
			return true
		}
		switch a := call.Args[0].(type) {
		case *ast.BasicLit:
			if name, err := strconv.Unquote(a.Value); err == nil {
				found[name] = fset.Position(a.Pos()).String()
			}
		case *ast.Ident:
			if a.Name == "ConfigFileEnv" {
				found[platform.ConfigFileEnv] = fset.Position(a.Pos()).String()
			}
		}
		return true
	})
	return found, loads
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
