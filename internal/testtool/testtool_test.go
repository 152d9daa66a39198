package testtool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB whose Skipf and Fatalf record the outcome and end
// the goroutine, so that the skip and failure paths can be tested.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// record runs f with a recorder in a goroutine of its own and returns the
// recorder once f has returned or ended.
func record(t *testing.T, f func(testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestEnvVar(t *testing.T) {
	tests := []struct {
		name, tool, want string
	}{
		{name: "plain", tool: "ignition", want: "KILN_IGNITION"},
		{name: "dash", tool: "kube-apiserver", want: "KILN_KUBE_APISERVER"},
		{name: "dot", tool: "packer-plugin-qemu.v1", want: "KILN_PACKER_PLUGIN_QEMU_V1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := EnvVar(tc.tool); got != tc.want {
				t.Errorf("EnvVar(%q) = %q, want %q", tc.tool, got, tc.want)
			}
		})
	}
}

func TestToolFromEnv(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KILN_TESTTOOL_FAKE", exe)
	if got := Tool(t, "testtool-fake"); got != exe {
		t.Errorf("Tool = %q, want %q from $KILN_TESTTOOL_FAKE", got, exe)
	}
}

func TestToolFromEnvNotExecutable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KILN_TESTTOOL_PLAIN", p)
	t.Setenv("CI", "false")
	r := record(t, func(tb testing.TB) { Tool(tb, "testtool-plain") })
	if !r.failed || !strings.Contains(r.msg, "not an executable file") {
		t.Errorf("a bad $KILN_TESTTOOL_PLAIN must fail the test even outside CI; failed=%v skipped=%v msg=%q", r.failed, r.skipped, r.msg)
	}
}

func TestDirFromEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KILN_TESTTOOL_DATA", dir)
	if got := Dir(t, "testtool-data"); got != dir {
		t.Errorf("Dir = %q, want %q from $KILN_TESTTOOL_DATA", got, dir)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KILN_TESTTOOL_DATA", exe)
	t.Setenv("CI", "false")
	r := record(t, func(tb testing.TB) { Dir(tb, "testtool-data") })
	if !r.failed || !strings.Contains(r.msg, "not a directory") {
		t.Errorf("a file in $KILN_TESTTOOL_DATA must fail the test; failed=%v skipped=%v msg=%q", r.failed, r.skipped, r.msg)
	}
}

func TestFileFromEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{name: "a file", path: file},
		{name: "a directory", path: filepath.Dir(file), wantErr: "not a regular file"},
		{name: "missing", path: file + ".none", wantErr: "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KILN_TESTTOOL_IMAGE", tc.path)
			t.Setenv("CI", "false")
			var got string
			r := record(t, func(tb testing.TB) { got = File(tb, "testtool-image") })
			if tc.wantErr == "" {
				if r.failed || r.skipped || got != tc.path {
					t.Errorf("File = %q (failed=%v skipped=%v %s), want %q from $KILN_TESTTOOL_IMAGE", got, r.failed, r.skipped, r.msg, tc.path)
				}
				return
			}
			if !r.failed || !strings.Contains(r.msg, tc.wantErr) {
				t.Errorf("a bad $KILN_TESTTOOL_IMAGE must fail the test; failed=%v skipped=%v msg=%q", r.failed, r.skipped, r.msg)
			}
		})
	}
}

func TestToolUnavailable(t *testing.T) {
	tests := []struct {
		name     string
		ci       string
		wantFail bool
	}{
		{name: "skips outside CI", ci: "", wantFail: false},
		{name: "fails under CI", ci: "true", wantFail: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := record(t, func(tb testing.TB) { Tool(tb, "no-such-tool") })
			if r.failed != tc.wantFail || r.skipped == tc.wantFail {
				t.Fatalf("failed=%v skipped=%v, want failed=%v; msg=%q", r.failed, r.skipped, tc.wantFail, r.msg)
			}
			for _, want := range []string{"hack/tools.sh no-such-tool", "unknown tool: no-such-tool"} {
				if !strings.Contains(r.msg, want) {
					t.Errorf("message lacks %q:\n%s", want, r.msg)
				}
			}
		})
	}
}

func TestRepoRoot(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Dir(filepath.Dir(wd)); root != want {
		t.Errorf("RepoRoot(%q) = %q, want %q", wd, root, want)
	}
	if _, err := RepoRoot(t.TempDir()); err == nil {
		t.Error("RepoRoot of a temporary directory found a repository")
	}
}

func TestRequireRoot(t *testing.T) {
	t.Setenv("CI", "false")
	r := record(t, RequireRoot)
	if isRoot := os.Geteuid() == 0; r.skipped == isRoot || r.failed {
		t.Errorf("root=%v: skipped=%v failed=%v msg=%q", isRoot, r.skipped, r.failed, r.msg)
	}
}

func TestIgnition(t *testing.T) {
	bin := Ignition(t)
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -version: %v\n%s", bin, err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "Ignition v2.26.0"; got != want {
		t.Errorf("%s -version = %q, want %q", bin, got, want)
	}
}
