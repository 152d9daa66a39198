package podnet

import "errors"

var (
	// ErrInvalid: an address, a range or a node's field that the pod network cannot use.
	ErrInvalid = errors.New("invalid")
	// ErrNoInterface: no interface holds the node's InternalIP (or the named interface is missing).
	ErrNoInterface = errors.New("no such interface")
	// ErrWaiting: the node cannot be set up yet (not registered, no podCIDR or no InternalIP); the
	// agent waits and tries again.
	ErrWaiting = errors.New("waiting")
)
