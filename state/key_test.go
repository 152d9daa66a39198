package state

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKeyFromEnv(t *testing.T) {
	good := bytes.Repeat([]byte{7}, KeySize)
	tests := []struct {
		name    string
		value   string
		want    []byte
		wantErr bool
	}{
		{name: "32 bytes", value: base64.StdEncoding.EncodeToString(good), want: good},
		{name: "32 bytes with newline", value: base64.StdEncoding.EncodeToString(good) + "\n", want: good},
		{name: "16 bytes", value: base64.StdEncoding.EncodeToString([]byte("0123456789abcdef")), wantErr: true},
		{name: "33 bytes", value: base64.StdEncoding.EncodeToString(append(bytes.Clone(good), 1)), wantErr: true},
		{name: "not base64", value: "s3cr3t-passphrase-not-base64!!", wantErr: true},
		{name: "raw 32 characters", value: strings.Repeat("k", 32), wantErr: true},
		{name: "empty", value: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvKey, tc.value)
			dir := t.TempDir()
			for _, load := range []func(string) ([]byte, error){LoadKey, LoadOrCreateKey} {
				got, err := load(dir)
				if tc.wantErr {
					if err == nil {
						t.Fatalf("got a key from %q, want an error", tc.value)
					}
					if !strings.Contains(err.Error(), EnvKey) {
						t.Errorf("error %q does not name %s", err, EnvKey)
					}
					if v := strings.TrimSpace(tc.value); v != "" && strings.Contains(err.Error(), v[:min(8, len(v))]) {
						t.Errorf("error %q echoes the variable's value", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				if !bytes.Equal(got, tc.want) {
					t.Errorf("key = %x, want %x", got, tc.want)
				}
			}
			// The environment wins: no key file is created beside it.
			if _, err := os.Stat(filepath.Join(dir, KeyFileName)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a key file was created although %s is set", EnvKey)
			}
		})
	}
}

func TestKeyFile(t *testing.T) {
	unsetEnv(t, EnvKey)
	dir := filepath.Join(t.TempDir(), "state")

	if _, err := LoadKey(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadKey without a key file = %v, want fs.ErrNotExist", err)
	}
	key, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateKey: %v", err)
	}
	if len(key) != KeySize || bytes.Equal(key, make([]byte, KeySize)) {
		t.Fatalf("created key %d bytes, all zero %v", len(key), bytes.Equal(key, make([]byte, KeySize)))
	}
	path := filepath.Join(dir, KeyFileName)
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{path, 0o600}, {dir, 0o700}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("%s: mode %04o, want %04o", c.path, got, c.want)
		}
	}
	again, err := LoadOrCreateKey(dir)
	if err != nil || !bytes.Equal(again, key) {
		t.Errorf("second LoadOrCreateKey = %x, %v; want the first key", again, err)
	}
	loaded, err := LoadKey(dir)
	if err != nil || !bytes.Equal(loaded, key) {
		t.Errorf("LoadKey = %x, %v; want the created key", loaded, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("key directory holds %v, want only %s", entries, KeyFileName)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, load := range []func(string) ([]byte, error){LoadKey, LoadOrCreateKey} {
		_, err := load(dir)
		if err == nil || !strings.Contains(err.Error(), "0644") || !strings.Contains(err.Error(), path) {
			t.Errorf("loading a 0644 key file = %v, want an error naming the file and its mode", err)
		}
	}

	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(dir); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("LoadKey of a 5-byte key file = %v, want an error without the file's contents", err)
	}
}

func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // restores the old value after the test
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultDir(t *testing.T) {
	home := t.TempDir()
	tests := []struct {
		name     string
		kilnDir  string
		xdgState string
		want     string
	}{
		{name: "KILN_STATE_DIR wins", kilnDir: "/srv/kiln", xdgState: "/xdg/state", want: "/srv/kiln"},
		{name: "XDG_STATE_HOME", xdgState: "/xdg/state", want: "/xdg/state/kiln"},
		{name: "relative XDG_STATE_HOME is ignored", xdgState: "rel/state", want: filepath.Join(home, ".local", "state", "kiln")},
		{name: "home", want: filepath.Join(home, ".local", "state", "kiln")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HOME", home)
			t.Setenv(EnvDir, tc.kilnDir)
			t.Setenv("XDG_STATE_HOME", tc.xdgState)
			if got := DefaultDir(); got != tc.want {
				t.Errorf("DefaultDir() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNoDir(t *testing.T) {
	t.Setenv(EnvKey, base64.StdEncoding.EncodeToString(make([]byte, KeySize)))
	for _, load := range []func(string) ([]byte, error){LoadKey, LoadOrCreateKey} {
		if _, err := load(""); err == nil || !strings.Contains(err.Error(), EnvDir) {
			t.Errorf("load(\"\") = %v, want an error naming %s", err, EnvDir)
		}
	}
	if _, err := Open("", make([]byte, KeySize)); err == nil {
		t.Errorf("Open(\"\") succeeded")
	}
}
