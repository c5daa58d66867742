package sfemu

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestJSForceClient runs scripts/jsforce/check.js, an independent client (the npm package jsforce), unchanged
// against the emulator. It skips only when node or the installed package is absent (`make jsforce`
// installs it).
func TestJSForceClient(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	meta, err := FindMetadataDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(meta, "..", "..", "scripts", "jsforce")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jsforce", "package.json")); err != nil {
		t.Skip("jsforce is not installed: run `make jsforce` (or npm ci in scripts/jsforce)")
	}
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SF_URL="+srv.URL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jsforce check failed: %v\n%s", err, out)
	}
	if c := e.Counts(); c["collections.create"] != 1 || c["collections.update"] != 1 || c["collections.delete"] != 1 || c["sobjects.upsert"] != 2 {
		t.Fatalf("jsforce did not use the calls it should have: %v\n%s", c, out)
	}
}
