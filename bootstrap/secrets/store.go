package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// JoinToken loads cluster c's bundle and returns it with a shared bootstrap token (one of no machine)
// that has at least half of spec.security.bootstrapTokenTTL left, adding and storing a new one
// (described by description) when there is none; expired tokens are dropped then. It is what the
// renderers outside `kiln apply` call (kiln render ignition, the Packer data source, kiln pxe serve),
// so that a render never hands out a token about to expire. Such a token reaches the cluster only
// through a control-plane node's first-boot manifests; `kiln apply` gives each machine its own
// (MachineToken) and applies it to the cluster itself.
func JoinToken(s TokenStore, c *v1alpha1.Cluster, now time.Time, description string) (*Bundle, BootstrapToken, error) {
	name := c.Metadata.Name
	b, err := Load(s, name)
	if err != nil {
		return nil, BootstrapToken{}, fmt.Errorf("cluster %s: %w (run 'kiln init %s' first)", name, err, name)
	}
	ttl := TokenTTL(c)
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

// TokenTTL is spec.security.bootstrapTokenTTL, or its default for an undefaulted spec: how long a node
// has to come up with what it is rendered with.
func TokenTTL(c *v1alpha1.Cluster) time.Duration {
	if ttl := c.Spec.Security.BootstrapTokenTTL.Duration; ttl > 0 {
		return ttl
	}
	return v1alpha1.DefaultBootstrapTokenTTL
}

// MachineToken returns machine's own bootstrap token, with cluster c's bundle that now holds it: the
// latest token stored for the machine if it has at least half of spec.security.bootstrapTokenTTL left
// (a create repeated after a crash gets the token it was rendered with), else a new one, made from
// rand and stored. A machine's older tokens, expired or not, stay in the store until they are deleted
// from the cluster and forgotten (bootstrap/tokens), so that none is lost track of. The bundle is read
// and changed in one transaction, so that concurrent renders neither lose a token nor give one
// machine two. pool is the machine's node pool, or "control-plane".
func MachineToken(s state.Modifier, c *v1alpha1.Cluster, machine, pool string, now time.Time, rand io.Reader) (*Bundle, BootstrapToken, error) {
	name := c.Metadata.Name
	if machine == "" {
		return nil, BootstrapToken{}, fmt.Errorf("secrets: machine token of %s: no machine name", name)
	}
	ttl := TokenTTL(c)
	var (
		b   Bundle
		tok BootstrapToken
	)
	err := s.Modify(Bucket, name, &b, func() error {
		found := false
		for _, t := range b.BootstrapTokens {
			if t.Machine == machine && (!found || t.Expires.After(tok.Expires)) {
				tok, found = t, true
			}
		}
		if found && tok.Expires.Sub(now) >= ttl/2 {
			return nil
		}
		var err error
		tok, err = b.AddBootstrapToken(rand, now, ttl, "kiln: joins machine "+machine)
		if err != nil {
			return err
		}
		tok.Machine, tok.Pool = machine, pool
		b.BootstrapTokens[len(b.BootstrapTokens)-1] = tok
		return nil
	})
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return nil, BootstrapToken{}, fmt.Errorf("secrets: machine token of %s for %s: %w (run 'kiln init %s' first)", name, machine, err, name)
		}
		return nil, BootstrapToken{}, fmt.Errorf("secrets: machine token of %s for %s: %w", name, machine, err)
	}
	return &b, tok, nil
}

// ForgetTokens removes the bootstrap tokens with the given ids from cluster's bundle, in one
// transaction. An id the bundle does not hold is not an error.
func ForgetTokens(s state.Modifier, cluster string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	var b Bundle
	err := s.Modify(Bucket, cluster, &b, func() error {
		b.BootstrapTokens = slices.DeleteFunc(b.BootstrapTokens, func(t BootstrapToken) bool { return slices.Contains(ids, t.ID) })
		return nil
	})
	if err != nil {
		return fmt.Errorf("secrets: forget tokens of %s: %w", cluster, err)
	}
	return nil
}
