package converge

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
	"github.com/kiln-dev/kiln/sshexec"
)

// Default ports and timeout of TCPProber.
const (
	DefaultSSHPort      = 22
	DefaultKubeletPort  = 10250
	DefaultProbeTimeout = 3 * time.Second
)

// TCPProber probes a machine over the network. Its SSH probe passes only when the machine's SSH
// server proves, in the key exchange, that it holds one of the machine's pinned host keys
// (sshexec.ProveHostKey); it never logs in. A port that accepts connections, or even sends an SSH
// banner, is no answer from the machine: a forwarded port (QEMU's user networking) accepts before
// anything listens behind it, and another host may hold the address. When Kubelet is set, the
// kubelet's port must accept a connection too.
type TCPProber struct {
	// Endpoint is the host:port to dial for port of machine m. Defaults to m.Address and the port;
	// providers that forward ports (the local QEMU provider) give their own.
	Endpoint func(m provisioner.Machine, port int) string
	// HostKeys returns the host keys machine m's SSH server must prove: its pinned ones
	// (provisioner/hostkeys). Required: while it returns an error (the machine has reported none yet)
	// the SSH probe fails.
	HostKeys func(ctx context.Context, m provisioner.Machine) ([]ssh.PublicKey, error)
	// Kubelet turns the kubelet probe on; off, only SSH counts.
	Kubelet bool
	// Timeout of one connection attempt. Defaults to DefaultProbeTimeout.
	Timeout time.Duration
	// Log, when set, is warned of each probe refused for its host keys: a report that differs from
	// the pin, or a server that offers another key. Defaults to discarding.
	Log *slog.Logger
}

// Probe probes the machine's SSH server and, when Kubelet is set, its kubelet port.
func (p TCPProber) Probe(ctx context.Context, m provisioner.Machine) Seen {
	ok := p.ssh(ctx, m)
	s := Seen{SSH: &ok}
	if p.Kubelet {
		ok := false
		if addr := p.endpoint(m, DefaultKubeletPort); addr != "" {
			d := net.Dialer{Timeout: p.timeout()}
			if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
				ok = true
				c.Close()
			}
		}
		s.Kubelet = &ok
	}
	return s
}

// ssh reports whether m's SSH server proves one of m's pinned host keys.
func (p TCPProber) ssh(ctx context.Context, m provisioner.Machine) bool {
	addr := p.endpoint(m, DefaultSSHPort)
	if addr == "" || p.HostKeys == nil {
		return false
	}
	keys, err := p.HostKeys(ctx, m)
	if err == nil {
		err = sshexec.ProveHostKey(ctx, addr, keys, p.timeout())
	}
	if p.Log != nil && (errors.Is(err, sshexec.ErrHostKeyMismatch) || errors.Is(err, hostkeys.ErrChanged)) {
		p.Log.Warn("SSH probe refused: not the machine's pinned host keys", "machine", m.Name, "err", err)
	}
	return err == nil
}

func (p TCPProber) endpoint(m provisioner.Machine, port int) string {
	if p.Endpoint != nil {
		return p.Endpoint(m, port)
	}
	if m.Address == "" {
		return ""
	}
	return net.JoinHostPort(m.Address, strconv.Itoa(port))
}

func (p TCPProber) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return DefaultProbeTimeout
}
