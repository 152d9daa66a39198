package hardening

import (
	"context"
	"os"
	"strings"
	"testing"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
)

// TestStageDirForReal makes the staging directory with real processes: a random name from the
// template, mode 0700, and gone after removeStage.
func TestStageDirForReal(t *testing.T) {
	ctx := context.Background()
	r := &remote{comm: local{}, ui: &packersdk.MockUi{}}
	dir, err := r.stageDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if !strings.HasPrefix(dir, "/tmp/kiln-harden.") || dir == stageTemplate {
		t.Errorf("staging directory %q, want a random name from %s", dir, stageTemplate)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v, want a directory with mode 0700", dir, fi.Mode())
	}
	if err := r.removeStage(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after removeStage: %v", dir, err)
	}
}

// TestStageDirRefusesOddOutput refuses a staging path mktemp did not make in the expected form.
func TestStageDirRefusesOddOutput(t *testing.T) {
	for _, out := range []string{"", "/tmp/kiln-harden.XXXXXXXXXX/..", "/etc", "/tmp/kiln-harden.abc def12", "/tmp/kiln-harden.abcdefghij/x"} {
		m := &machine{answer: func(line string) (string, string, int) { return out + "\n", "", 0 }}
		r := &remote{comm: m, ui: &packersdk.MockUi{}}
		if dir, err := r.stageDir(context.Background()); err == nil {
			t.Errorf("mktemp printed %q: staging directory %q accepted", out, dir)
		}
	}
}
