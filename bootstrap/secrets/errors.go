package secrets

import "errors"

var (
	// ErrKeyMaterialChanged is returned by Update when the change would replace a CA, a key, a
	// certificate or the encryption key: those are generated once, only bootstrap tokens may change, and
	// the encryption key changes only by a recorded rotation (AdvanceEncryptionRotation).
	ErrKeyMaterialChanged = errors.New("only bootstrap tokens may change; certificates and keys are generated once")

	// ErrIncomplete is returned by Save for a bundle that is missing parts.
	ErrIncomplete = errors.New("incomplete secrets bundle")

	// ErrRotationPhase is returned by AdvanceEncryptionRotation when the rotation is not at the phase
	// the caller says it is.
	ErrRotationPhase = errors.New("encryption key rotation is not at the expected phase")

	// ErrRotationRecord is a rotation record this kiln cannot continue: another version, an unknown
	// phase, a key of the wrong size or a new key name that is not new.
	ErrRotationRecord = errors.New("invalid encryption key rotation record")
)
