package ignitiontest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/internal/testtool"
)

const (
	sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5TwAPmcOO/tmeF85wTbPPllN/QRBDLMaAukGeOndD9 kiln@test"
	unit   = "[Unit]\nDescription=Say hello\n\n[Service]\nType=oneshot\nExecStart=/bin/cat /etc/kiln/hello\n\n[Install]\nWantedBy=multi-user.target\n"
)

// readConfig reads a handwritten config from testdata and checks it with
// Ignition's own parser, so that a broken fixture fails here and not in the
// binary.
func readConfig(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, rpt, err := v3_5.Parse(data); err != nil || len(rpt.Entries) > 0 {
		t.Fatalf("testdata/%s: %v\n%s", name, err, rpt.String())
	}
	return data
}

func TestApply(t *testing.T) {
	root := Apply(t, readConfig(t, "basic.ign"))

	uid, gid, home, err := LookupUser(root, "kiln")
	if err != nil {
		t.Fatal(err)
	}
	// Debian's login.defs: the first uid and gid, and a group of the user's own.
	if uid != 1000 || gid != 1000 || home != "/home/kiln" {
		t.Errorf("LookupUser(kiln) = uid %d, gid %d, home %q; want 1000, 1000, /home/kiln", uid, gid, home)
	}
	group, err := os.ReadFile(filepath.Join(root, "etc/group"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(group), "\nkiln:x:1000:\n") {
		t.Errorf("etc/group has no kiln:x:1000: line:\n%s", group)
	}

	type node struct {
		Mode     fs.FileMode
		UID, GID int
		Content  string
	}
	tests := []struct {
		name string
		path string
		want node
	}{
		{
			name: "home directory",
			path: "/home/kiln",
			want: node{Mode: fs.ModeDir | 0o755, UID: uid, GID: gid},
		},
		{
			name: "ssh directory",
			path: "/home/kiln/.ssh",
			want: node{Mode: fs.ModeDir | 0o700, UID: uid, GID: gid},
		},
		{
			// Ignition 2.26 writes the keys as a fragment, not to
			// ~/.ssh/authorized_keys (distro.writeAuthorizedKeysFragment
			// defaults to true); Debian's sshd does not read fragments.
			name: "authorized keys fragment",
			path: "/home/kiln/.ssh/authorized_keys.d/ignition",
			want: node{Mode: 0o600, UID: uid, GID: gid, Content: sshKey + "\n"},
		},
		{
			name: "file",
			path: "/etc/kiln/hello",
			want: node{Mode: 0o640, UID: uid, GID: gid, Content: "hello from kiln\n"},
		},
		{
			name: "directory",
			path: "/var/lib/kiln",
			want: node{Mode: fs.ModeDir | 0o750, UID: uid, GID: gid},
		},
		{
			name: "unit",
			path: "/etc/systemd/system/kiln-hello.service",
			want: node{Mode: 0o644, Content: unit},
		},
		{
			// Ignition enables a unit by a preset line only; systemd
			// acts on it at first boot (preset-all) or on
			// `systemctl preset`.
			name: "preset",
			path: "/etc/systemd/system-preset/20-ignition.preset",
			want: node{Mode: 0o644, Content: "enable kiln-hello.service\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mode, uid, gid, content := FileInfo(t, root, tc.path)
			got := node{Mode: mode, UID: uid, GID: gid, Content: string(content)}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.path, diff)
			}
		})
	}

	for _, path := range []string{
		"/home/kiln/.ssh/authorized_keys",
		"/etc/systemd/system/multi-user.target.wants",
	} {
		if _, err := os.Lstat(filepath.Join(root, path)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: want no such file, got %v", path, err)
		}
	}
}

// errAny in a test table wants some error, whichever.
var errAny = errors.New("any error")

func TestLookupUser(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := basePasswd + "bad:x:1x:1000::/home/bad:/bin/sh\nshort:x:1000\n"
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		user     string
		uid, gid int
		home     string
		err      error // matched with errors.Is, or any error for errAny
	}{
		{name: "root", user: "root", uid: 0, gid: 0, home: "/root"},
		{name: "nobody", user: "nobody", uid: 65534, gid: 65534, home: "/nonexistent"},
		{name: "unknown", user: "kiln", err: ErrUnknownUser},
		{name: "bad uid", user: "bad", err: errAny},
		{name: "short line is skipped", user: "short", err: ErrUnknownUser},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uid, gid, home, err := LookupUser(root, tc.user)
			if tc.err == errAny && err != nil {
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("LookupUser(%q) error = %v, want %v", tc.user, err, tc.err)
			}
			if uid != tc.uid || gid != tc.gid || home != tc.home {
				t.Errorf("LookupUser(%q) = %d, %d, %q; want %d, %d, %q", tc.user, uid, gid, home, tc.uid, tc.gid, tc.home)
			}
		})
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, so that Apply's failure path can be tested.
type fatalRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestApplyFailureShowsIgnitionOutput(t *testing.T) {
	// Skips and failures for a missing binary or root happen here, on the
	// test's own goroutine; Apply below then finds both.
	testtool.RequireRoot(t)
	testtool.Ignition(t)

	// Valid JSON and a valid config, but the file's owner does not exist:
	// the fetch stage passes and the files stage fails.
	config := []byte(`{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/x","user":{"name":"ghost"}}]}}`)
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Apply(r, config)
	}()
	<-done
	if !r.failed {
		t.Fatal("Apply of a config with an unknown owner did not fail")
	}
	for _, want := range []string{"-stage files", "Ignition failed", `"ghost"`} {
		if !strings.Contains(r.msg, want) {
			t.Errorf("failure message lacks %q:\n%s", want, r.msg)
		}
	}
}
