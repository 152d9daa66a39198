package sshexec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// errProven ends a handshake as soon as the host has proved its key: ProveHostKey never logs in.
var errProven = errors.New("host key proven")

// ProveHostKey connects to addr (host:port) and runs the SSH key exchange, in which the host proves
// that it holds the private half of the host key it offers. It returns nil when that key is one of
// keys (a machine's pinned host keys), an error wrapping ErrHostKeyMismatch when it is another, and
// any other error when the host does not speak SSH within timeout (DefaultTimeout when zero). It
// hangs up right after the key exchange: it never authenticates, so it needs no credential and the
// host logs no failed login.
func ProveHostKey(ctx context.Context, addr string, keys []ssh.PublicKey, timeout time.Duration) error {
	if len(keys) == 0 {
		return fmt.Errorf("ssh %s: no host key to check", addr)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("ssh %s: %w", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("ssh %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	known := make([]knownhosts.KnownKey, len(keys))
	for i, k := range keys {
		known[i] = knownhosts.KnownKey{Key: k}
	}
	cfg := &ssh.ClientConfig{
		// Ask for a key of a type that is pinned: a host with an ed25519 and an RSA key, of which only
		// the ed25519 one is pinned, is not a mismatch.
		HostKeyAlgorithms: algorithms(known),
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if slices.ContainsFunc(keys, func(k ssh.PublicKey) bool { return string(k.Marshal()) == string(key.Marshal()) }) {
				return errProven
			}
			return fmt.Errorf("%w: %s offered %s, which is not one of its pinned keys (%s)", ErrHostKeyMismatch, addr, fingerprint(key), fingerprints(keys))
		},
	}
	_, _, _, err = ssh.NewClientConn(conn, addr, cfg)
	var ane *ssh.AlgorithmNegotiationError
	switch {
	case errors.Is(err, errProven):
		return nil
	case errors.As(err, &ane) && ane.What == "host key":
		return fmt.Errorf("%w: %s offers no key of the types pinned (%s)", ErrHostKeyMismatch, addr, fingerprints(keys))
	case err == nil: // not reached: the callback ends every handshake
		return fmt.Errorf("ssh %s: the handshake ended without a host key", addr)
	case ctx.Err() != nil:
		return fmt.Errorf("ssh %s: %w", addr, context.Cause(ctx))
	}
	return fmt.Errorf("ssh %s: %w", addr, err)
}

func fingerprints(keys []ssh.PublicKey) string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fingerprint(k)
	}
	return strings.Join(out, ", ")
}
