package rebootlock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// DefaultDuration is how long a slot stays held without a renewal: the reboot timeout, after
// which the slot of a holder that died is free again.
const DefaultDuration = 15 * time.Minute

// fieldManager names kiln's writes in the Leases' managedFields.
const fieldManager = "kiln-rebootlock"

// conflictBackoff is how often a write that lost a race (409 Conflict) reads again and retries: each
// conflict means that another writer made progress, so a few tries settle it.
var conflictBackoff = wait.Backoff{Steps: 8, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 1}

// Holder is one slot of a pool and who holds it.
type Holder struct {
	// Slot is the slot's number, 0 to slots-1.
	Slot int
	// Identity is the holder's identity (kiln-node: the Node's name; FleetLock: the client's id),
	// empty when the slot is free.
	Identity string
	// Acquired is when the holder took the slot, Renewed when it last renewed it, Expires when the
	// slot is free for others unless it renews again. All zero for a free slot.
	Acquired, Renewed, Expires time.Time
	// Expired says that Expires is past: the holder is taken to be dead, and the slot is free for
	// others (it is still the holder's until someone takes it, so its Renew still succeeds).
	Expired bool
}

// HolderOf says who holds lease, the Lease of slot, at now. A Lease without leaseDurationSeconds
// is held for def; a holder without a renewTime has nothing that says it is alive, and is expired.
func HolderOf(slot int, lease *coordinationv1.Lease, now time.Time, def time.Duration) Holder {
	h := Holder{Slot: slot}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		return h
	}
	h.Identity = *lease.Spec.HolderIdentity
	if t := lease.Spec.AcquireTime; t != nil {
		h.Acquired = t.Time
	}
	if t := lease.Spec.RenewTime; t != nil {
		h.Renewed = t.Time
	}
	d := def
	if s := lease.Spec.LeaseDurationSeconds; s != nil && *s > 0 {
		d = time.Duration(*s) * time.Second
	}
	if !h.Renewed.IsZero() {
		h.Expires = h.Renewed.Add(d)
	}
	h.Expired = h.Renewed.IsZero() || h.Expires.Before(now)
	return h
}

// Pick decides which slot id takes: the one it holds already (even expired, as nobody has taken it
// over), or else the first that is free or whose holder's lease expired. It returns -1 when every
// slot is held by others.
func Pick(holders []Holder, id string) int {
	if slot := heldBy(holders, id); slot >= 0 {
		return slot
	}
	for _, h := range holders {
		if h.Identity == "" || h.Expired {
			return h.Slot
		}
	}
	return -1
}

// heldBy returns the slot that id holds, or -1.
func heldBy(holders []Holder, id string) int {
	for _, h := range holders {
		if h.Identity == id {
			return h.Slot
		}
	}
	return -1
}

// Semaphore is the reboot lock of one pool: Slots Leases (LeaseName) in Namespace, of which each
// holder holds at most one. Set the fields, then use it through a pointer; its methods may be
// called from several goroutines (one Semaphore writes one change at a time).
//
// One identity is meant to be used by one process: two processes that acquire for the same
// identity at the same moment might each take a slot.
type Semaphore struct {
	// Client reaches the API with the credential of the holder: get and update of the pool's
	// Leases (Rule). Required.
	Client kubernetes.Interface
	// Namespace of the Leases. Defaults to Namespace.
	Namespace string
	// Pool is the pool's name. Required.
	Pool string
	// Slots is how many of the pool may hold the lock at once: the number of its Leases. Required.
	Slots int
	// Duration is how long a slot stays held without a renewal, at least a second, in whole
	// seconds (leaseDurationSeconds). Defaults to DefaultDuration.
	Duration time.Duration
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time

	mu sync.Mutex
}

// Acquire takes a slot for id and returns it. When id holds a slot already, it renews it. Else it
// takes the first free slot, or the first whose holder's lease expired. When every slot is held by
// others, the error is a *BusyError (errors.Is ErrBusy) naming them; when a Lease is missing,
// ErrNoLease.
func (s *Semaphore) Acquire(ctx context.Context, id string) (int, error) {
	return s.change(ctx, id, func(holders []Holder) (int, error) {
		if slot := Pick(holders, id); slot >= 0 {
			return slot, nil
		}
		return -1, &BusyError{Pool: s.Pool, Holders: holders}
	}, s.hold(id))
}

// Renew renews id's slot, so that it stays id's for another Duration. It returns ErrNotHeld when
// id holds none (it released it, or it expired and someone else took it).
func (s *Semaphore) Renew(ctx context.Context, id string) error {
	_, err := s.change(ctx, id, func(holders []Holder) (int, error) {
		if slot := heldBy(holders, id); slot >= 0 {
			return slot, nil
		}
		return -1, fmt.Errorf("rebootlock: pool %q: %q %w", s.Pool, id, ErrNotHeld)
	}, s.hold(id))
	return err
}

