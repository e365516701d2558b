package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// report is what inspect found in one image.
type report struct {
	digest           v1.Hash
	size, unpacked   int64 // manifest, config and compressed layer; the layer's files
	config           *v1.ConfigFile
	layer            v1.Hash
	files            []*tar.Header
	problems, checks []string
}

// inspectCommand prints every image of an OCI image layout, and fails unless each passes check.
func inspectCommand(args []string, out io.Writer) error {
	flags := flag.NewFlagSet("inspect", flag.ExitOnError)
	dir := flags.String("layout", "", "the OCI image layout directory")
	_ = flags.Parse(args)
	if *dir == "" || flags.NArg() != 0 {
		return errors.New("-layout is required, and nothing else")
	}
	idx, err := layout.ImageIndexFromPath(*dir)
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	if len(im.Manifests) == 0 {
		return fmt.Errorf("%s holds no image", *dir)
	}
	failed := 0
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return err
		}
		r, err := check(img)
		if err != nil {
			return err
		}
		ref := desc.Annotations[refNameKey]
		if ref == "" {
			r.problems = append(r.problems, "index.json names it with no "+refNameKey+" annotation")
		}
		r.print(out, ref)
		if len(r.problems) > 0 {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of the %d images in %s failed the checks", failed, len(im.Manifests), *dir)
	}
	return nil
}

// check reads an image and lists how it differs from what build makes: the user, one layer
// holding only the root-owned skeleton (users, CA certificates, /tmp) and the static
// entrypoint binary, every time at the config's creation time. An error is a failure to read it.
func check(img v1.Image) (*report, error) {
	r := &report{}
	var err error
	if r.digest, err = img.Digest(); err != nil {
		return nil, err
	}
	if r.config, err = img.ConfigFile(); err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	r.size = int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		r.size += l.Size
	}
	problem := func(format string, a ...any) { r.problems = append(r.problems, fmt.Sprintf(format, a...)) }
	c := r.config.Config

	if c.User != user {
		problem("runs as user %q, not %q", c.User, user)
	}
	if c.WorkingDir != "/" {
		problem("working directory %q, not /", c.WorkingDir)
	}
	if len(c.Entrypoint) == 0 || !strings.HasPrefix(c.Entrypoint[0], "/") {
		problem("entrypoint %q is not an absolute path", c.Entrypoint)
		return r, nil
	}
	binPath := strings.TrimPrefix(c.Entrypoint[0], "/")
	if len(m.Layers) != 1 {
		problem("%d layers, not one", len(m.Layers))
		return r, nil
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if r.layer, err = layers[0].Digest(); err != nil {
		return nil, err
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()

	want := map[string]entry{binPath: {path: binPath, mode: 0o755}}
	for _, e := range skeleton(nil) {
		want[e.path] = e
	}
	tr := tar.NewReader(rc)
	data := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("the layer: %v", err)
		}
		r.files = append(r.files, h)
		r.unpacked += h.Size
		e, ok := want[h.Name]
		delete(want, h.Name)
		isDir := strings.HasSuffix(e.path, "/")
		switch {
		case !ok:
			problem("%s is in the layer: only the binary, users, CA certificates and /tmp belong there", h.Name)
			continue
		case isDir && h.Typeflag != tar.TypeDir || !isDir && h.Typeflag != tar.TypeReg:
			problem("%s is of tar type %q, not a plain file or directory", h.Name, h.Typeflag)
		case h.Mode != e.mode:
			problem("%s has mode %#o, not %#o", h.Name, h.Mode, e.mode)
		case h.Uid != 0 || h.Gid != 0:
			problem("%s is owned by %d:%d, not 0:0", h.Name, h.Uid, h.Gid)
		case !h.ModTime.Equal(r.config.Created.Time):
			problem("%s has time %s, not the image's %s", h.Name, h.ModTime.UTC(), r.config.Created.UTC())
		}
		if !isDir {
			if data[h.Name], err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("the layer: %v", err)
			}
		}
	}
	for _, e := range want {
		problem("/%s is missing", e.path)
	}
	if len(r.problems) > 0 {
		return r, nil
	}

	if string(data["etc/passwd"]) != passwd || string(data["etc/group"]) != group {
		problem("/etc/passwd or /etc/group does not name root and nonroot (65532) alone")
	} else {
		r.checks = append(r.checks, user+" is nonroot in /etc/passwd and /etc/group")
	}
	if arch, err := staticELF(data[binPath]); err != nil {
		problem("/%s: %v", binPath, err)
	} else if arch != r.config.Architecture {
		problem("/%s is for %s, the image for %s", binPath, arch, r.config.Architecture)
	} else {
		r.checks = append(r.checks, fmt.Sprintf("/%s is a static %s ELF executable, 0755, owned by 0:0", binPath, arch))
	}
	if n := bytes.Count(data[caPath], []byte("-----BEGIN CERTIFICATE-----")); n == 0 {
		problem("/%s holds no certificate", caPath)
	} else {
		r.checks = append(r.checks, fmt.Sprintf("%d CA certificates", n))
	}
	r.checks = append(r.checks, "no other file (no shell, no libc)",
		"every time "+r.config.Created.UTC().Format("2006-01-02T15:04:05Z"))
	return r, nil
}

// print writes the report: identity, size, the config, the layer's files and the checks.
func (r *report) print(out io.Writer, ref string) {
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	cfg, _ := json.MarshalIndent(r.config.Config, "            ", "  ")
	fmt.Fprintf(out, "%s\n", ref)
	fmt.Fprintf(out, "  digest    %s\n", r.digest)
	fmt.Fprintf(out, "  size      %s compressed (manifest, config, layers), %s unpacked\n", mib(r.size), mib(r.unpacked))
	fmt.Fprintf(out, "  platform  %s/%s, created %s\n", r.config.OS, r.config.Architecture, r.config.Created.UTC().Format("2006-01-02T15:04:05Z"))
	fmt.Fprintf(out, "  config    %s\n", cfg)
	if len(r.files) > 0 {
		fmt.Fprintf(out, "  layer     %s\n", r.layer)
	}
	for _, h := range r.files {
		fmt.Fprintf(out, "            %s %d:%d %10d /%s\n", h.FileInfo().Mode(), h.Uid, h.Gid, h.Size, h.Name)
	}
	if len(r.problems) > 0 {
		fmt.Fprintf(out, "  FAILED    %s\n", strings.Join(r.problems, "\n            "))
		return
	}
	fmt.Fprintf(out, "  ok        %s\n", strings.Join(r.checks, "\n            "))
}

// skeleton is the layer without the binary, in tar order; the CA bundle holds ca.
func skeleton(ca []byte) []entry {
	return []entry{
		{path: "etc/", mode: 0o755},
		{path: "etc/group", mode: 0o644, data: []byte(group)},
		{path: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{path: "etc/ssl/", mode: 0o755},
		{path: "etc/ssl/certs/", mode: 0o755},
		{path: caPath, mode: 0o644, data: ca},
		{path: "tmp/", mode: 0o1777},
	}
}
