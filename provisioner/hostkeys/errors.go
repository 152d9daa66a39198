package hostkeys

import (
	"errors"
	"fmt"
	"strings"
)

// ErrChanged is wrapped by a *MismatchError: a machine reported host keys other than those pinned.
var ErrChanged = errors.New("host keys differ from the pinned ones")

// errNoKeys: a report without keys is never pinned.
var errNoKeys = errors.New("no host key reported")

// FormatError is a report that is not a list of public keys. It names the line (counted from the
// start of what was parsed) and never quotes it.
type FormatError struct {
	Line   int
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("line %d: malformed host key report: %s", e.Line, e.Reason)
}

// MismatchError is a report that differs from the machine's pin.
type MismatchError struct {
	Machine string
	// Pinned and Reported are fingerprints, as Fingerprints gives them.
	Pinned, Reported []string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("machine %s reported SSH host keys %s, but %s pinned; refusing them (a pin is never replaced: "+
		"if the machine was rebuilt on purpose, delete it and let kiln apply make a new one; else someone may have altered it)",
		e.Machine, strings.Join(e.Reported, ", "), strings.Join(e.Pinned, ", ")+plural(len(e.Pinned), " is", " are"))
}

func (e *MismatchError) Unwrap() error { return ErrChanged }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
