// Package testtool gives tests the real outside programs they drive (Ignition
// now; Packer, kube-apiserver and others later), built once by the project's
// own hack/tools.sh and cached outside the repository.
//
// A test asks for a tool by name and gets the absolute path of its binary.
// When the tool cannot be had, the test is skipped with the reason and the
// command that builds it; under CI=true it fails instead, so that CI never
// passes by skipping.
package testtool

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// script is the tools script, relative to the repository root.
const script = "hack/tools.sh"

// Ignition returns the path of the Ignition binary
// (github.com/coreos/ignition/v2, built with cgo against libblkid): $KILN_IGNITION
// if set, else what `hack/tools.sh ignition` builds or finds in its cache.
func Ignition(t testing.TB) string {
	t.Helper()
	return Tool(t, "ignition")
}

// Tool returns the absolute path of the named tool's binary. The environment
// variable KILN_<NAME> (name upper-cased, '-' and '.' as '_'), when set, names
// the binary and is used as is; otherwise Tool runs `hack/tools.sh <name>` from
// the repository root once per process and name, and reuses its answer (a
// failure included). A build in progress prints its progress to stderr.
//
// When the tool cannot be had Tool skips the test, saying why and how to build
// it; when the environment has CI=true it fails the test with the script's
// stderr instead.
func Tool(t testing.TB, name string) string {
	t.Helper()
	return find(t, name, checkExecutable)
}

// Dir returns the absolute path of the directory that the named tool makes, for tools whose product
// is data rather than a program (node-images: image archives): `hack/tools.sh <name>` prints a
// directory. It finds, caches, skips and fails as Tool does; KILN_<NAME> may name the directory.
func Dir(t testing.TB, name string) string {
	t.Helper()
	return find(t, name, checkDir)
}

// File returns the absolute path of the file that the named tool makes, for tools whose product is one
// data file (baked-image: the hardened disk.qcow2, with vmlinuz, initrd.img and cmdline beside it):
// `hack/tools.sh <name>` prints a regular file's path. It finds, caches, skips and fails as Tool does;
// KILN_<NAME> may name the file.
func File(t testing.TB, name string) string {
	t.Helper()
	return find(t, name, checkFile)
}

// find returns the path of the named tool, checked with check; see Tool.
func find(t testing.TB, name string, check func(string) error) string {
	t.Helper()
	env := EnvVar(name)
	if p := os.Getenv(env); p != "" {
		if err := check(p); err != nil {
			t.Fatalf("testtool: $%s: %v", env, err)
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("testtool: $%s: %v", env, err)
		}
		return abs
	}
	r := lookup(name, check)
	if r.err != nil {
		unavailable(t, "testtool: %s: %v\n%s", name, r.err, r.stderr)
	}
	return r.path
}

// EnvVar returns the name of the environment variable that overrides where
// Tool finds the named tool: KILN_IGNITION for "ignition",
// KILN_KUBE_APISERVER for "kube-apiserver".
func EnvVar(name string) string {
	return "KILN_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// RequireRoot skips the test unless it runs as root, or fails it when the
// environment has CI=true (CI runs as root, so a skip there would hide a
// misconfigured run).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "testtool: this test needs root (it chowns files and runs useradd --root); run it as root, e.g. sudo -E go test ./...")
	}
}

// CI reports whether the environment says it is CI (CI=true).
func CI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// unavailable fails the test under CI and skips it elsewhere.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// result is the cached answer of one `hack/tools.sh <name>` run.
type result struct {
	once   sync.Once
	path   string
	err    error
	stderr string
}

var (
	mu      sync.Mutex
	results = map[string]*result{}
)

// lookup runs the tools script for name, at most once per process, and checks its answer with check.
func lookup(name string, check func(string) error) *result {
	mu.Lock()
	r, ok := results[name]
	if !ok {
		r = &result{}
		results[name] = r
	}
	mu.Unlock()
	r.once.Do(func() {
		r.path, r.stderr, r.err = run(name, check)
	})
	return r
}

// run runs `hack/tools.sh <name>` and returns the path it printed and its
// stderr, which is also copied to os.Stderr so that a long build shows its
// progress.
func run(name string, check func(string) error) (path, stderr string, err error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", "", err
	}
	root, err := RepoRoot(wd)
	if err != nil {
		return "", "", fmt.Errorf("%w; build it with %s %s from the repository root and set $%s", err, script, name, EnvVar(name))
	}
	how := fmt.Sprintf("build it with: (cd %s && %s %s), or set $%s to a binary", root, script, name, EnvVar(name))
	var out, errBuf bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(root, script), name)
	cmd.Dir = root
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(&errBuf, os.Stderr)
	if err := cmd.Run(); err != nil {
		return "", errBuf.String(), fmt.Errorf("%s %s: %w; %s", script, name, err, how)
	}
	path = strings.TrimSpace(out.String())
	if !filepath.IsAbs(path) {
		return "", errBuf.String(), fmt.Errorf("%s %s printed %q, not an absolute path; %s", script, name, path, how)
	}
	if err := check(path); err != nil {
		return "", errBuf.String(), fmt.Errorf("%s %s: %w; %s", script, name, err, how)
	}
	return path, errBuf.String(), nil
}

// RepoRoot returns the nearest directory at or above dir that holds both a
// go.mod and hack/tools.sh: the root of the kiln checkout a test runs in.
func RepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if isFile(filepath.Join(d, "go.mod")) && isFile(filepath.Join(d, script)) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod with %s at or above %s", script, dir)
		}
	}
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: %w", p, errNotExecutable)
	}
	return nil
}

func checkFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w", p, errNotFile)
	}
	return nil
}

func checkDir(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: %w", p, errNotDir)
	}
	return nil
}

// vmLock is the file that serializes the tests that boot real VMs, across test binaries.
const vmLock = "/tmp/kiln-test-vms.lock"

// ExclusiveVMs makes the test the only one of kiln's tests booting VMs on this machine until it ends:
// `go test ./...` runs packages in parallel, and several TCG guests at once on a small machine boot so
// slowly that their timeouts, not the code, decide the outcome.
func ExclusiveVMs(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(vmLock, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("testtool: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("testtool: lock %s: %v", vmLock, err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// BuildKiln builds kiln's command line (./cmd/kiln) from this checkout into dir and returns the
// binary's path.
func BuildKiln(dir string) (string, error) { return BuildCommand(dir, "kiln") }

// BuildCommand builds the command ./cmd/NAME of this checkout into dir and returns the binary's
// path.
func BuildCommand(dir, name string) (string, error) {
	root, err := RepoRoot(".")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin, nil
}

// MainWithKiln is the TestMain of packages that run the built command line: it builds kiln into a
// temporary directory, sets *bin to its path, runs the tests and removes the directory.
func MainWithKiln(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "kiln-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildKiln(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