// Release frees id's slot. It does nothing when id holds none; a slot that someone else took over
// since is theirs, and stays so.
func (s *Semaphore) Release(ctx context.Context, id string) error {
	_, err := s.change(ctx, id, func(holders []Holder) (int, error) {
		return heldBy(holders, id), nil
	}, func(l *coordinationv1.Lease, _ metav1.MicroTime) {
		l.Spec.HolderIdentity = nil
		l.Spec.AcquireTime = nil
		l.Spec.RenewTime = nil
	})
	return err
}

// Holders returns every slot of the pool with its holder, by slot.
func (s *Semaphore) Holders(ctx context.Context) ([]Holder, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	leases, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	return s.holders(leases, s.now()), nil
}

// change reads the pool's Leases, lets decide pick the slot to change (-1: none, nothing to do),
// changes its Lease with mutate and writes it with the resourceVersion read; when someone else
// wrote it in between, it does all that again.
func (s *Semaphore) change(ctx context.Context, id string, decide func([]Holder) (int, error), mutate func(*coordinationv1.Lease, metav1.MicroTime)) (int, error) {
	if err := s.check(); err != nil {
		return -1, err
	}
	if id == "" {
		return -1, fmt.Errorf("rebootlock: pool %q: empty holder identity", s.Pool)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := -1
	err := retry.OnError(conflictBackoff, apierrors.IsConflict, func() error {
		leases, err := s.read(ctx)
		if err != nil {
			return err
		}
		now := s.now()
		if slot, err = decide(s.holders(leases, now)); err != nil || slot < 0 {
			return err
		}
		l := &leases[slot]
		mutate(l, metav1.NewMicroTime(now))
		if _, err := s.Client.CoordinationV1().Leases(l.Namespace).Update(ctx, l, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
			return fmt.Errorf("rebootlock: update Lease %s/%s: %w", l.Namespace, l.Name, err)
		}
		return nil
	})
	if apierrors.IsConflict(err) {
		// Others kept writing the pool's Leases: it is contended, as good as busy.
		return -1, fmt.Errorf("rebootlock: pool %q: %w: its Leases changed under each of %d tries: %w", s.Pool, ErrBusy, conflictBackoff.Steps, err)
	}
	if err != nil {
		return -1, err
	}
	return slot, nil
}

// hold returns the change that makes a Lease id's at now, renewed for Duration.
func (s *Semaphore) hold(id string) func(*coordinationv1.Lease, metav1.MicroTime) {
	seconds := int32(math.Ceil(s.duration().Seconds()))
	return func(l *coordinationv1.Lease, now metav1.MicroTime) {
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != id {
			// A new holder: one more transition.
			l.Spec.HolderIdentity = &id
			l.Spec.AcquireTime = nil
			transitions := int32(1)
			if l.Spec.LeaseTransitions != nil {
				transitions += *l.Spec.LeaseTransitions
			}
			l.Spec.LeaseTransitions = &transitions
		}
		if l.Spec.AcquireTime == nil {
			l.Spec.AcquireTime = &now
		}
		l.Spec.RenewTime = &now
		l.Spec.LeaseDurationSeconds = &seconds
	}
}

// read gets the pool's Leases, slot 0 first.
func (s *Semaphore) read(ctx context.Context) ([]coordinationv1.Lease, error) {
	ns := s.namespace()
	leases := make([]coordinationv1.Lease, s.Slots)
	for i, name := range LeaseNames(s.Pool, s.Slots) {
		l, err := s.Client.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("rebootlock: Lease %s/%s: %w: kiln's cluster init creates the Leases of pool %q (`kiln cluster secure` applies them again)", ns, name, ErrNoLease, s.Pool)
		}
		if err != nil {
			return nil, fmt.Errorf("rebootlock: get Lease %s/%s: %w", ns, name, err)
		}
		leases[i] = *l
	}
	return leases, nil
}

func (s *Semaphore) holders(leases []coordinationv1.Lease, now time.Time) []Holder {
	holders := make([]Holder, len(leases))
	for i := range leases {
		holders[i] = HolderOf(i, &leases[i], now, s.duration())
	}
	return holders
}

func (s *Semaphore) check() error {
	var errs []error
	if s.Client == nil {
		errs = append(errs, errors.New("no API client"))
	}
	if s.Pool == "" {
		errs = append(errs, errors.New("no pool"))
	}
	if s.Slots < 1 {
		errs = append(errs, fmt.Errorf("%d slots, want at least 1", s.Slots))
	}
	if s.Duration != 0 && s.Duration < time.Second {
		errs = append(errs, fmt.Errorf("lease duration %v, want at least 1s", s.Duration))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rebootlock: pool %q: %w", s.Pool, err)
	}
	return nil
}

func (s *Semaphore) namespace() string {
	if s.Namespace == "" {
		return Namespace
	}
	return s.Namespace
}

func (s *Semaphore) duration() time.Duration {
	if s.Duration == 0 {
		return DefaultDuration
	}
	return s.Duration
}

func (s *Semaphore) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}
