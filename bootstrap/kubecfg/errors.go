package kubecfg

import "errors"

// Sentinel errors; every error this package returns wraps one of them. Match with errors.Is.
var (
	// ErrInvalid is an input or a document that kiln cannot render or accept.
	ErrInvalid = errors.New("invalid")
	// ErrUnknownProvider is an encryption provider other than aescbc, aesgcm and secretbox.
	ErrUnknownProvider = errors.New("unknown encryption provider")
	// ErrKeySize is an encryption key that is not EncryptionKeySize bytes long.
	ErrKeySize = errors.New("encryption key is not 32 bytes")
	// ErrStrict is an unknown or duplicate field in a document decoded strictly.
	ErrStrict = errors.New("strict decoding")
	// ErrSecretsNotCovered is an encryption configuration without an entry for secrets.
	ErrSecretsNotCovered = errors.New("secrets are not covered")
	// ErrIdentityFirst is an encryption configuration whose first provider for secrets is identity, so
	// that new secrets would be written in plain text.
	ErrIdentityFirst = errors.New("identity is the first provider for secrets")
	// ErrDuplicateKeyName is a key name used twice by providers of one type in one resource entry.
	ErrDuplicateKeyName = errors.New("duplicate key name")
)
