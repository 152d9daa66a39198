package addrpool

import "errors"

var (
	// ErrExhausted: every address the prefix gives machines is reserved.
	ErrExhausted = errors.New("no free address")
	// ErrPrefix: the prefix is not IPv4, or too small to give a machine an address.
	ErrPrefix = errors.New("not an IPv4 prefix with room for machines")
	// ErrConflict: an address the pool must never give (the API endpoint) is held by a machine.
	ErrConflict = errors.New("address conflict")
)
