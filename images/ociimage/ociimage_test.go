package ociimage_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kiln-dev/kiln/images/ociimage"
)

// staticBinary builds cmd/kiln-pause with CGO_ENABLED=0, as hack/tools.sh node-images does.
func staticBinary(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "kiln-pause")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "github.com/kiln-dev/kiln/cmd/kiln-pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func TestWriteFileReadBack(t *testing.T) {
	bin := staticBinary(t)
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pause.tar")
	spec := ociimage.Spec{Ref: "registry.kiln.internal/pause:test", Binary: bin, Cmd: []string{"-x"}, ExposedPorts: []string{"8080/tcp"}}
	if err := ociimage.WriteFile(path, spec); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("stat: %v, mode %v", err, fi.Mode())
	}

	// go-containerregistry reads the archive back by its tag, and its validator checks every
	// digest, size and diff ID against the contents.
	tag, err := name.NewTag(spec.Ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("reading the archive back: %v", err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate: %v", err)
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v1.Config{
		Entrypoint:   []string{"/kiln-pause"},
		Cmd:          []string{"-x"},
		User:         "65535:65535",
		WorkingDir:   "/",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	}, cfg.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || !cfg.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("os %q, architecture %q, created %v", cfg.OS, cfg.Architecture, cfg.Created)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || len(cfg.History) != 1 {
		t.Errorf("rootfs %v, history %v: want one layer", cfg.RootFS.DiffIDs, cfg.History)
	}

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v, %d", err, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var files []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, hdr.Name)
		if hdr.Name != "kiln-pause" {
			continue
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Mode != 0o755 || hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("kiln-pause: type %c, mode %o, owner %d:%d; want a regular file, 0755, 0:0", hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid)
		}
		got, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("kiln-pause in the layer differs from the binary (%d bytes, want %d)", len(got), len(want))
		}
	}
	if diff := cmp.Diff([]string{"kiln-pause"}, files); diff != "" {
		t.Errorf("layer files (-want +got):\n%s", diff)
	}

	// The archive names the image as `docker save` would, which is how ctr import names it.
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !cmp.Equal(m[0].RepoTags, []string{spec.Ref}) {
		t.Errorf("manifest.json: %+v, want one image tagged %s", m, spec.Ref)
	}
}

func TestWriteIsReproducible(t *testing.T) {
	bin := staticBinary(t)
	spec := ociimage.Spec{Ref: "registry.kiln.internal/pause:test", Binary: bin}
	var a, b bytes.Buffer
	if err := ociimage.Write(&a, spec); err != nil {
		t.Fatal(err)
	}
	if err := ociimage.Write(&b, spec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two writes of the same spec differ")
	}
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dynamic, err := exec.LookPath("true") // Debian's coreutils: dynamically linked
	if err != nil {
		t.Fatal(err)
	}
	var static string
	for _, tc := range []struct {
		name    string
		spec    func() ociimage.Spec
		wantErr error
		wantMsg string
	}{
		{name: "a script", spec: func() ociimage.Spec { return ociimage.Spec{Ref: "r.kiln.internal/a:v1", Binary: text} }, wantErr: ociimage.ErrNotStatic},
		{name: "a dynamic binary", spec: func() ociimage.Spec { return ociimage.Spec{Ref: "r.kiln.internal/a:v1", Binary: dynamic} }, wantErr: ociimage.ErrNotStatic, wantMsg: "dynamic loader"},
		{name: "no binary", spec: func() ociimage.Spec {
			return ociimage.Spec{Ref: "r.kiln.internal/a:v1", Binary: filepath.Join(dir, "none")}
		}, wantErr: os.ErrNotExist},
		{name: "no tag", spec: func() ociimage.Spec {
			if static == "" {
				static = staticBinary(t)
			}
			return ociimage.Spec{Ref: "r.kiln.internal/a", Binary: static}
		}, wantMsg: `reference "r.kiln.internal/a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			err := ociimage.Write(&b, tc.spec())
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if tc.wantMsg != "" && !bytes.Contains([]byte(err.Error()), []byte(tc.wantMsg)) {
				t.Errorf("error %q, want it to mention %q", err, tc.wantMsg)
			}
		})
	}
}
