// Package atomicfile writes a file whole or not at all: to a temporary file in the same directory,
// synced, then renamed over the target, so that a crash never leaves half a file.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write writes data to path with mode perm. With exclusive, an existing path is an error
// (os.ErrExist) and is left as it is.
func Write(path string, data []byte, perm os.FileMode, exclusive bool) error {
	dir := filepath.Dir(path)
	if exclusive {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("write %s: %w", path, os.ErrExist)
		}
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after the rename
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if exclusive {
		// Link fails if path appeared meanwhile; rename would replace it.
		if err := os.Link(name, path); err != nil {
			if os.IsExist(err) {
				return fmt.Errorf("write %s: %w", path, os.ErrExist)
			}
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
