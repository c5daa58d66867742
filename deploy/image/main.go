// Command image builds cosell's OCI images without a container daemon: it compiles one service as a static
// Linux binary and wraps it, with a passwd entry for the non-root user, in a single-layer image built with
// go-containerregistry (the library ko and crane use). Run it from the repository root:
//
//	go run ./deploy/image -service mapper -oci bin/images/mapper               # OCI image layout
//	go run ./deploy/image -service mapper -tar bin/images/mapper.tar           # tarball: docker/podman load
//	go run ./deploy/image -service mapper -push registry.example.com/cosell/mapper:0.1.0 -platforms linux/amd64,linux/arm64
//
// The image: /usr/local/bin/service as the entrypoint, user 65532:65532 (nonroot), ports 9090 (admin:
// /healthz, /readyz, /metrics, the auditor's page) and 8090 (pc-ingest's webhook), no shell. CA roots are
// compiled into the binaries (golang.org/x/crypto/x509roots/fallback). Layers and config carry no
// timestamps, so the same source builds the same digest.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Services are the binaries an image can hold: the six stages and the CLI (the provisioning Job and
// `cosell doctor` run it).
var Services = []string{"pc-ingest", "sf-ingest", "mapper", "pc-writer", "sf-writer", "auditor", "cosell"}

const (
	// Entrypoint is where the binary sits in every image; the manifests under deploy/k8s run it as is.
	Entrypoint = "/usr/local/bin/service"
	// User is the nonroot uid:gid (65532, as in distroless), which the manifests' securityContext expects.
	User = "65532:65532"
)

// Options say what to build.
type Options struct {
	Service   string        // one of Services
	Root      string        // the repository root (holds go.work)
	Platforms []v1.Platform // linux/<arch>; one or more
	Version   string        // org.opencontainers.image.version label
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	service := fs.String("service", "", "what to build: "+strings.Join(Services, ", "))
	platforms := fs.String("platforms", "linux/"+runtime.GOARCH, "comma-separated linux/<arch> list; more than one builds a multi-platform index")
	version := fs.String("version", "dev", "the image's org.opencontainers.image.version label")
	ociDir := fs.String("oci", "", "write an OCI image layout to this directory")
	tarPath := fs.String("tar", "", "write a tarball (docker load / podman load) to this file; one platform only")
	tag := fs.String("tag", "", "the reference the tarball is tagged with (default cosell/<service>:<version>)")
	push := fs.String("push", "", "push to this reference, e.g. registry.example.com/cosell/mapper:0.1.0 (credentials from ~/.docker/config.json)")
	root := fs.String("root", ".", "the repository root")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ociDir == "" && *tarPath == "" && *push == "" {
		return errors.New("name an output: -oci DIR, -tar FILE and/or -push REF")
	}
	plats, err := parsePlatforms(*platforms)
	if err != nil {
		return err
	}
	idx, err := Build(ctx, Options{Service: *service, Root: *root, Platforms: plats, Version: *version})
	if err != nil {
		return err
	}
	if *ociDir != "" {
		if err := WriteLayout(*ociDir, *version, idx); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote OCI layout %s (reference %s)\n", *ociDir, *version)
	}
	if *tarPath != "" {
		if len(plats) != 1 {
			return errors.New("-tar holds one platform: use -oci or -push for several")
		}
		ref := *tag
		if ref == "" {
			ref = "cosell/" + *service + ":" + *version
		}
		t, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("-tag %q: %w", ref, err)
		}
		img, err := firstImage(idx)
		if err != nil {
			return err
		}
		if err := tarball.WriteToFile(*tarPath, t, img); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s (%s)\n", *tarPath, t)
	}
	if *push != "" {
		ref, err := name.ParseReference(*push)
		if err != nil {
			return fmt.Errorf("-push %q: %w", *push, err)
		}
		opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
		if len(plats) == 1 {
			img, err := firstImage(idx)
			if err != nil {
				return err
			}
			err = remote.Write(ref, img, opts...)
		} else {
			err = remote.WriteIndex(ref, idx, opts...)
		}
		if err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		fmt.Fprintf(stderr, "pushed %s\n", ref)
	}
	return nil
}

