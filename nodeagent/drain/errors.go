package drain

import "errors"

var (
	// ErrBudget is returned by Drain when a PodDisruptionBudget refused an eviction until the drain's
	// timeout: the Node stays cordoned, its machine must stay, and the next drain tries again.
	ErrBudget = errors.New("eviction refused by a PodDisruptionBudget")

	// ErrPodsLeft is returned by Drain when evicted pods of a Ready Node had not terminated by the
	// drain's timeout.
	ErrPodsLeft = errors.New("evicted pods still terminating")
)

// errTimedOut is the cause of the drain's own deadline, told apart from the caller's.
var errTimedOut = errors.New("drain timed out")
