package secrets

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

const redacted = "[redacted]"

// String describes the bundle by its public parts: certificate subjects, serials and expiries, public
// key fingerprints, the number of authorized keys and the ids of the bootstrap tokens. Private keys, the
// encryption key and token secrets are never printed.
func (b Bundle) String() string {
	var s strings.Builder
	s.WriteString("{")
	pairs := append(b.cas(), namedPair{name: "serviceAccount", kp: &b.ServiceAccount})
	for _, p := range append(pairs, b.leaves()...) {
		fmt.Fprintf(&s, "%s: {%s}, ", p.name, p.kp.String())
	}
	ssh := "none"
	if len(b.SSH.PrivateKeyPEM) > 0 {
		ssh = redacted
	}
	fmt.Fprintf(&s, "ssh: {privateKey: %s, authorizedKeys: %d}, ", ssh, len(b.SSH.AuthorizedKeys))
	fmt.Fprintf(&s, "encryptionKey: %s (%s, %d bytes), ", redacted, b.CurrentEncryptionKeyName(), len(b.EncryptionKey))
	if r := b.EncryptionRotation; r != nil {
		fmt.Fprintf(&s, "encryptionRotation: {phase: %s, %s -> %s, newKey: %s}, ", r.Phase, r.OldKeyName, r.NewKeyName, redacted)
	}
	s.WriteString("bootstrapTokens: [")
	for i, t := range b.BootstrapTokens {
		if i > 0 {
			s.WriteString(", ")
		}
		fmt.Fprintf(&s, "{id: %s, secret: %s, expires: %s}", t.ID, redacted, t.Expires.UTC().Format(time.RFC3339))
	}
	s.WriteString("]}")
	return s.String()
}

// GoString is the %#v form, as safe as String.
func (b Bundle) GoString() string { return "secrets.Bundle" + b.String() }

// Format prints String for every verb and flag (GoString for %#v), so that no fmt verb shows key
// material.
func (b Bundle) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(b.GoString()))
		return
	}
	_, _ = f.Write([]byte(b.String()))
}

// LogValue keeps key material out of structured logs (slog's JSON handler would otherwise marshal every
// field).
func (b Bundle) LogValue() slog.Value { return slog.StringValue(b.String()) }

// String describes the SSH keys without the private key.
func (k SSHKeys) String() string {
	priv := "none"
	if len(k.PrivateKeyPEM) > 0 {
		priv = redacted
	}
	return fmt.Sprintf("{privateKey: %s, authorizedKeys: %q}", priv, k.AuthorizedKeys)
}

// GoString is the %#v form, as safe as String.
func (k SSHKeys) GoString() string { return "secrets.SSHKeys" + k.String() }

// Format prints String for every verb (GoString for %#v).
func (k SSHKeys) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(k.GoString()))
		return
	}
	_, _ = f.Write([]byte(k.String()))
}

// LogValue keeps the private key out of structured logs.
func (k SSHKeys) LogValue() slog.Value { return slog.StringValue(k.String()) }
