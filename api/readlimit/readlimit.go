// Package readlimit reads the files users hand to kiln (cluster specs, machine inventories, SSH keys)
// through an io.LimitReader, so that a wrong path such as /dev/zero or a runaway file ends in an error
// naming the file and the limit rather than in an out-of-memory kill.
package readlimit

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Limits of the files kiln reads.
const (
	// Spec is the limit of a cluster spec: specs are a few KiB; 1 MiB leaves room for thousands of
	// authorized keys and ingress rules.
	Spec = 1 << 20
	// Inventory is the limit of a machine inventory (machines.yaml): about 250 bytes a machine with
	// its BMC, so 2 MiB holds about 8,000 machines. Decoding YAML takes about 60 times its size at
	// worst (a node tree, and every entry wrong): 2 MiB keeps kiln pxe load and kiln validate within
	// 200 MiB, which the memory-bound test of e2e/inputlimits holds them to.
	Inventory = 2 << 20
	// Key is the limit of an SSH key or authorized_keys file: an RSA 16384-bit private key in PEM is
	// about 12 KiB; 1 MiB holds thousands of public keys.
	Key = 1 << 20
	// Secret is the limit of a password file: a line.
	Secret = 4 << 10
	// Config is the limit of a Butane or Ignition config: Ignition configs inline files, but the
	// largest delivery channel (vSphere guestinfo, AWS user data) holds far less than 16 MiB.
	Config = 16 << 20
)

// ErrTooLarge is wrapped when a file is larger than its limit.
var ErrTooLarge = errors.New("larger than the limit")

// ReadFile reads the file at path, at most limit bytes: a longer file (or an endless one, such as a
// device) is an error wrapping ErrTooLarge that names the file and the limit. At most limit+1 bytes
// are read and held.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := Read(f, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// Read reads r to its end, at most limit bytes; a longer stream is an error wrapping ErrTooLarge.
func Read(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w of %s", ErrTooLarge, Size(limit))
	}
	return data, nil
}

// Size formats n bytes as people read sizes: 1 MiB, 16 MiB, 4 KiB, 100 bytes.
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
