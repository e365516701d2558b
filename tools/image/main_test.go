package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const testRef = "ghcr.io/apphealth/apphealth-operator:0.1.0"

// fakeELF is an x86-64 ELF header with one program header: PT_LOAD, and PT_INTERP too when
// dynamic. Enough for debug/elf; it would not run.
func fakeELF(t *testing.T, dynamic bool) []byte {
	progs := []elf.Prog64{{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X)}}
	if dynamic {
		progs = append(progs, elf.Prog64{Type: uint32(elf.PT_INTERP)})
	}
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: uint16(len(progs)),
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	if err := binary.Write(&buf, binary.LittleEndian, progs); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fixture writes a fake operator binary and CA bundle into a temporary directory.
func fixture(t *testing.T, dynamic bool) spec {
	t.Setenv("SOURCE_DATE_EPOCH", "") // the Unix epoch, whatever the environment says
	dir := t.TempDir()
	s := spec{
		binary:     filepath.Join(dir, "apphealth-operator"),
		ca:         filepath.Join(dir, "ca.crt"),
		cmd:        []string{"run"},
		expose:     []string{"8080/tcp"},
		labels:     map[string]string{"org.opencontainers.image.version": "0.1.0"},
		entrypoint: nil, // the default: the binary
	}
	var err error
	if s.epoch, err = sourceDateEpoch(); err != nil {
		t.Fatal(err)
	}
	write(t, s.binary, fakeELF(t, dynamic))
	write(t, s.ca, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	return s
}

func write(t *testing.T, path string, data []byte) {
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// buildLayout builds s into a fresh layout (and tarball) and reads the image back from it.
func buildLayout(t *testing.T, s spec) (v1.Image, string) {
	img, err := build(s)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tag, _ := name.NewTag(testRef)
	if err := writeLayout(filepath.Join(dir, "oci"), tag, img); err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(filepath.Join(dir, "image.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[refNameKey] != testRef {
		t.Fatalf("index.json: %+v, want one image named %s", im.Manifests, testRef)
	}
	back, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return back, dir
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestImage(t *testing.T) {
	s := fixture(t, false)
	img, dir := buildLayout(t, s)

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if c.User != "65532:65532" || c.WorkingDir != "/" || !slices.Equal(c.Entrypoint, []string{"/apphealth-operator"}) ||
		!slices.Equal(c.Cmd, []string{"run"}) || len(c.ExposedPorts) != 1 || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("config: %+v", cfg)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || c.Labels["org.opencontainers.image.version"] != "0.1.0" {
		t.Errorf("ports %v, labels %v", c.ExposedPorts, c.Labels)
	}
	if cfg.Created.Unix() != 0 {
		t.Errorf("created %s, want the Unix epoch (SOURCE_DATE_EPOCH unset)", cfg.Created)
	}

	// The layer's files, their modes and owners.
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v, %v: want one", layers, err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 0 {
			t.Errorf("%s: owner %d:%d, time %s", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		if h.Name == "apphealth-operator" && (h.Mode != 0o755 || h.Typeflag != tar.TypeReg) {
			t.Errorf("the binary: mode %#o, type %q", h.Mode, h.Typeflag)
		}
		base := filepath.Base(h.Name)
		if base == "sh" || base == "bash" || base == "busybox" || strings.HasPrefix(h.Name, "bin/") || strings.HasPrefix(h.Name, "lib") {
			t.Errorf("%s in the layer", h.Name)
		}
	}
	want := []string{"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "tmp/", "apphealth-operator"}
	if !slices.Equal(names, want) {
		t.Errorf("layer holds %q, want %q", names, want)
	}

	// check passes, and finds the user and the certificate.
	r, err := check(img)
	if err != nil || len(r.problems) > 0 {
		t.Fatalf("check: %v %q", err, r.problems)
	}
	if joined := strings.Join(r.checks, "; "); !strings.Contains(joined, "65532:65532 is nonroot") || !strings.Contains(joined, "1 CA certificates") {
		t.Errorf("checks: %s", joined)
	}
	var out bytes.Buffer
	if err := inspectCommand([]string{"-layout", filepath.Join(dir, "oci")}, &out); err != nil {
		t.Fatalf("inspect: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), testRef) || !strings.Contains(out.String(), `"User": "65532:65532"`) {
		t.Errorf("inspect printed:\n%s", out.String())
	}

	// Every file of the layout is readable by all.
	err = filepath.WalkDir(filepath.Join(dir, "oci"), func(p string, d fs.DirEntry, err error) error {
		if info, _ := d.Info(); err == nil && !d.IsDir() && info.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v", p, info.Mode())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// The tarball for docker load holds the same image.
	tag, _ := name.NewTag(testRef)
	fromTar, err := tarball.ImageFromPath(filepath.Join(dir, "image.tar"), &tag)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustConfigName(t, fromTar), mustConfigName(t, img); a != b {
		t.Errorf("the tarball's config %s, the layout's %s", a, b)
	}
}

func mustConfigName(t *testing.T, img v1.Image) v1.Hash {
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The same inputs give the same digest; another SOURCE_DATE_EPOCH another one.
func TestReproducible(t *testing.T) {
	s := fixture(t, false)
	first, _ := buildLayout(t, s)
	second, _ := buildLayout(t, s)
	if a, b := digest(t, first), digest(t, second); a != b {
		t.Errorf("two builds: %s and %s", a, b)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	var err error
	if s.epoch, err = sourceDateEpoch(); err != nil {
		t.Fatal(err)
	}
	later, _ := buildLayout(t, s)
	if digest(t, later) == digest(t, first) {
		t.Error("SOURCE_DATE_EPOCH did not change the digest")
	}
	if r, err := check(later); err != nil || len(r.problems) > 0 {
		t.Errorf("check: %v %q", err, r.problems)
	}
}

func TestRejects(t *testing.T) {
	if _, err := build(fixture(t, true)); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("a dynamic binary: %v", err)
	}
	s := fixture(t, false)
	write(t, s.binary, []byte("#!/bin/sh\necho hi\n"))
	if _, err := build(s); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("a script: %v", err)
	}

	img, err := build(fixture(t, false))
	if err != nil {
		t.Fatal(err)
	}
	notLayout := t.TempDir()
	write(t, filepath.Join(notLayout, "precious"), nil)
	tag, _ := name.NewTag(testRef)
	if err := writeLayout(notLayout, tag, img); err == nil || !strings.Contains(err.Error(), "not replacing it") {
		t.Errorf("writing over a directory that is not a layout: %v", err)
	}
	bin := fakeELF(t, false)
	ca := []byte("-----BEGIN CERTIFICATE-----\n")
	good := append(skeleton(ca), entry{path: "apphealth-operator", mode: 0o755, data: bin})
	withShell := withLayer(t, img, append(slices.Clone(good), entry{path: "bin/", mode: 0o755}, entry{path: "bin/sh", mode: 0o755, data: bin}))
	writable := withLayer(t, img, append(skeleton(ca), entry{path: "apphealth-operator", mode: 0o777, data: bin}))
	twoLayers, err := mutate.AppendLayers(img, mustLayer(t, []entry{{path: "bin/", mode: 0o755}}))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	root := cfg.Config
	root.User = "0"
	asRoot, err := mutate.Config(img, root)
	if err != nil {
		t.Fatal(err)
	}
	other := cfg.Config
	other.Entrypoint = []string{"/flaky-app"}
	otherEntry, err := mutate.Config(img, other)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := check(withLayer(t, img, good)); err != nil || len(r.problems) > 0 {
		t.Fatalf("the same files in a layer of the test's: %v %q", err, r.problems)
	}
	for what, c := range map[string]struct {
		img  v1.Image
		want string
	}{
		"a shell":              {withShell, "bin/sh is in the layer"},
		"a writable binary":    {writable, "apphealth-operator has mode 0777, not 0755"},
		"a second layer":       {twoLayers, "2 layers, not one"},
		"root":                 {asRoot, `runs as user "0"`},
		"another entrypoint":   {otherEntry, "apphealth-operator is in the layer"},
		"the entrypoint again": {otherEntry, "/flaky-app is missing"},
	} {
		r, err := check(c.img)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(r.problems, "\n"), c.want) {
			t.Errorf("%s: problems %q, want %q", what, r.problems, c.want)
		}
	}
}

// withLayer is img with its one layer replaced by one holding entries.
func withLayer(t *testing.T, img v1.Image, entries []entry) v1.Image {
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs, cfg.History = nil, nil
	base, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := mutate.AppendLayers(base, mustLayer(t, entries))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustLayer(t *testing.T, entries []entry) v1.Layer {
	data, err := tarLayer(entries, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
