// Package ociimage writes container images that hold one static Linux binary and nothing else: one
// layer with the binary at /NAME, the binary as the entrypoint, run as the unprivileged user
// 65535:65535, no shell, no other files. An image is written as a Docker image archive (the format of
// `docker save`, which `ctr images import` and `docker load` read) under a given reference, so that a
// node can be given images without any registry.
//
// The output is reproducible: the same binary and Spec give the same bytes (fixed timestamps, owners
// and modes, and one compression).
package ociimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// User is the user and group every image runs as: 65535, the "nobody" of Kubernetes' own pause and
// distroless images, which owns nothing on the node.
const User = "65535:65535"

// epoch is the time written into images and their layer, so that a rebuild gives the same bytes.
var epoch = time.Unix(0, 0).UTC()

// Spec describes an image.
type Spec struct {
	// Ref is the image's name with its tag, e.g. "registry.kiln.internal/pause:v1". Required.
	Ref string
	// Binary is the path on this machine of a static Linux executable. It becomes /NAME in the image,
	// where NAME is its base name, and the image's entrypoint. Required.
	Binary string
	// Cmd is the default arguments to the entrypoint.
	Cmd []string
	// ExposedPorts documents the ports the program listens on, e.g. "8080/tcp".
	ExposedPorts []string
}

// Image builds the image of s in memory and returns it with its parsed tag.
func Image(s Spec) (v1.Image, name.Tag, error) {
	tag, err := name.NewTag(s.Ref, name.StrictValidation)
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: reference %q: %w", s.Ref, err)
	}
	bin, err := os.ReadFile(s.Binary)
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: %w", err)
	}
	arch, err := staticArch(bin)
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: %s: %w", s.Binary, err)
	}
	entry := "/" + filepath.Base(s.Binary)
	layerTar, err := layerTar(entry, bin)
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: %s: %w", s.Binary, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "kiln ociimage: " + entry, Comment: "a static binary, nothing else"},
	})
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = []string{entry}
	cfg.Config.Cmd = slices.Clone(s.Cmd)
	cfg.Config.User = User
	cfg.Config.WorkingDir = "/"
	if len(s.ExposedPorts) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.ExposedPorts {
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, name.Tag{}, fmt.Errorf("ociimage: %w", err)
	}
	return img, tag, nil
}

// Write writes the image of s to w as a Docker image archive tagged s.Ref.
func Write(w io.Writer, s Spec) error {
	img, tag, err := Image(s)
	if err != nil {
		return err
	}
	if err := tarball.Write(tag, img, w); err != nil {
		return fmt.Errorf("ociimage: write %s: %w", s.Ref, err)
	}
	return nil
}

// WriteFile writes the image of s to the file path (mode 0644), which appears whole or not at all.
func WriteFile(path string, s Spec) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := Write(tmp, s); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("ociimage: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	return nil
}

// layerTar returns a tar stream with one regular file, path, owned by root, mode 0755.
func layerTar(path string, contents []byte) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     path[1:],
		Mode:     0o755,
		Size:     int64(len(contents)),
		ModTime:  epoch,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(contents); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// archs maps ELF machines to OCI architectures.
var archs = map[elf.Machine]string{
	elf.EM_X86_64:  "amd64",
	elf.EM_AARCH64: "arm64",
	elf.EM_RISCV:   "riscv64",
	elf.EM_PPC64:   "ppc64le",
	elf.EM_S390:    "s390x",
}

// staticArch checks that bin is a Linux executable that needs no dynamic loader and returns its OCI
// architecture.
func staticArch(bin []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotStatic, err)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("%w: ELF type %v", ErrNotStatic, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%w: it needs a dynamic loader", ErrNotStatic)
		}
	}
	arch, ok := archs[f.Machine]
	if !ok {
		return "", fmt.Errorf("%w: ELF machine %v", ErrUnknownArch, f.Machine)
	}
	return arch, nil
}
