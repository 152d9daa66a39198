package converge

import (
	"context"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/provisioner"
)

// Default ports and timeout of TCPProber.
const (
	DefaultSSHPort      = 22
	DefaultKubeletPort  = 10250
	DefaultProbeTimeout = 3 * time.Second
)

// TCPProber probes a machine by connecting to its SSH port and, when Kubelet is set, its kubelet port.
// The SSH probe passes only when the server sends its SSH banner: a forwarded port (QEMU's user
// networking) accepts connections before anything listens behind it.
type TCPProber struct {
	// Endpoint is the host:port to dial for port of machine m. Defaults to m.Address and the port;
	// providers that forward ports (the local QEMU provider) give their own.
	Endpoint func(m provisioner.Machine, port int) string
	// Kubelet turns the kubelet probe on; off, only SSH counts.
	Kubelet bool
	// Timeout of one connection attempt. Defaults to DefaultProbeTimeout.
	Timeout time.Duration
}

// Probe dials the machine's ports.
func (p TCPProber) Probe(ctx context.Context, m provisioner.Machine) Seen {
	s := Seen{SSH: p.dial(ctx, m, DefaultSSHPort)}
	if p.Kubelet {
		s.Kubelet = p.dial(ctx, m, DefaultKubeletPort)
	}
	return s
}

func (p TCPProber) dial(ctx context.Context, m provisioner.Machine, port int) *bool {
	addr := ""
	if p.Endpoint != nil {
		addr = p.Endpoint(m, port)
	} else if m.Address != "" {
		addr = net.JoinHostPort(m.Address, strconv.Itoa(port))
	}
	ok := false
	if addr != "" {
		timeout := p.Timeout
		if timeout <= 0 {
			timeout = DefaultProbeTimeout
		}
		d := net.Dialer{Timeout: timeout}
		if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
			ok = port != DefaultSSHPort || sshBanner(c, timeout)
			c.Close()
		}
	}
	return &ok
}

// sshBanner reports whether c sends an SSH identification line ("SSH-2.0-...") within timeout.
func sshBanner(c net.Conn, timeout time.Duration) bool {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return false
	}
	buf := make([]byte, 4)
	_, err := io.ReadFull(c, buf)
	return err == nil && string(buf) == "SSH-"
}
