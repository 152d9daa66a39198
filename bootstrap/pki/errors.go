package pki

import "errors"

var (
	// ErrNotCA is returned when a key pair that is not a certificate authority is asked to issue or to
	// verify a certificate.
	ErrNotCA = errors.New("not a certificate authority")

	// ErrKeyMismatch is returned when a key pair's private key does not belong to its certificate or
	// public key.
	ErrKeyMismatch = errors.New("private key does not match the certificate or public key")

	// ErrNoCertificate is returned when a certificate is asked of a key pair that holds none (such as the
	// service-account signing key).
	ErrNoCertificate = errors.New("key pair holds no certificate")
)
