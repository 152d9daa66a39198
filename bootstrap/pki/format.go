package pki

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Redacted stands where key material would have been printed.
const Redacted = "[redacted]"

// String describes the key pair by its public parts (certificate subject, serial and expiry, or the
// public key's fingerprint); the private key is never printed.
func (kp KeyPair) String() string {
	var b strings.Builder
	if len(kp.CertPEM) > 0 {
		if cert, err := kp.Certificate(); err != nil {
			b.WriteString("cert=<unparseable>")
		} else {
			fmt.Fprintf(&b, "cn=%q serial=%x notAfter=%s", cert.Subject.CommonName, cert.SerialNumber,
				cert.NotAfter.UTC().Format(time.RFC3339))
		}
	} else if len(kp.PublicPEM) > 0 {
		if pub, err := decodePEM(kp.PublicPEM, BlockPublicKey); err != nil {
			b.WriteString("public=<unparseable>")
		} else {
			sum := sha256.Sum256(pub)
			b.WriteString("public=sha256:" + hex.EncodeToString(sum[:8]))
		}
	}
	if len(kp.KeyPEM) > 0 {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("key=" + Redacted)
	}
	return b.String()
}

// GoString is the %#v form; like String it never prints the private key.
func (kp KeyPair) GoString() string { return "pki.KeyPair{" + kp.String() + "}" }

// Format prints String for every verb (%#v prints GoString), so that no verb or flag prints the key.
func (kp KeyPair) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(kp.GoString()))
		return
	}
	_, _ = f.Write([]byte("{" + kp.String() + "}"))
}

// LogValue keeps the private key out of structured logs (slog's JSON handler would otherwise marshal
// every field).
func (kp KeyPair) LogValue() slog.Value { return slog.StringValue(kp.String()) }
