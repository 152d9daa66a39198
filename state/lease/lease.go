// Package lease keeps one actor per cluster: a lease in the state store that a process takes before it
// changes a cluster, renews while it works, and releases when it is done. A lease expires, so that a
// holder that crashed does not block the cluster forever: once its lease has expired, the next
// process takes it over. Commands that only read never take a lease.
//
// Taking a lease is one transaction of the store (Create when there is none, otherwise Modify), so of
// two processes that race for a free lease exactly one gets it. Every function takes the time as an
// argument, as reconcile.Decide does, so that tests inject it and expiry needs no sleeps.
package lease

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/state"
)

// Bucket is the state store bucket of leases; the key is the lease name, such as the cluster name.
const Bucket = "leases"

// Holder is who holds a lease.
type Holder struct {
	// Name says what holds it, such as "kiln apply".
	Name string `json:"name"`
	PID  int    `json:"pid"`
	Host string `json:"host"`
}

// Self is this process as a Holder named name.
func Self(name string) Holder {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown host"
	}
	return Holder{Name: name, PID: os.Getpid(), Host: host}
}

// Lease is a lease as the store keeps it.
type Lease struct {
	Holder Holder `json:"holder"`
	// Since is when Holder took the lease.
	Since time.Time `json:"since"`
	// Renewed is when Holder last took or renewed it.
	Renewed time.Time `json:"renewed"`
	// Expires is when another holder may take it over, unless it is renewed before.
	Expires time.Time `json:"expires"`
}

// Free reports whether the lease may be taken at now: it has expired or was released.
func (l Lease) Free(now time.Time) bool { return !now.Before(l.Expires) }

// Store is what leases need of the state store: state.Store, or a fake of state/statetest.
type Store interface {
	state.Creator
	state.Modifier
}

// Acquire takes the lease name for h until now+ttl when nobody has it, or its holder's time is up
// (expired or released), or its holder was a process on h's host that no longer runs, or h holds it already (then it is renewed and keeps its Since). Otherwise it returns a *HeldError
// (ErrHeld) that names the holder, its pid and host, and since when it holds the lease.
func Acquire(ctx context.Context, s Store, name string, h Holder, ttl time.Duration, now time.Time) (Lease, error) {
	if err := check(ctx, name, ttl); err != nil {
		return Lease{}, err
	}
	fresh := Lease{Holder: h, Since: now, Renewed: now, Expires: now.Add(ttl)}
	// A lease that is released is kept, free, so Create fails only on the first take of a name;
	// another holder's Create between the two calls makes Modify see its lease.
	err := s.Create(Bucket, name, fresh)
	if err == nil {
		return fresh, nil
	}
	if !errors.Is(err, state.ErrExists) {
		return Lease{}, fmt.Errorf("lease %s: take: %w", name, err)
	}
	var l Lease
	err = s.Modify(Bucket, name, &l, func() error {
		switch {
		case l.Free(now):
			l = fresh
		case l.Holder.Host != "" && l.Holder.Host == thisHost() && l.Holder.PID != h.PID && !processAlive(l.Holder.PID):
			// Its holder ran on this host and is gone (killed, crashed): waiting out the ttl would
			// only delay the next actor.
			l = fresh
		case l.Holder == h:
			l.Renewed, l.Expires = now, now.Add(ttl)
		default:
			return &HeldError{Name: name, Lease: l}
		}
		return nil
	})
	if err != nil {
		var held *HeldError
		if errors.As(err, &held) {
			return Lease{}, err
		}
		return Lease{}, fmt.Errorf("lease %s: take: %w", name, err)
	}
	return l, nil
}

// Renew extends h's lease name until now+ttl. It fails with ErrLost when the lease is not h's any
// more: the holder must stop acting on the cluster.
func Renew(ctx context.Context, s Store, name string, h Holder, ttl time.Duration, now time.Time) (Lease, error) {
	if err := check(ctx, name, ttl); err != nil {
		return Lease{}, err
	}
	var l Lease
	err := s.Modify(Bucket, name, &l, func() error {
		if l.Holder != h {
			return lost(name, l)
		}
		l.Renewed, l.Expires = now, now.Add(ttl)
		return nil
	})
	switch {
	case errors.Is(err, ErrLost):
		return Lease{}, err
	case errors.Is(err, state.ErrNotFound):
		return Lease{}, fmt.Errorf("lease %s: renew: %w: there is no lease", name, ErrLost)
	case err != nil:
		return Lease{}, fmt.Errorf("lease %s: renew: %w", name, err)
	}
	return l, nil
}

// Release frees h's lease name at now, so that the next process need not wait for it to expire. A
// lease that is not there is released already; one that another holder has is left alone (ErrLost).
func Release(ctx context.Context, s Store, name string, h Holder, now time.Time) error {
	if err := check(ctx, name, time.Second); err != nil {
		return err
	}
	var l Lease
	err := s.Modify(Bucket, name, &l, func() error {
		if l.Holder != h {
			return lost(name, l)
		}
		if l.Expires.After(now) {
			l.Expires = now
		}
		return nil
	})
	switch {
	case err == nil, errors.Is(err, state.ErrNotFound):
		return nil
	case errors.Is(err, ErrLost):
		return err
	}
	return fmt.Errorf("lease %s: release: %w", name, err)
}

// Get reads the lease name, for commands that show who acts on a cluster; state.ErrNotFound when
// nobody ever took it.
func Get(s state.Getter, name string) (Lease, error) {
	var l Lease
	if err := s.Get(Bucket, name, &l); err != nil {
		return Lease{}, fmt.Errorf("lease %s: %w", name, err)
	}
	return l, nil
}

func check(ctx context.Context, name string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lease %s: %w", name, err)
	}
	if err := state.CheckName(Bucket, name); err != nil {
		return fmt.Errorf("lease %s: %w", name, err)
	}
	if ttl <= 0 {
		return fmt.Errorf("lease %s: time to live %s, want more than 0", name, ttl)
	}
	return nil
}

func lost(name string, l Lease) error {
	if l.Holder == (Holder{}) {
		return fmt.Errorf("lease %s: %w", name, ErrLost)
	}
	h := l.Holder
	return fmt.Errorf("lease %s: %w: %s (pid %d on %s) has held it since %s", name, ErrLost, h.Name, h.PID, h.Host, l.Since.Format(time.RFC3339))
}

// thisHost is the name of the host this process runs on; "" when it cannot be told.
func thisHost() string {
	host, err := os.Hostname()
	if err != nil {
		return ""
	}
	return host
}

// processAlive reports whether a process with that pid runs on this host. Signal 0 checks without
// signalling; EPERM means it runs under another user.
var processAlive = func(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