func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, p := range strings.Split(s, ",") {
		goos, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok || goos != "linux" || arch == "" {
			return nil, fmt.Errorf("-platforms: %q is not linux/<arch> (e.g. linux/amd64)", p)
		}
		out = append(out, v1.Platform{OS: goos, Architecture: arch})
	}
	return out, nil
}

// Build compiles the service for each platform and returns an index of one image per platform.
func Build(ctx context.Context, o Options) (v1.ImageIndex, error) {
	if !slices.Contains(Services, o.Service) {
		return nil, fmt.Errorf("-service %q: want one of %s", o.Service, strings.Join(Services, ", "))
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		bin, err := compile(ctx, o.Root, o.Service, p.Architecture)
		if err != nil {
			return nil, err
		}
		img, err := Image(bin, o.Service, o.Version, p)
		if err != nil {
			return nil, err
		}
		plat := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	}
	return idx, nil
}

// compile builds ./services/<service> as a static Linux binary without paths or symbols (-trimpath,
// -s -w) and without the embeddednats tag (a stage image links no nats-server: it connects to the
// cluster's) and returns its bytes.
func compile(ctx context.Context, root, service, arch string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "cosell-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "service")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./services/"+service)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./services/%s for linux/%s: %w\n%s", service, arch, err, b)
	}
	return os.ReadFile(out)
}

// Image wraps a static Linux binary into cosell's image for platform p.
func Image(bin []byte, service, version string, p v1.Platform) (v1.Image, error) {
	layer, err := rootFS(bin)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	epoch := v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Created = epoch
	cf.History = []v1.History{{Created: epoch, CreatedBy: "go run ./deploy/image -service " + service}}
	title := "cosell-" + service
	if service == "cosell" {
		title = "cosell"
	}
	cf.Config = v1.Config{
		Entrypoint:   []string{Entrypoint},
		User:         User,
		WorkingDir:   "/home/nonroot",
		Env:          []string{"PATH=/usr/local/bin"},
		ExposedPorts: map[string]struct{}{"9090/tcp": {}, "8090/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":   title,
			"org.opencontainers.image.source":  "https://github.com/cosell-dev/cosell",
			"org.opencontainers.image.version": version,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// rootFS is the image's one layer: the binary, the nonroot user and the directories a process expects.
func rootFS(bin []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	entries := []struct {
		hdr  tar.Header
		body []byte
	}{
		{hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "etc/passwd", Mode: 0o644}, body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{hdr: tar.Header{Name: "etc/group", Mode: 0o644}, body: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{hdr: tar.Header{Name: "home/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "home/nonroot/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 65532, Gid: 65532}},
		{hdr: tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}},
		{hdr: tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "usr/local/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "usr/local/bin/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: strings.TrimPrefix(Entrypoint, "/"), Mode: 0o755}, body: bin},
	}
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		h.Size, h.ModTime, h.Format = int64(len(e.body)), epoch, tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// WriteLayout writes idx as an OCI image layout in dir, replacing what was there, under the reference name
// ref (the org.opencontainers.image.ref.name annotation, so `skopeo copy oci:DIR:REF ...` finds it): one
// platform as the image itself, several as their index.
func WriteLayout(dir, ref string, idx v1.ImageIndex) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	named := layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	if len(m.Manifests) != 1 {
		return p.AppendIndex(idx, named)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return err
	}
	return p.AppendImage(img, named, layout.WithPlatform(*m.Manifests[0].Platform))
}

func firstImage(idx v1.ImageIndex) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) == 0 {
		return nil, errors.New("empty index")
	}
	return idx.Image(m.Manifests[0].Digest)
}
