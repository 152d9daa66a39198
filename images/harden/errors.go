package harden

import "errors"

// Sentinel errors; every error this package returns wraps one of them. Match with errors.Is.
var (
	// ErrInvalidProfile is a Profile that Validate rejects.
	ErrInvalidProfile = errors.New("invalid hardening profile")
	// ErrUnknownDistro is a distro family or ID this package has no plan for.
	ErrUnknownDistro = errors.New("unknown distro")
)
