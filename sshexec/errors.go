package sshexec

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

var (
	// ErrUnknownHostKey is wrapped by a HostKeyError for a host the known_hosts file has no key of.
	ErrUnknownHostKey = errors.New("unknown host key")
	// ErrHostKeyMismatch is wrapped by a HostKeyError for a host that offered a key other than the
	// ones the known_hosts file holds for it (or one the file revokes).
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrKnownHostsFile is wrapped when the known_hosts file cannot be read or parsed.
	ErrKnownHostsFile = errors.New("known_hosts file")
	// ErrTimeout is wrapped when the exchange with a host has not ended within Config.Timeout.
	ErrTimeout = errors.New("timed out")
	// ErrOutputTooLarge is wrapped when a command prints more than Config.MaxOutput.
	ErrOutputTooLarge = errors.New("output larger than the limit")
)

// HostKeyError is a host key that the known_hosts file does not vouch for.
type HostKeyError struct {
	// Addr is the host as dialled, host:port.
	Addr string
	// KnownHosts is the file that was consulted.
	KnownHosts string
	// Key is the key the host offered; nil when it offered none of the types the file holds for it.
	Key ssh.PublicKey
	// Known are the keys the file holds for the host, with their lines; empty for an unknown host.
	Known []knownhosts.KnownKey
	// Revoked is the line that revokes Key, if that is why it was refused.
	Revoked *knownhosts.KnownKey
}

func (e *HostKeyError) Error() string {
	offered := "none of the key types the file holds for it"
	if e.Key != nil {
		offered = fingerprint(e.Key)
	}
	switch {
	case e.Revoked != nil:
		return fmt.Sprintf("host key mismatch: %s offered %s, which %s:%d revokes", e.Addr, offered, e.Revoked.Filename, e.Revoked.Line)
	case len(e.Known) == 0:
		return fmt.Sprintf("unknown host key: %s offered %s, which is not in %s; check its fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and add it",
			e.Addr, offered, e.KnownHosts)
	}
	known := make([]string, 0, len(e.Known))
	for _, k := range e.Known {
		known = append(known, fmt.Sprintf("%s:%d holds %s", k.Filename, k.Line, fingerprint(k.Key)))
	}
	return fmt.Sprintf("host key mismatch: %s offered %s, but %s; if the host was reinstalled, check its new key and replace the line, else someone may be in the middle",
		e.Addr, offered, strings.Join(known, ", "))
}

// Unwrap returns ErrUnknownHostKey or ErrHostKeyMismatch.
func (e *HostKeyError) Unwrap() error {
	if len(e.Known) == 0 && e.Revoked == nil {
		return ErrUnknownHostKey
	}
	return ErrHostKeyMismatch
}

func fingerprint(k ssh.PublicKey) string {
	return ssh.FingerprintSHA256(k) + " (" + k.Type() + ")"
}

// ExitError is a command that ended without success on the host.
type ExitError struct {
	Command string
	// Status is the command's exit status; -1 when a signal ended it.
	Status int
	// Signal is the signal that ended it, without "SIG" (e.g. "KILL"), if one did.
	Signal string
	// Stderr is what the command wrote to its standard error.
	Stderr []byte
}

func (e *ExitError) Error() string {
	how := fmt.Sprintf("exited with status %d", e.Status)
	if e.Signal != "" {
		how = "killed by signal " + e.Signal
	}
	msg := e.Command + ": " + how
	if s := strings.TrimSpace(string(e.Stderr)); s != "" {
		msg += ": " + s
	}
	return msg
}
