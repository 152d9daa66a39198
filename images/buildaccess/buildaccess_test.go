package buildaccess

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/google/go-cmp/cmp"
	"github.com/vincent-petithory/dataurl"
	"golang.org/x/crypto/ssh"
)

func TestNeeded(t *testing.T) {
	tests := []struct {
		name    string
		given   map[string]bool
		want    bool
		wantErr string
	}{
		{name: "neither", given: map[string]bool{"base_image": true}, want: true},
		{name: "nothing given", given: nil, want: true},
		{name: "both", given: map[string]bool{VarIgnition: true, VarKey: true}, want: false},
		{name: "only the config", given: map[string]bool{VarIgnition: true}, wantErr: "build_ignition is given without its pair ssh_private_key_file"},
		{name: "only the key", given: map[string]bool{VarKey: true}, wantErr: "ssh_private_key_file is given without its pair build_ignition"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Needed(tc.given)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrHalfGiven) {
					t.Fatalf("Needed = %v, %v; want an ErrHalfGiven saying %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Needed = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// fileText returns the decoded contents of the config's file at path.
func fileText(t *testing.T, cfg types.Config, path string) (types.File, string) {
	t.Helper()
	for _, f := range cfg.Storage.Files {
		if f.Path == path {
			d, err := dataurl.DecodeString(*f.Contents.Source)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return f, string(d.Data)
		}
	}
	t.Fatalf("the config has no file %s", path)
	return types.File{}, ""
}

func TestIgnition(t *testing.T) {
	key, err := NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		user    string
		key     string
		wantErr string
	}{
		{name: "default user", user: DefaultUser, key: key.AuthorizedKey},
		{name: "other user", user: "builder", key: key.AuthorizedKey},
		{name: "empty user", user: "", key: key.AuthorizedKey, wantErr: `ssh_username "": not a user name`},
		{name: "user with a slash", user: "../root", key: key.AuthorizedKey, wantErr: `ssh_username "../root": not a user name`},
		{name: "not a key", user: DefaultUser, key: "ssh-ed25519 nonsense", wantErr: "authorized key:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := Ignition(tc.user, tc.key)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Ignition: %v; want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg, rpt, err := v3_5.Parse(raw)
			if err != nil || len(rpt.Entries) != 0 {
				t.Fatalf("v3_5.Parse: %v %s", err, rpt.String())
			}
			if len(cfg.Passwd.Users) != 1 {
				t.Fatalf("users = %+v, want one", cfg.Passwd.Users)
			}
			u := cfg.Passwd.Users[0]
			if diff := cmp.Diff([]types.SSHAuthorizedKey{types.SSHAuthorizedKey(tc.key)}, u.SSHAuthorizedKeys); u.Name != tc.user || diff != "" {
				t.Errorf("user %q with keys (-want +got):\n%s", u.Name, diff)
			}
			home := "/home/" + tc.user
			if len(cfg.Storage.Directories) != 1 || cfg.Storage.Directories[0].Path != home+"/.ssh" ||
				*cfg.Storage.Directories[0].Mode != 0o700 || *cfg.Storage.Directories[0].User.Name != tc.user {
				t.Errorf("directories = %+v, want %s/.ssh 0700 owned by %s", cfg.Storage.Directories, home, tc.user)
			}
			f, text := fileText(t, cfg, home+"/.ssh/authorized_keys")
			if text != tc.key+"\n" || *f.Mode != 0o600 || *f.User.Name != tc.user || *f.Group.Name != tc.user {
				t.Errorf("authorized_keys = %q mode %o owner %s", text, *f.Mode, *f.User.Name)
			}
			f, text = fileText(t, cfg, SudoersFile)
			if text != tc.user+" ALL=(ALL) NOPASSWD:ALL\n" || *f.Mode != 0o440 {
				t.Errorf("sudoers = %q mode %o", text, *f.Mode)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	// A file left by an earlier run that died is replaced.
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := Write(dir, "builder", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"build_ignition=" + filepath.Join(dir, IgnitionFile), "ssh_private_key_file=" + filepath.Join(dir, KeyFile)}
	if diff := cmp.Diff(want, a.Vars()); diff != "" {
		t.Errorf("Vars (-want +got):\n%s", diff)
	}
	for _, p := range []string{a.KeyPath, a.IgnitionPath} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o, want 0600", p, fi.Mode().Perm())
		}
	}
	pemKey, err := os.ReadFile(a.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pemKey)
	if err != nil {
		t.Fatalf("the build key does not parse: %v", err)
	}
	if signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("build key type %s, want ed25519", signer.PublicKey().Type())
	}
	raw, err := os.ReadFile(a.IgnitionPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := v3_5.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := string(cfg.Passwd.Users[0].SSHAuthorizedKeys[0])
	if want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))); got != want || cfg.Passwd.Users[0].Name != "builder" {
		t.Errorf("the config authorizes %q for %s, want the build key %q for builder", got, cfg.Passwd.Users[0].Name, want)
	}

	other, err := Write(t.TempDir(), "builder", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, _ := os.ReadFile(other.KeyPath)
	if string(otherPEM) == string(pemKey) {
		t.Error("two writes made the same key")
	}

	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a.KeyPath, a.IgnitionPath} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after Remove: %v", p, err)
		}
	}
	if err := a.Remove(); err != nil {
		t.Errorf("a second Remove: %v", err)
	}
}

func TestWriteErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name, dir, user, want string
	}{
		{name: "no such directory", dir: missing, user: DefaultUser, want: filepath.Join(missing, KeyFile)},
		{name: "bad user", dir: t.TempDir(), user: "a b", want: `ssh_username "a b"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Write(tc.dir, tc.user, rand.Reader)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write: %v; want an error naming %q", err, tc.want)
			}
		})
	}
}
