package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
)

var _ provisioner.HostKeyReporter = (*Provider)(nil)

// HostKeys returns the SSH host keys of the machine's latest complete report on its serial console
// (serial.log in its directory: only its VM writes it, and the directory is root's, mode 0700). It
// reads the last hostkeys.MaxReportRead bytes of the log. It wraps provisioner.ErrNoHostKeys while
// the log holds no complete report, ErrNotFound for a machine that does not exist, and names the log
// and the line for a malformed report.
func (p *Provider) HostKeys(ctx context.Context, name string) ([]ssh.PublicKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("qemu: host keys of %s: %w", name, err)
	}
	if err := checkName("name", name); err != nil {
		return nil, err
	}
	dir, err := p.machineDir(name)
	if err != nil {
		return nil, fmt.Errorf("qemu: host keys of %s: %w", name, err)
	}
	if dir == "" {
		return nil, fmt.Errorf("qemu: host keys of %s: %w", name, ErrNotFound)
	}
	path := filepath.Join(dir, serialFile)
	data, from, err := readTail(path, hostkeys.MaxReportRead)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("qemu: host keys of %s: no serial console yet: %w", name, provisioner.ErrNoHostKeys)
	}
	if err != nil {
		return nil, fmt.Errorf("qemu: host keys of %s: %w", name, err)
	}
	keys, err := hostkeys.Parse(data)
	if err != nil {
		where := path
		if from > 0 {
			where = fmt.Sprintf("%s (its last %d bytes, from byte %d)", path, len(data), from)
		}
		return nil, fmt.Errorf("qemu: host keys of %s: %s: %w", name, where, err)
	}
	return keys, nil
}

// readTail returns at most limit bytes of the end of the file at path, starting at a line, and the
// offset in the file they start at.
func readTail(path string, limit int64) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	from := max(fi.Size()-limit, 0)
	data, err := io.ReadAll(io.NewSectionReader(f, from, fi.Size()-from))
	if err != nil {
		return nil, 0, err
	}
	if from > 0 { // the first line is cut: it starts before what was read
		i := bytes.IndexByte(data, '\n') + 1 // 0 when there is no line end: nothing is whole
		if i == 0 {
			i = len(data)
		}
		data, from = data[i:], from+int64(i)
	}
	return data, from, nil
}
