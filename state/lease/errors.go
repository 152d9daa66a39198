package lease

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrHeld is returned by Acquire when another holder has the lease and it has not expired; the
	// error is a *HeldError that says who and since when.
	ErrHeld = errors.New("held by another process")

	// ErrLost is returned by Renew and Release when the lease is not the caller's any more: it
	// expired and another holder took it, or it is gone.
	ErrLost = errors.New("lease lost")
)

// HeldError says who holds a lease that Acquire could not take.
type HeldError struct {
	// Name of the lease.
	Name string
	// Lease as it is held.
	Lease Lease
}

func (e *HeldError) Error() string {
	h := e.Lease.Holder
	return fmt.Sprintf("lease %s: %v: %s (pid %d on %s) since %s, until %s unless renewed",
		e.Name, ErrHeld, h.Name, h.PID, h.Host, e.Lease.Since.Format(time.RFC3339), e.Lease.Expires.Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Unwrap() error { return ErrHeld }
