package qemu

import "errors"

// Errors of the provider, matched with errors.Is.
var (
	// ErrInvalid marks a bad Config or MachineSpec; the message names the field.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound is returned by SSHAddress for a machine that does not exist.
	ErrNotFound = errors.New("no such machine")
)
