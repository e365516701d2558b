// Command image builds the operator's container image without a container engine (`make image`),
// and inspects it.
//
//	image build -binary target/.../apphealth-operator -ref ghcr.io/apphealth/apphealth-operator:0.1.0 \
//	  -layout target/image/oci -tar target/image/apphealth-operator.tar -cmd '["run"]' -label k=v ...
//	image inspect -layout target/image/oci
//
// The image is FROM scratch with a single layer: the binary at /<its name> (0755, root-owned),
// /etc/passwd and /etc/group naming the non-root user 65532 (nonroot) it runs as,
// /etc/ssl/certs/ca-certificates.crt (copied from -ca) and an empty /tmp (1777, the chart mounts
// a scratch volume there). Nothing else: no shell, no libc, so the binary must be static, which
// build checks. Every timestamp is SOURCE_DATE_EPOCH (0 when unset), so the same binary gives the
// same digest. Written as an OCI image layout (-layout; index.json names the image with the
// org.opencontainers.image.ref.name annotation) and, with -tar, as a tarball for `docker load`
// and `podman load`. Both are written beside their destination and renamed into place.
//
// inspect prints each image of a layout (reference, digest, size, config, the layer's files) and
// fails unless it has the shape above (see check in inspect.go).
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The fixed parts of every image.
const (
	user       = "65532:65532"
	caPath     = "etc/ssl/certs/ca-certificates.crt"
	passwd     = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n"
	group      = "root:x:0:\nnonroot:x:65532:\n"
	refNameKey = "org.opencontainers.image.ref.name"
)

// spec is what build makes an image of.
type spec struct {
	binary     string            // the static executable, placed at /<its base name>
	ca         string            // the CA bundle, placed at /etc/ssl/certs/ca-certificates.crt
	entrypoint []string          // default: the binary alone
	cmd        []string          // may be empty
	expose     []string          // ports, as "8080/tcp"
	labels     map[string]string // org.opencontainers.image.* and the like
	epoch      time.Time         // every timestamp
}

// entry is one file or directory of the layer.
type entry struct {
	path string // without a leading slash; directories end in "/"
	mode int64  // permission bits (and the sticky bit)
	data []byte
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = buildCommand(os.Args[2:])
	case "inspect":
		err = inspectCommand(os.Args[2:], os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "image %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: image build -binary FILE -ref REF -layout DIR [-tar FILE] [flags] | image inspect -layout DIR")
	os.Exit(2)
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func buildCommand(args []string) error {
	flags := flag.NewFlagSet("build", flag.ExitOnError)
	binary := flags.String("binary", "", "the static executable to put at /<its base name>")
	ref := flags.String("ref", "", "the image reference, e.g. ghcr.io/apphealth/apphealth-operator:0.1.0")
	layoutDir := flags.String("layout", "", "the OCI image layout directory to write (replaced)")
	tarPath := flags.String("tar", "", "also write a tarball for docker load / podman load here")
	ca := flags.String("ca", "/etc/ssl/certs/ca-certificates.crt", "the CA certificate bundle to include")
	entrypoint := flags.String("entrypoint", "", `the entrypoint as a JSON array (default: ["/<binary>"])`)
	cmd := flags.String("cmd", "", `the default arguments as a JSON array, e.g. ["run"]`)
	var expose, labels listFlag
	flags.Var(&expose, "expose", "an exposed port, e.g. 8080/tcp (repeatable)")
	flags.Var(&labels, "label", "a label KEY=VALUE (repeatable)")
	_ = flags.Parse(args)
	if *binary == "" || *ref == "" || *layoutDir == "" || flags.NArg() != 0 {
		return errors.New("-binary, -ref and -layout are required, and nothing else")
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	s := spec{binary: *binary, ca: *ca, expose: expose, labels: map[string]string{}, epoch: epoch}
	if s.entrypoint, err = jsonArray("-entrypoint", *entrypoint); err != nil {
		return err
	}
	if s.cmd, err = jsonArray("-cmd", *cmd); err != nil {
		return err
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("-label %q is not KEY=VALUE", l)
		}
		s.labels[k] = v
	}
	tag, err := name.NewTag(*ref, name.StrictValidation)
	if err != nil {
		return err
	}
	img, err := build(s)
	if err != nil {
		return err
	}
	if err := writeLayout(*layoutDir, tag, img); err != nil {
		return err
	}
	if *tarPath != "" {
		if err := replace(*tarPath, func(tmp string) error { return tarball.WriteToFile(tmp, tag, img) }); err != nil {
			return err
		}
	}
	return nil
}

// jsonArray decodes a flag's JSON array of strings; nothing for an empty flag.
func jsonArray(flagName, raw string) ([]string, error) {
	var v []string
	if raw == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return nil, fmt.Errorf("%s must be a JSON array of strings: %v", flagName, err)
	}
	return v, nil
}

