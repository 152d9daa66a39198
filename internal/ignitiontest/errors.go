package ignitiontest

import "errors"

// ErrUnknownUser is returned by LookupUser for a name that the root's
// /etc/passwd does not have.
var ErrUnknownUser = errors.New("unknown user")
