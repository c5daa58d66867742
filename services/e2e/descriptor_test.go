package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
)

const servicesModule = "github.com/cosell-dev/cosell/services/"

// TestEveryMainIsItsDescriptor: the in-process system starts one descriptor per stage, and each stage's
// main.go is nothing but `os.Exit(stage.Main(<its package>.Stage))`, so what `cosell run` and the tests
// run is what the binary runs.
func TestEveryMainIsItsDescriptor(t *testing.T) {
	var names []string
	for _, c := range stack.Components() {
		names = append(names, c.Name())
	}
	if !slices.Equal(names, contracts.Stages()) {
		t.Fatalf("stack.Components() = %v, contracts.Stages() = %v", names, contracts.Stages())
	}
	for _, name := range names {
		file := filepath.Join("..", name, "main.go")
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n := fset.Position(f.End()).Line; n >= 25 {
			t.Errorf("%s has %d lines; a stage's main only wires its descriptor", file, n)
		}
		imports := map[string]string{}
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			alias := path[strings.LastIndex(path, "/")+1:]
			if im.Name != nil {
				alias = im.Name.Name
			}
			imports[alias] = path
		}
		var funcs []*ast.FuncDecl
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				funcs = append(funcs, d)
			case *ast.GenDecl:
				if d.Tok != token.IMPORT {
					t.Errorf("%s declares a %s; a stage's main holds nothing but its wiring", file, d.Tok)
				}
			}
		}
		if len(funcs) != 1 || funcs[0].Name.Name != "main" || len(funcs[0].Body.List) != 1 {
			t.Errorf("%s: want only func main with one statement", file)
			continue
		}
		pkg, ok := wiredDescriptor(funcs[0].Body.List[0])
		if !ok {
			t.Errorf("%s: main is not os.Exit(stage.Main(<pkg>.Stage))", file)
			continue
		}
		if got := imports[pkg]; !strings.HasPrefix(got, servicesModule+name+"/") {
			t.Errorf("%s wires %s.Stage from %q, not from its own folder services/%s", file, pkg, got, name)
		}
		if imports["stage"] != servicesModule+"internal/stage" || imports["os"] != "os" {
			t.Errorf("%s: stage.Main and os.Exit must be internal/stage's and the standard library's: %v", file, imports)
		}
	}
}

// wiredDescriptor matches os.Exit(stage.Main(pkg.Stage)) and returns pkg.
func wiredDescriptor(s ast.Stmt) (string, bool) {
	call := func(e ast.Expr, pkg, fn string) (ast.Expr, bool) {
		c, ok := e.(*ast.CallExpr)
		if !ok || len(c.Args) != 1 || !isSelector(c.Fun, pkg, fn) {
			return nil, false
		}
		return c.Args[0], true
	}
	es, ok := s.(*ast.ExprStmt)
	if !ok {
		return "", false
	}
	arg, ok := call(es.X, "os", "Exit")
	if !ok {
		return "", false
	}
	if arg, ok = call(arg, "stage", "Main"); !ok {
		return "", false
	}
	sel, ok := arg.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Stage" {
		return "", false
	}
	if id, ok := sel.X.(*ast.Ident); ok {
		return id.Name, true
	}
	return "", false
}

func isSelector(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}

// TestEveryBinaryListsItsDescriptorsVariables: each built stage binary's --help names the stage and its
// summary and lists exactly the variables its descriptor loads.
func TestEveryBinaryListsItsDescriptorsVariables(t *testing.T) {
	bin := binaries(t)
	for _, c := range stack.Components() {
		out, err := exec.Command(filepath.Join(bin, c.Name()), "--help").CombinedOutput()
		if err != nil {
			t.Errorf("%s --help: %v\n%s", c.Name(), err, out)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if want := c.Name() + " — " + c.Summary(); lines[0] != want {
			t.Errorf("%s --help starts %q, want %q", c.Name(), lines[0], want)
		}
		// The variables are the indented block after "Configured by environment variables…".
		var vars []string
		at := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Configured by environment variables") })
		for i := at + 2; at >= 0 && i < len(lines) && lines[i] != ""; i++ {
			vars = append(vars, strings.TrimPrefix(lines[i], "  "))
		}
		if !slices.Equal(vars, c.Vars()) {
			t.Errorf("%s --help lists\n%s\nits descriptor loads\n%s", c.Name(), strings.Join(vars, "\n"), strings.Join(c.Vars(), "\n"))
		}
	}
}

// TestNoStageBinaryImportsTheHarness keeps the line docs/architecture.md draws: the emulators and the
// development harness never ship in a stage binary.
func TestNoStageBinaryImportsTheHarness(t *testing.T) {
	args := []string{"list", "-f", `{{.ImportPath}} {{join .Deps " "}}`}
	for _, c := range stack.Components() {
		args = append(args, servicesModule+c.Name())
	}
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(stack.Components()) {
		t.Fatalf("go list answered for %d binaries:\n%s", len(lines), out)
	}
	for _, l := range lines {
		deps := strings.Fields(l)
		for _, dep := range deps[1:] {
			if strings.HasPrefix(dep, servicesModule+"emulators/") || strings.HasPrefix(dep, servicesModule+"internal/harness/") {
				t.Errorf("%s imports %s", deps[0], dep)
			}
		}
	}
}
