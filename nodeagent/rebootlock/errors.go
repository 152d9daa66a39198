package rebootlock

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrBusy: every slot of the pool is held by someone else; try again later. The error is a
	// *BusyError, which names the holders.
	ErrBusy = errors.New("every reboot slot is held")
	// ErrNoLease: a Lease of the pool does not exist. kiln's cluster init creates them; the agents
	// may not.
	ErrNoLease = errors.New("no such Lease")
	// ErrNotHeld: the holder holds no slot (it released it, or its lease expired and someone else
	// took it over).
	ErrNotHeld = errors.New("holds no reboot slot")
)

// BusyError says that every slot of Pool is held by others, and by whom.
type BusyError struct {
	// Pool is the pool whose slots are all held.
	Pool string
	// Holders are the slots' holders, by slot.
	Holders []Holder
}

func (e *BusyError) Error() string {
	held := make([]string, 0, len(e.Holders))
	for _, h := range e.Holders {
		held = append(held, fmt.Sprintf("slot %d by %q until %s", h.Slot, h.Identity, h.Expires.UTC().Format(time.RFC3339)))
	}
	return fmt.Sprintf("rebootlock: pool %q: %v: %s", e.Pool, ErrBusy, strings.Join(held, ", "))
}

// Unwrap makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Unwrap() error { return ErrBusy }
