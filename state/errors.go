package state

import "errors"

var (
	// ErrNotFound is returned when a key is not in the store.
	ErrNotFound = errors.New("not found")

	// ErrExists is returned by Create when the key is already in the store.
	ErrExists = errors.New("already exists")

	// ErrTampered is returned when a value fails authentication: its bytes were changed, it was moved
	// from another key, or the store was opened with another key.
	ErrTampered = errors.New("authentication failed: the state file was altered or damaged, or the key is not the one it was written with")

	// ErrCorrupt is returned when the state file is not a readable database: truncated, overwritten,
	// or damaged on disk.
	ErrCorrupt = errors.New("state file is damaged")

	// ErrLocked is returned by Open when another process holds the state file.
	ErrLocked = errors.New("locked by another kiln process")
)
