package secrets

import "errors"

var (
	// ErrKeyMaterialChanged is returned by Update when the change would replace a CA, a key, a
	// certificate or the encryption key: those are generated once, and only bootstrap tokens may change.
	ErrKeyMaterialChanged = errors.New("only bootstrap tokens may change; certificates and keys are generated once")

	// ErrIncomplete is returned by Save for a bundle that is missing parts.
	ErrIncomplete = errors.New("incomplete secrets bundle")
)
