package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/state"
)

// Bucket is the state-store bucket of secrets bundles, one per cluster name.
const Bucket = "secrets"

// TokenStore is what JoinToken needs of the state store: the bundle to read, and its bootstrap tokens
// to change.
type TokenStore interface {
	state.Getter
	state.Modifier
}

// Save stores a new cluster's bundle. If the cluster already has one it fails with state.ErrExists and
// changes nothing: secrets are generated once and never silently replaced.
func Save(s state.Creator, cluster string, b *Bundle) error {
	if b == nil || len(b.ClusterCA.CertPEM) == 0 || len(b.EncryptionKey) != EncryptionKeySize || len(b.SSH.AuthorizedKeys) == 0 {
		return fmt.Errorf("secrets: save %s: %w", cluster, ErrIncomplete)
	}
	if err := s.Create(Bucket, cluster, b); err != nil {
		if errors.Is(err, state.ErrExists) {
			return fmt.Errorf("secrets: save %s: the cluster already has secrets, which are never replaced: %w", cluster, err)
		}
		return fmt.Errorf("secrets: save %s: %w", cluster, err)
	}
	return nil
}

// Load reads a cluster's bundle; state.ErrNotFound if it has none.
func Load(s state.Getter, cluster string) (*Bundle, error) {
	var b Bundle
	if err := s.Get(Bucket, cluster, &b); err != nil {
		return nil, fmt.Errorf("secrets: load %s: %w", cluster, err)
	}
	return &b, nil
}

// Update stores b's bootstrap tokens as the cluster's, in place of those stored: the way to persist a
// token made with Bundle.AddBootstrapToken or NewBootstrapToken. Everything else in b must be what is
// stored (b came from Load); if it is not, Update fails with ErrKeyMaterialChanged and stores nothing,
// so a regenerated bundle can never replace a cluster's CAs and keys. It returns state.ErrNotFound if
// the cluster has no secrets.
func Update(s state.Modifier, cluster string, b *Bundle) error {
	if b == nil {
		return fmt.Errorf("secrets: update %s: %w", cluster, ErrIncomplete)
	}
	want, err := keyMaterial(b)
	if err != nil {
		return fmt.Errorf("secrets: update %s: %w", cluster, err)
	}
	var stored Bundle
	err = s.Modify(Bucket, cluster, &stored, func() error {
		have, err := keyMaterial(&stored)
		if err != nil {
			return err
		}
		if !bytes.Equal(have, want) {
			return ErrKeyMaterialChanged
		}
		stored.BootstrapTokens = slices.Clone(b.BootstrapTokens)
		return nil
	})
	if err != nil {
		return fmt.Errorf("secrets: update %s: %w", cluster, err)
	}
	return nil
}

// keyMaterial is everything in b but the bootstrap tokens, encoded.
func keyMaterial(b *Bundle) ([]byte, error) {
	c := *b
	c.BootstrapTokens = nil
	return json.Marshal(c)
}

// JoinToken loads cluster c's bundle and returns it with a bootstrap token that has at least half of
// spec.security.bootstrapTokenTTL left, adding and storing a new one (described by description) when
// there is none; expired tokens are dropped then. It is what every renderer of a joining node's
// config calls, so that a render never hands out a token about to expire.
func JoinToken(s TokenStore, c *v1alpha1.Cluster, now time.Time, description string) (*Bundle, BootstrapToken, error) {
	name := c.Metadata.Name
	b, err := Load(s, name)
	if err != nil {
		return nil, BootstrapToken{}, fmt.Errorf("cluster %s: %w (run 'kiln init %s' first)", name, err, name)
	}
	ttl := c.Spec.Security.BootstrapTokenTTL.Duration
	if tok, ok := b.ValidBootstrapToken(now, ttl/2); ok {
		return b, tok, nil
	}
	tok, err := b.AddBootstrapToken(rand.Reader, now, ttl, description)
	if err != nil {
		return nil, BootstrapToken{}, err
	}
	if err := Update(s, name, b); err != nil {
		return nil, BootstrapToken{}, err
	}
	return b, tok, nil
}
