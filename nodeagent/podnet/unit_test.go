package podnet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/golden"
)

func TestUnit(t *testing.T) {
	got, err := Unit(pfx("10.244.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, *update, "kiln-podnet.service.golden", []byte(got))
	if _, err := Unit(pfx("10.244.0.1/16")); !errors.Is(err, ErrInvalid) {
		t.Errorf("a cluster cidr with host bits: got %v, want ErrInvalid", err)
	}

	// systemd-analyze verify exits 0 on many problems it only prints, so any output is a failure. It
	// also wants ExecStart's program to exist: the copy it checks runs /bin/true instead.
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		unavailable(t, "systemd-analyze: %v; install Debian's systemd (hack/tools.sh deps)", err)
	}
	file := filepath.Join(t.TempDir(), UnitName)
	if err := os.WriteFile(file, []byte(strings.Replace(got, "ExecStart="+BinaryPath, "ExecStart=/bin/true", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", file).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", file, err, out)
	}
}
