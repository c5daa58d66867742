package stage

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// withoutEmbeddedServer makes the test's stages those of a binary built without the embeddednats tag.
func withoutEmbeddedServer(t *testing.T) {
	built := connectEmbedded
	connectEmbedded = nil
	t.Cleanup(func() { connectEmbedded = built })
}

// A binary built without the embedded nats-server (the images') refuses COSELL_NATS_EMBEDDED=true at once,
// saying what to do instead, and creates no store.
func TestMainWithoutTheEmbeddedServerSaysHowToGetOne(t *testing.T) {
	withoutEmbeddedServer(t)
	toy := Define("toy", "a stage for the test", func(context.Context, *toyConfig, *Env) (Runner, error) {
		t.Error("built without a server to connect to")
		return nil, nil
	})
	var stdout, stderr bytes.Buffer
	dir := t.TempDir()
	vars := map[string]string{"COSELL_TOY_GREETING": "hi", "COSELL_NATS_EMBEDDED": "true", "COSELL_DATA_DIR": dir}
	if c := run(context.Background(), toy, nil, &stdout, &stderr, lookupIn(vars)); c != 2 {
		t.Fatalf("exit %d, want 2: %s", c, stderr.String())
	}
	for _, want := range []string{"built without the embedded nats-server", "COSELL_NATS_URL", "cosell nats", "go build -tags embeddednats"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the error does not say %q: %s", want, stderr.String())
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a store was created in %s: %v", dir, entries)
	}
}

// Without COSELL_NATS_URL such a binary does not suggest COSELL_NATS_EMBEDDED, which it would refuse.
func TestMainWithoutTheEmbeddedServerHintsOnlyWhatItCanRun(t *testing.T) {
	withoutEmbeddedServer(t)
	toy := Define("toy", "a stage for the test", func(context.Context, *toyConfig, *Env) (Runner, error) {
		t.Error("built without a NATS URL")
		return nil, nil
	})
	var stdout, stderr bytes.Buffer
	if c := run(context.Background(), toy, nil, &stdout, &stderr, lookupIn(map[string]string{"COSELL_TOY_GREETING": "hi", "COSELL_DATA_DIR": t.TempDir()})); c != 2 {
		t.Fatalf("exit %d, want 2: %s", c, stderr.String())
	}
	if got := stderr.String(); !strings.Contains(got, "COSELL_NATS_URL=nats://") || !strings.Contains(got, "cosell nats") || strings.Contains(got, "COSELL_NATS_EMBEDDED") {
		t.Errorf("want the URL and cosell nats as the hints, not COSELL_NATS_EMBEDDED: %s", got)
	}
}

// The six stage binaries as the images build them link no nats-server; built with -tags embeddednats (make
// build) they do, through natsembed, for COSELL_NATS_EMBEDDED.
func TestStageBinariesLinkTheServerOnlyWithTheTag(t *testing.T) {
	t.Parallel()
	stages := []string{"pc-ingest", "sf-ingest", "mapper", "pc-writer", "sf-writer", "auditor"}
	deps := func(tags ...string) map[string]string {
		got := map[string]string{}
		for _, s := range stages {
			args := append([]string{"list", "-deps"}, tags...)
			out, err := exec.Command("go", append(args, "github.com/cosell-dev/cosell/services/"+s)...).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", s, err, out)
			}
			got[s] = string(out)
		}
		return got
	}
	for s, list := range deps() {
		if strings.Contains(list, "github.com/nats-io/nats-server/") {
			t.Errorf("%s, built as the images build it, links nats-server", s)
		}
	}
	for s, list := range deps("-tags", "embeddednats") {
		if !strings.Contains(list, "github.com/cosell-dev/cosell/services/internal/platform/natsembed\n") {
			t.Errorf("%s built with -tags embeddednats does not link natsembed (COSELL_NATS_EMBEDDED would be refused)", s)
		}
	}
}
