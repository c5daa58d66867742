package main

import (
	"archive/tar"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/cosell-dev/cosell/deploy/internal/stagetest"
)

// TestImageStartsAndAnswersHealthz builds the mapper's image with the command itself (OCI layout and
// tarball), reads both back, checks the image is what the manifests expect (entrypoint, non-root user, a
// static binary), takes the entrypoint binary out of the image's layer, starts it against a real
// nats-server — as uid 65532 when the test may switch users — and waits until it answers /healthz and
// /readyz, then stops it with SIGTERM and expects a clean exit.
func TestImageStartsAndAnswersHealthz(t *testing.T) {
	dir := t.TempDir()
	ociDir, tarFile := filepath.Join(dir, "oci"), filepath.Join(dir, "mapper.tar")
	var log strings.Builder
	if err := run(context.Background(), []string{"-service", "mapper", "-root", filepath.Join("..", ".."),
		"-version", "test", "-oci", ociDir, "-tar", tarFile}, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}

	idx, err := layout.ImageIndexFromPath(ociDir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Platform == nil || im.Manifests[0].Platform.Architecture != runtime.GOARCH {
		t.Fatalf("layout index %+v, want one linux/%s image", im.Manifests, runtime.GOARCH)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	fromTar, err := tarball.ImageFromPath(tarFile, nil)
	if err != nil {
		t.Fatalf("the tarball does not load: %v", err)
	}
	if a, b := configName(t, img), configName(t, fromTar); a != b {
		t.Errorf("the tarball holds config %s, the layout %s: not the same image", b, a)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Config.User != User || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != Entrypoint {
		t.Errorf("config: os %s, user %q, entrypoint %v; want linux, %s, [%s]", cf.OS, cf.Config.User, cf.Config.Entrypoint, User, Entrypoint)
	}
	if _, ok := cf.Config.ExposedPorts["9090/tcp"]; !ok {
		t.Errorf("the admin port 9090 is not exposed: %v", cf.Config.ExposedPorts)
	}

	files := extract(t, img)
	passwd := string(files["etc/passwd"].body)
	if !strings.Contains(passwd, "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot user 65532:\n%s", passwd)
	}
	entry, ok := files[strings.TrimPrefix(Entrypoint, "/")]
	if !ok || entry.mode&0o111 == 0 {
		t.Fatalf("the image has no executable %s (files: %d)", Entrypoint, len(files))
	}
	binDir := filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(dir), dir} { // let uid 65532 reach the binary
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(binDir, "service")
	if err := os.WriteFile(bin, entry.body, 0o755); err != nil {
		t.Fatal(err)
	}
	checkStatic(t, bin)

	ns := stagetest.NATS(t, nil)
	// Only what the Deployment sets that matters here: the image has no other environment.
	stage := stagetest.Start(t, bin, []string{"COSELL_NATS_URL=" + ns.ClientURL(), "COSELL_ADMIN_ADDR=127.0.0.1:0"}, true)
	addr := stage.AdminAddr(60 * time.Second)
	for _, path := range []string{"/healthz", "/readyz"} {
		stagetest.Eventually(t, 60*time.Second, path, func() error { return stagetest.GetOK(addr, path) })
	}
	if err := stage.Stop(60 * time.Second); err != nil {
		t.Errorf("after SIGTERM the stage exited with %v, want 0\n%s", err, stage.Output())
	}
}

func TestPlatformsAndServicesAreChecked(t *testing.T) {
	for _, args := range [][]string{
		{"-service", "mapper", "-platforms", "windows/amd64", "-oci", t.TempDir()},
		{"-service", "nope", "-oci", t.TempDir()},
		{"-service", "mapper"},
	} {
		var out strings.Builder
		if err := run(context.Background(), args, &out); err == nil {
			t.Errorf("image %v: accepted", args)
		}
	}
}

type file struct {
	mode int64
	body []byte
}

// extract reads the image's filesystem as a container runtime would flatten it.
func extract(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "/")] = file{mode: h.Mode, body: body}
	}
}

// checkStatic fails when the binary needs a dynamic loader, which a scratch image does not have.
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("the entrypoint is not an ELF binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the entrypoint is dynamically linked: it would not start in the image")
		}
	}
}

func configName(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
