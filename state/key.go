package state

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Environment variables and file names.
const (
	// EnvKey holds the store key as the standard base64 of 32 bytes; it takes precedence over the key
	// file.
	EnvKey = "KILN_STATE_KEY"
	// EnvDir is the state directory; see DefaultDir.
	EnvDir = "KILN_STATE_DIR"
	// KeyFileName is the key file in the state directory: 32 raw bytes, mode 0600.
	KeyFileName = "state.key"
	// FileName is the state file in the state directory.
	FileName = "state.db"
)

// DefaultDir is the state directory: $KILN_STATE_DIR, else $XDG_STATE_HOME/kiln, else
// ~/.local/state/kiln. It is empty when none of these is known (no home directory); LoadKey and
// LoadOrCreateKey refuse an empty directory rather than use the working directory.
func DefaultDir() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	// The XDG base directory spec says relative paths are invalid and are to be ignored.
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "kiln")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".local", "state", "kiln")
}

// LoadKey returns the store key from the environment variable KILN_STATE_KEY if it is set, else from
// the file state.key in dir. The key file must exist (see LoadOrCreateKey) and be readable by its owner
// only. Errors never include the key.
func LoadKey(dir string) ([]byte, error) {
	if dir == "" {
		return nil, errNoDir
	}
	if v, ok := os.LookupEnv(EnvKey); ok {
		return keyFromEnv(v)
	}
	return readKeyFile(filepath.Join(dir, KeyFileName))
}

// LoadOrCreateKey is LoadKey, except that when KILN_STATE_KEY is not set and dir holds no key file it
// creates one (mode 0600, directory 0700) with 32 bytes from crypto/rand.
func LoadOrCreateKey(dir string) ([]byte, error) {
	if dir == "" {
		return nil, errNoDir
	}
	if v, ok := os.LookupEnv(EnvKey); ok {
		return keyFromEnv(v)
	}
	path := filepath.Join(dir, KeyFileName)
	key, err := readKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := createKeyFile(dir, path); err != nil {
		return nil, err
	}
	return readKeyFile(path)
}

var errNoDir = fmt.Errorf("state: no state directory: set %s (or XDG_STATE_HOME, or HOME)", EnvDir)

func keyFromEnv(v string) ([]byte, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, fmt.Errorf("state: %s is set but empty; unset it to use the key file, or set it to the base64 of %d random bytes",
			EnvKey, KeySize)
	}
	// The decoder's error is not wrapped: it quotes the offending input.
	key, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("state: %s is not standard base64; it must be the base64 of %d random bytes (head -c %d /dev/urandom | base64)",
			EnvKey, KeySize, KeySize)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("state: %s decodes to %d bytes, want %d", EnvKey, len(key), KeySize)
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("state: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("state: key file %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("state: key file %s: mode is %04o, so other users may read it; it must be 0600: "+
			"run chmod 600 %s, and consider the key exposed", path, perm, path)
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("state: key file: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("state: key file %s: holds %d bytes, want %d", path, len(key), KeySize)
	}
	return key, nil
}

// createKeyFile writes a new key under a temporary name and links it into place, so that a reader
// never sees a partial key and two processes creating one at once agree on the first.
func createKeyFile(dir, path string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state: create key file: %w", err)
	}
	key := make([]byte, KeySize)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	tmp, err := os.CreateTemp(dir, "."+KeyFileName+".new-*")
	if err != nil {
		return fmt.Errorf("state: create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(key)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state: create key file %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("state: create key file %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}
