package hardening

import "errors"

// Sentinel errors; match with errors.Is.
var (
	// ErrDrift is a machine whose effective state differs from the profile after the plan ran.
	ErrDrift = errors.New("hardened state drifts from the profile")
	// ErrCommand is a remote command that exited non-zero.
	ErrCommand = errors.New("remote command failed")
	// ErrConfig is a provisioner configuration that Prepare rejects.
	ErrConfig = errors.New("invalid kiln-harden configuration")
)
