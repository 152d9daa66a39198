package nodeimages_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/images/nodeimages"
)

func TestMainList(t *testing.T) {
	var out, errb bytes.Buffer
	if got := nodeimages.Main([]string{"-list"}, &out, &errb); got != 0 {
		t.Fatalf("status %d: %s", got, errb.String())
	}
	want := "pause.tar " + kubecfg.SandboxImage + "\necho.tar " + kubecfg.EchoImage + "\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("-list (-want +got):\n%s", diff)
	}
}

func TestMainUsage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no directories", args: nil, wantErr: "-bin and -out are required"},
		{name: "stray argument", args: []string{"-list", "x"}, wantErr: `unexpected arguments ["x"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if got := nodeimages.Main(tc.args, &out, &errb); got != 2 {
				t.Errorf("status %d, want 2", got)
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q, want %q", errb.String(), tc.wantErr)
			}
		})
	}
}

// TestMainWrites builds the two programs as hack/tools.sh node-images does and writes their images.
func TestMainWrites(t *testing.T) {
	bin, out := t.TempDir(), filepath.Join(t.TempDir(), "images")
	for _, im := range nodeimages.Images {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, im.Binary), "github.com/kiln-dev/kiln/cmd/"+im.Binary)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", im.Binary, err, b)
		}
	}
	var stdout, stderr bytes.Buffer
	if got := nodeimages.Main([]string{"-bin", bin, "-out", out}, &stdout, &stderr); got != 0 {
		t.Fatalf("status %d: %s", got, stderr.String())
	}
	for _, im := range nodeimages.Images {
		tag, err := name.NewTag(im.Ref)
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(filepath.Join(out, im.Archive), &tag)
		if err != nil {
			t.Fatalf("%s: %v", im.Archive, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"/" + im.Binary}, cfg.Config.Entrypoint); diff != "" {
			t.Errorf("%s entrypoint (-want +got):\n%s", im.Ref, diff)
		}
		if !strings.Contains(stdout.String(), filepath.Join(out, im.Archive)+" "+im.Ref+"\n") {
			t.Errorf("output does not name %s: %q", im.Archive, stdout.String())
		}
	}
}
