package controlplane

import "errors"

var (
	// ErrMissingBinary is wrapped by FindBinaries' error when a program is not found.
	ErrMissingBinary = errors.New("missing program")

	// ErrNotRendered is wrapped when the rendered config lacks a unit, file or flag that running the
	// control plane needs.
	ErrNotRendered = errors.New("not in the rendered config")

	// ErrExited is wrapped when a component exits while the control plane runs.
	ErrExited = errors.New("component exited")

	// ErrNotRunning is wrapped when a component to restart is not running.
	ErrNotRunning = errors.New("component not running")
)
