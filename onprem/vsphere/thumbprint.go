package vsphere

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// NormalizeThumbprint reads a certificate thumbprint as vCenter and openssl print it, SHA-256 (32
// bytes) or SHA-1 (20 bytes), hex with or without colons, in either case, and returns it in the form
// govmomi's soap client compares (upper case, colon-separated): soap.Client checks a pinned
// thumbprint against both the SHA-256 and the SHA-1 of the certificate, by exact string.
func NormalizeThumbprint(s string) (string, error) {
	h := strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(s))
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != sha256.Size && len(b) != sha1.Size) {
		return "", fmt.Errorf("%q is not a SHA-256 or SHA-1 thumbprint (64 or 40 hex digits, colons optional)", s)
	}
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":"), nil
}
