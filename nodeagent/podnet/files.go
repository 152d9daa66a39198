package podnet

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteConflist writes data to dir/ConflistFile (mode 0644) unless the file already holds exactly
// data, and says whether it wrote. It writes a temporary file in dir whose name CNI loaders ignore,
// syncs it and renames it into place, so that containerd, which watches dir, only ever reads a
// whole config. dir is made if missing.
func WriteConflist(dir string, data []byte) (bool, error) {
	path := filepath.Join(dir, ConflistFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("podnet: cni config: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("podnet: cni config: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+ConflistFile+".*.tmp")
	if err != nil {
		return false, fmt.Errorf("podnet: cni config: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("podnet: cni config: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return false, fmt.Errorf("podnet: cni config: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("podnet: cni config: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("podnet: cni config: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("podnet: cni config: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename survives a crash; a directory that cannot be synced still holds the file
		d.Close()
	}
	return true, nil
}

// EarlierConfigs returns the CNI configs in dir whose names sort before ConflistFile: containerd
// uses the first config by name, so any of them would shadow kiln's.
func EarlierConfigs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("podnet: cni config directory: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		ext := filepath.Ext(n)
		if e.IsDir() || n >= ConflistFile || (ext != ".conf" && ext != ".conflist" && ext != ".json") {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}