// sourceDateEpoch is SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/),
// or the Unix epoch.
func sourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
	}
	return time.Unix(n, 0).UTC(), nil
}

// build makes the image: OCI media types, one gzip layer, the config.
func build(s spec) (v1.Image, error) {
	bin, err := os.ReadFile(s.binary)
	if err != nil {
		return nil, err
	}
	arch, err := staticELF(bin)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", s.binary, err)
	}
	ca, err := os.ReadFile(s.ca)
	if err != nil {
		return nil, fmt.Errorf("the CA certificates: %v", err)
	}
	binPath := filepath.Base(s.binary)
	entrypoint := s.entrypoint
	if len(entrypoint) == 0 {
		entrypoint = []string{"/" + binPath}
	}
	if entrypoint[0] != "/"+binPath {
		return nil, fmt.Errorf("the entrypoint %q does not start with the binary, /%s", entrypoint, binPath)
	}
	layerTar, err := tarLayer(append(skeleton(ca), entry{path: binPath, mode: 0o755, data: bin}), s.epoch)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	ports := map[string]struct{}{}
	for _, p := range s.expose {
		ports[p] = struct{}{}
	}
	created := v1.Time{Time: s.epoch}
	cfg := &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      created,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			User:         user,
			Entrypoint:   entrypoint,
			Cmd:          s.cmd,
			WorkingDir:   "/",
			ExposedPorts: ports,
			Env:          []string{"SSL_CERT_FILE=/" + caPath},
			Labels:       s.labels,
		},
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, err
	}
	return mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: "make image (tools/image): /" + binPath + ", users, CA certificates"},
	})
}

// staticELF returns the Go name of the architecture of a statically linked Linux executable, or
// why it is not one (an image without libc cannot run anything else).
func staticELF(bin []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", errors.New("dynamically linked (it names a program interpreter), and the image has no libc")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return "", fmt.Errorf("needs shared libraries %v, and the image has no libc", libs)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	}
	return "", fmt.Errorf("for machine %v, neither x86-64 nor arm64", f.Machine)
}

// tarLayer writes the entries, root-owned, with every time at epoch.
func tarLayer(entries []entry, epoch time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.path, Mode: e.mode, ModTime: epoch, // uid and gid 0
			Typeflag: tar.TypeReg, Size: int64(len(e.data)), Format: tar.FormatPAX,
		}
		if strings.HasSuffix(e.path, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeLayout writes an OCI image layout holding img alone, named tag, and puts it at dir.
func writeLayout(dir string, tag name.Tag, img v1.Image) error {
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); errors.Is(err, os.ErrNotExist) {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			return fmt.Errorf("%s is not an OCI image layout: not replacing it", dir)
		}
	}
	return replace(dir, func(tmp string) error {
		p, err := layout.Write(tmp, empty.Index)
		if err != nil {
			return err
		}
		err = p.AppendImage(img,
			layout.WithAnnotations(map[string]string{refNameKey: tag.String(), "io.containerd.image.name": tag.String()}),
			layout.WithPlatform(v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture}))
		if err != nil {
			return err
		}
		// go-containerregistry leaves some blobs 0600 and index.json 0755: make it readable by
		// all (another user's skopeo or registry), executable by none.
		return filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return os.Chmod(p, 0o755)
			}
			return os.Chmod(p, 0o644)
		})
	})
}

// replace writes dst through write(tmp), tmp beside dst, then renames tmp to dst.
func replace(dst string, write func(tmp string) error) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := write(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
