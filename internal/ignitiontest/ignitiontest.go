// Package ignitiontest applies Ignition configs with the real Ignition binary
// (its fetch and files stages) to a temporary root directory, and reads back
// what it wrote, so that tests check rendered configs by their effect rather
// than by their text.
//
// Applying needs root: the files stage chowns what it writes and runs
// useradd/groupadd --root. Everything happens under the test's temporary
// directory; the host's /etc is only read (login.defs, default/useradd).
package ignitiontest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testtool"
)

// stageTimeout bounds one Ignition stage; a local config applies in well
// under a second.
const stageTimeout = 2 * time.Minute

// Apply writes config (Ignition JSON) to a file, runs the real Ignition's
// fetch stage and then its files stage on a fresh root under t.TempDir(), and
// returns that root. The root starts as a minimal Debian: the base-passwd
// users and groups in /etc/{passwd,group,shadow,gshadow}, the host's
// /etc/login.defs and /etc/default/useradd, an empty /etc/skel, /home, /root,
// /etc/ssh/sshd_config.d and /etc/systemd/system.
//
// Apply skips the test unless it runs as root (fails it under CI=true), gets
// the binary from testtool.Ignition, and fails the test with Ignition's full
// output when a stage fails. It logs that output with t.Log either way.
func Apply(t testing.TB, config []byte) string {
	t.Helper()
	root, err := Try(t, config)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return root
}

// Try is Apply for a config that may fail to apply (a fetch that is refused): it returns the error
// of the stage that failed, with Ignition's output, rather than failing the test.
func Try(t testing.TB, config []byte) (string, error) {
	t.Helper()
	testtool.RequireRoot(t)
	bin := testtool.Ignition(t)

	dir := t.TempDir()
	if err := reachable(dir); err != nil {
		t.Fatalf("ignitiontest: %v", err)
	}
	root := filepath.Join(dir, "root")
	work := filepath.Join(dir, "ignition")
	if err := MakeRoot(root); err != nil {
		t.Fatalf("ignitiontest: %v", err)
	}
	// systemDir stays empty: no base config of the host (/usr/lib/ignition)
	// may leak into the run.
	systemDir := filepath.Join(work, "system")
	if err := os.MkdirAll(systemDir, 0o755); err != nil {
		t.Fatalf("ignitiontest: %v", err)
	}
	cfgPath := filepath.Join(work, "config.ign")
	if err := os.WriteFile(cfgPath, config, 0o600); err != nil {
		t.Fatalf("ignitiontest: %v", err)
	}

	env := append(environ(),
		"IGNITION_CONFIG_FILE="+cfgPath,
		"IGNITION_SYSTEM_CONFIG_DIR="+systemDir,
	)
	for _, stage := range []string{"fetch", "files"} {
		args := []string{
			"-platform", "file",
			"-stage", stage,
			"-root", root,
			"-log-to-stdout",
			"-config-cache", filepath.Join(work, "config.json"),
			"-state-file", filepath.Join(work, "state"),
			"-neednet", filepath.Join(work, "neednet"),
		}
		ctx, cancel := context.WithTimeout(context.Background(), stageTimeout)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		cmd.Dir = work
		out, err := cmd.CombinedOutput()
		cancel()
		t.Logf("ignition -stage %s:\n%s", stage, out)
		if err != nil {
			return root, fmt.Errorf("ignitiontest: ignition %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return root, nil
}

// reachable opens dir, a t.TempDir(), and its parent (the test's own
// temporary directory), both made 0700 by the testing package, to everyone,
// and checks that every directory above can be searched by everyone: Ignition
// writes a user's ssh keys as that user, who must reach the root.
func reachable(dir string) error {
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not searchable by other users (mode %v), so Ignition cannot write users' files below it; point TMPDIR elsewhere", d, fi.Mode())
		}
		if filepath.Dir(d) == d {
			return nil
		}
	}
}

// environ returns the test's environment without IGNITION_* variables (they
// change Ignition's behaviour) and with the sbin directories on PATH, where
// useradd and groupadd live.
func environ() []string {
	var env []string
	path := "/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "IGNITION_"):
		case strings.HasPrefix(kv, "PATH="):
			path = strings.TrimPrefix(kv, "PATH=") + ":/usr/sbin:/sbin"
		default:
			env = append(env, kv)
		}
	}
	return append(env, "PATH="+path)
}

// FileInfo returns the mode (type and permission bits), owner and, for a
// regular file, the content of path inside root; for a symbolic link the
// content is its target. It does not follow a final symbolic link. A missing
// path fails the test.
func FileInfo(t testing.TB, root, path string) (mode fs.FileMode, uid, gid int, content []byte) {
	t.Helper()
	p := filepath.Join(root, path)
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatalf("ignitiontest: %v", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("ignitiontest: %s: no owner information", p)
	}
	switch {
	case fi.Mode().IsRegular():
		if content, err = os.ReadFile(p); err != nil {
			t.Fatalf("ignitiontest: %v", err)
		}
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatalf("ignitiontest: %v", err)
		}
		content = []byte(target)
	}
	return fi.Mode(), int(st.Uid), int(st.Gid), content
}

// LookupUser finds name in root's /etc/passwd and returns its uid, primary
// gid and home directory (as written there, not prefixed with root). A name
// that is not there gives an error that matches ErrUnknownUser.
func LookupUser(root, name string) (uid, gid int, home string, err error) {
	p := filepath.Join(root, "etc", "passwd")
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, 0, "", fmt.Errorf("ignitiontest: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		f := strings.Split(sc.Text(), ":")
		if len(f) != 7 || f[0] != name {
			continue
		}
		if uid, err = strconv.Atoi(f[2]); err != nil {
			return 0, 0, "", fmt.Errorf("ignitiontest: %s:%d: uid: %w", p, n, err)
		}
		if gid, err = strconv.Atoi(f[3]); err != nil {
			return 0, 0, "", fmt.Errorf("ignitiontest: %s:%d: gid: %w", p, n, err)
		}
		return uid, gid, f[5], nil
	}
	return 0, 0, "", fmt.Errorf("ignitiontest: user %q in %s: %w", name, p, ErrUnknownUser)
}
