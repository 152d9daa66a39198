package access

import "errors"

// Sentinel errors; match with errors.Is.
var (
	// ErrInvalid is a request that names no user, a bad server, or a lifetime out of range.
	ErrInvalid = errors.New("invalid request")
	// ErrReserved is a user or group that Kubernetes keeps for its own components (system:...), or
	// system:masters asked for without Admin.
	ErrReserved = errors.New("reserved identity")
)
