package secrets

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/state"
)

// DefaultEncryptionKeyName is the name of the encryption key of a bundle that has never rotated it.
const DefaultEncryptionKeyName = "key1"

// EncryptionRotationVersion is the version of the EncryptionRotation record written by this kiln.
const EncryptionRotationVersion = 1

// RotationPhase is how far a rotation of the encryption key has gone: the last step that took effect
// on every API server (or, for RotationSecretsRewritten, on every Secret).
type RotationPhase string

// The phases of a rotation, in order. RotationDone is never stored: a finished rotation leaves no
// record, and the new key is the bundle's EncryptionKey.
const (
	// RotationStarted: the new key is made and recorded; the API servers know only the old key.
	RotationStarted RotationPhase = "Started"
	// RotationNewKeyAdded: every API server can read with the new key (old key first, new second).
	RotationNewKeyAdded RotationPhase = "NewKeyAdded"
	// RotationNewKeyPrimary: every API server writes with the new key (new first, old second).
	RotationNewKeyPrimary RotationPhase = "NewKeyPrimary"
	// RotationSecretsRewritten: every Secret has been rewritten, so it is stored under the new key.
	RotationSecretsRewritten RotationPhase = "SecretsRewritten"
	// RotationDone: the old key is gone from every API server and from the bundle.
	RotationDone RotationPhase = "Done"
)

var rotationOrder = []RotationPhase{RotationStarted, RotationNewKeyAdded, RotationNewKeyPrimary, RotationSecretsRewritten, RotationDone}

// Next is the phase after p, or "" after RotationDone or for an unknown phase.
func (p RotationPhase) Next() RotationPhase {
	i := slices.Index(rotationOrder, p)
	if i < 0 || i == len(rotationOrder)-1 {
		return ""
	}
	return rotationOrder[i+1]
}

// EncryptionRotation is the record of a rotation of the key that encrypts Secrets at rest, kept in the
// bundle so that a rotation interrupted at any step continues where it stopped, and so that a
// control-plane node rendered meanwhile gets the keys of the phase reached.
type EncryptionRotation struct {
	// Version is EncryptionRotationVersion.
	Version int `json:"version"`
	// Phase is the last step that took effect.
	Phase RotationPhase `json:"phase"`
	// OldKeyName is the name of the bundle's EncryptionKey; NewKeyName, of NewKey.
	OldKeyName string `json:"oldKeyName"`
	NewKeyName string `json:"newKeyName"`
	// NewKey is the new key: EncryptionKeySize random bytes.
	NewKey []byte `json:"newKey"`
	// Started is when the rotation began.
	Started time.Time `json:"started"`
}

// NamedKey is an encryption key with the name under which kube-apiserver stores what it encrypts.
type NamedKey struct {
	Name string
	Key  []byte
}

// CurrentEncryptionKeyName is the name of b.EncryptionKey.
func (b *Bundle) CurrentEncryptionKeyName() string {
	if b.EncryptionKeyName == "" {
		return DefaultEncryptionKeyName
	}
	return b.EncryptionKeyName
}

// EncryptionKeys are the keys an API server must have now, first the one that encrypts: the bundle's
// key, or during a rotation the keys of the phase it reached.
func (b *Bundle) EncryptionKeys() []NamedKey {
	if b.EncryptionRotation == nil {
		return b.EncryptionKeysAt(RotationDone)
	}
	return b.EncryptionKeysAt(b.EncryptionRotation.Phase)
}

// EncryptionKeysAt are the keys an API server has once the rotation has reached phase p: the old key
// alone (RotationStarted), old then new (RotationNewKeyAdded), new then old (RotationNewKeyPrimary,
// RotationSecretsRewritten), the new key alone (RotationDone). Without a rotation, the bundle's key.
func (b *Bundle) EncryptionKeysAt(p RotationPhase) []NamedKey {
	cur := NamedKey{Name: b.CurrentEncryptionKeyName(), Key: b.EncryptionKey}
	r := b.EncryptionRotation
	if r == nil {
		return []NamedKey{cur}
	}
	next := NamedKey{Name: r.NewKeyName, Key: r.NewKey}
	switch p {
	case RotationNewKeyAdded:
		return []NamedKey{cur, next}
	case RotationNewKeyPrimary, RotationSecretsRewritten:
		return []NamedKey{next, cur}
	case RotationDone:
		return []NamedKey{next}
	default:
		return []NamedKey{cur}
	}
}

