package secrets

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"
)

// tokenChars are the characters of a bootstrap token, [a-z0-9].
const tokenChars = "abcdefghijklmnopqrstuvwxyz0123456789"

// BootstrapToken is a Kubernetes bootstrap token, "<id>.<secret>" with a 6-character id and a
// 16-character secret of [a-z0-9], that lets one node join until it expires.
//
// A token with a Machine is that machine's own (MachineToken): minted when its config is rendered,
// applied to the cluster before it is created, deleted once its Node joined or it is deleted. A token
// without one is shared by the nodes rendered outside `kiln apply` (JoinToken).
type BootstrapToken struct {
	ID          string    `json:"id"`
	Secret      string    `json:"secret"`
	Expires     time.Time `json:"expires"`
	Description string    `json:"description,omitempty"`
	// Issued is when the token was made; zero for tokens stored by an earlier kiln.
	Issued time.Time `json:"issued,omitzero"`
	// Machine is the one machine that joins with the token; empty for a shared token.
	Machine string `json:"machine,omitempty"`
	// Pool is the machine's group: its node pool, or "control-plane".
	Pool string `json:"pool,omitempty"`
}

// NewBootstrapToken makes a token that expires ttl after now, reading its characters from rand.
func NewBootstrapToken(rand io.Reader, now time.Time, ttl time.Duration, description string) (BootstrapToken, error) {
	if ttl <= 0 {
		return BootstrapToken{}, fmt.Errorf("secrets: new bootstrap token: ttl %v is not positive", ttl)
	}
	if rand == nil {
		return BootstrapToken{}, errors.New("secrets: new bootstrap token: nil random source")
	}
	id, err := randomString(rand, 6)
	if err != nil {
		return BootstrapToken{}, fmt.Errorf("secrets: new bootstrap token: %w", err)
	}
	secret, err := randomString(rand, 16)
	if err != nil {
		return BootstrapToken{}, fmt.Errorf("secrets: new bootstrap token: %w", err)
	}
	return BootstrapToken{ID: id, Secret: secret, Expires: now.Add(ttl).UTC(), Description: description, Issued: now.UTC()}, nil
}

// randomString draws n characters of tokenChars uniformly: a byte b is used only if b < 252 (7*36), as
// b%36, so every character has probability exactly 7/252; bytes 252-255 are rejected.
func randomString(rand io.Reader, n int) (string, error) {
	const limit = byte(256 - 256%len(tokenChars))
	out := make([]byte, 0, n)
	buf := make([]byte, n)
	// A byte is rejected with probability 4/256; 64 rounds without n usable bytes mean a broken reader.
	for range 64 {
		if _, err := io.ReadFull(rand, buf[:n-len(out)]); err != nil {
			return "", fmt.Errorf("read random token: %w", err)
		}
		for _, b := range buf[:n-len(out)] {
			if b < limit {
				out = append(out, tokenChars[int(b)%len(tokenChars)])
			}
		}
		if len(out) == n {
			return string(out), nil
		}
	}
	return "", errors.New("read random token: random source gives no usable bytes")
}

// String is the token as kubelets and kubeadm take it, "<id>.<secret>". It includes the secret.
func (t BootstrapToken) String() string { return t.ID + "." + t.Secret }

// GoString is the %#v form; unlike String it leaves the secret out.
func (t BootstrapToken) GoString() string {
	return fmt.Sprintf("secrets.BootstrapToken{ID: %q, Secret: %s, Expires: %s, Description: %q, Machine: %q}",
		t.ID, redacted, t.Expires.UTC().Format(time.RFC3339), t.Description, t.Machine)
}

// LogValue keeps the secret out of structured logs.
func (t BootstrapToken) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("id", t.ID), slog.Time("expires", t.Expires), slog.String("description", t.Description)}
	if t.Machine != "" {
		attrs = append(attrs, slog.String("machine", t.Machine))
	}
	return slog.GroupValue(attrs...)
}

// Expired reports whether the token is no longer valid at now.
func (t BootstrapToken) Expired(now time.Time) bool { return !now.Before(t.Expires) }

// ValidBootstrapToken returns the shared token (one without a Machine) with the latest expiry among
// those that are still valid for at least minRemaining after now; false if there is none. A machine's
// own token is never handed to another.
func (b *Bundle) ValidBootstrapToken(now time.Time, minRemaining time.Duration) (BootstrapToken, bool) {
	var best BootstrapToken
	found := false
	for _, t := range b.BootstrapTokens {
		if t.Machine != "" || t.Expired(now) || t.Expires.Sub(now) < minRemaining {
			continue
		}
		if !found || t.Expires.After(best.Expires) {
			best, found = t, true
		}
	}
	return best, found
}

// AddBootstrapToken makes a new token (with an id no other token of the bundle has), drops the shared
// tokens that have expired at now, and adds the new one. Persist the change with Update. Machines'
// tokens are kept, expired or not: they are forgotten once their Secret is gone from the cluster
// (bootstrap/tokens).
func (b *Bundle) AddBootstrapToken(rand io.Reader, now time.Time, ttl time.Duration, description string) (BootstrapToken, error) {
	var t BootstrapToken
	for range 16 {
		var err error
		if t, err = NewBootstrapToken(rand, now, ttl, description); err != nil {
			return BootstrapToken{}, err
		}
		if !slices.ContainsFunc(b.BootstrapTokens, func(o BootstrapToken) bool { return o.ID == t.ID }) {
			b.BootstrapTokens = slices.DeleteFunc(b.BootstrapTokens, func(o BootstrapToken) bool { return o.Machine == "" && o.Expired(now) })
			b.BootstrapTokens = append(b.BootstrapTokens, t)
			return t, nil
		}
	}
	return BootstrapToken{}, errors.New("secrets: new bootstrap token: random source keeps giving ids in use")
}