// NextEncryptionKeyName is the name after name: "key2" after "key1", "key1" after anything without a
// number at its end; the new name never equals the old one.
func NextEncryptionKeyName(name string) string {
	i := len(strings.TrimRightFunc(name, func(r rune) bool { return r >= '0' && r <= '9' }))
	n, err := strconv.Atoi(name[i:])
	if err != nil || n < 0 {
		return name + "-1"
	}
	return name[:i] + strconv.Itoa(n+1)
}

// BeginEncryptionRotation returns cluster's rotation of the encryption key: the one under way if there
// is one, else a new one, at RotationStarted, with a new key read from rand and the next key name,
// stored in the same transaction.
func BeginEncryptionRotation(s state.Modifier, cluster string, rand io.Reader, now time.Time) (*EncryptionRotation, error) {
	var b Bundle
	err := s.Modify(Bucket, cluster, &b, func() error {
		if b.EncryptionRotation != nil {
			return checkRotation(b.EncryptionRotation)
		}
		key := make([]byte, EncryptionKeySize)
		if _, err := io.ReadFull(rand, key); err != nil {
			return fmt.Errorf("new encryption key: %w", err)
		}
		old := b.CurrentEncryptionKeyName()
		b.EncryptionRotation = &EncryptionRotation{
			Version: EncryptionRotationVersion, Phase: RotationStarted,
			OldKeyName: old, NewKeyName: NextEncryptionKeyName(old), NewKey: key, Started: now.UTC(),
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("secrets: begin encryption key rotation of %s: %w", cluster, err)
	}
	return b.EncryptionRotation, nil
}

// AdvanceEncryptionRotation records that cluster's rotation has reached the phase after from. It fails
// with ErrRotationPhase, changing nothing, if the recorded phase is not from (another kiln moved it).
// Reaching RotationDone makes the new key the bundle's EncryptionKey and removes the record and the old
// key: the one way, besides Save, that the encryption key changes.
func AdvanceEncryptionRotation(s state.Modifier, cluster string, from RotationPhase) error {
	var b Bundle
	err := s.Modify(Bucket, cluster, &b, func() error {
		r := b.EncryptionRotation
		if r == nil {
			return fmt.Errorf("%w: no rotation under way", ErrRotationPhase)
		}
		if err := checkRotation(r); err != nil {
			return err
		}
		if r.Phase != from {
			return fmt.Errorf("%w: at %s, not %s", ErrRotationPhase, r.Phase, from)
		}
		to := from.Next()
		if to == RotationDone {
			b.EncryptionKey, b.EncryptionKeyName, b.EncryptionRotation = r.NewKey, r.NewKeyName, nil
			return nil
		}
		r.Phase = to
		return nil
	})
	if err != nil {
		return fmt.Errorf("secrets: advance encryption key rotation of %s from %s: %w", cluster, from, err)
	}
	return nil
}

// checkRotation refuses a record this kiln cannot continue.
func checkRotation(r *EncryptionRotation) error {
	var errs []error
	if r.Version != EncryptionRotationVersion {
		errs = append(errs, fmt.Errorf("%w: version %d, this kiln knows %d", ErrRotationRecord, r.Version, EncryptionRotationVersion))
	}
	if !slices.Contains(rotationOrder[:len(rotationOrder)-1], r.Phase) {
		errs = append(errs, fmt.Errorf("%w: phase %q", ErrRotationRecord, r.Phase))
	}
	if len(r.NewKey) != EncryptionKeySize {
		errs = append(errs, fmt.Errorf("%w: newKey: %d bytes, want %d", ErrRotationRecord, len(r.NewKey), EncryptionKeySize))
	}
	if r.NewKeyName == "" || r.NewKeyName == r.OldKeyName {
		errs = append(errs, fmt.Errorf("%w: newKeyName %q must be set and differ from oldKeyName", ErrRotationRecord, r.NewKeyName))
	}
	return errors.Join(errs...)
}
