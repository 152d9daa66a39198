package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/lease"
)

// defaultLeaseTTL is how long a cluster's lease lasts unless renewed: a holder that crashed blocks
// the cluster no longer than this.
const defaultLeaseTTL = 30 * time.Second

// leaseOptions are the flags of the commands that change a cluster (apply, delete): they take the
// cluster's lease, so that one actor at a time changes it.
type leaseOptions struct {
	wait    bool
	waitFor time.Duration
	ttl     time.Duration
}

func addLeaseFlags(cmd *cobra.Command, o *leaseOptions) {
	f := cmd.Flags()
	f.BoolVar(&o.wait, "wait", false, "when another kiln holds the cluster's lease, wait until it is free instead of refusing")
	f.DurationVar(&o.waitFor, "wait-lease", 0, "like --wait, but give up after this long")
	f.DurationVar(&o.ttl, "lease-ttl", defaultLeaseTTL, "how long the cluster's lease lasts unless renewed")
	f.MarkHidden("lease-ttl") // for tests: a crashed holder blocks the cluster for this long
}

// clusterLease is a cluster's lease as this process holds it.
type clusterLease struct {
	g      *globals
	name   string
	holder lease.Holder
	ttl    time.Duration
}

// takeLease takes the lease of cluster name for the command what ("kiln apply"). When another
// process holds it, it refuses at once with the holder named, or, with --wait or --wait-lease, waits
// until the lease is released or expires.
func (g *globals) takeLease(ctx context.Context, name, what string, o leaseOptions) (*clusterLease, error) {
	if o.ttl <= 0 {
		return nil, fmt.Errorf("--lease-ttl %s: want more than 0", o.ttl)
	}
	l := &clusterLease{g: g, name: name, holder: lease.Self(what), ttl: o.ttl}
	var held *lease.HeldError
	err := l.try(ctx)
	switch {
	case err == nil:
		return l, nil
	case !errors.As(err, &held):
		return nil, err
	case !o.wait && o.waitFor <= 0:
		return nil, fmt.Errorf("%s is being changed by another kiln: %w; try again once it is done, or pass --wait", name, err)
	}
	if g.logFormat == "json" {
		g.log.Info("waiting for the lease", "cluster", name, "holder", held.Lease.Holder.Name, "pid", held.Lease.Holder.PID,
			"host", held.Lease.Holder.Host, "since", held.Lease.Since, "expires", held.Lease.Expires)
	} else {
		fmt.Fprintf(g.errOut, "waiting for the lease of %s: %v\n", name, held)
	}
	poll := min(time.Second, max(100*time.Millisecond, o.ttl/10))
	cond := func(ctx context.Context) (bool, error) {
		err := l.try(ctx)
		if errors.As(err, &held) || errors.Is(err, state.ErrLocked) {
			return false, nil
		}
		return err == nil, err
	}
	if o.waitFor > 0 {
		err = wait.PollUntilContextTimeout(ctx, poll, o.waitFor, false, cond)
	} else {
		err = wait.PollUntilContextCancel(ctx, poll, false, cond)
	}
	if err != nil {
		if held != nil && wait.Interrupted(err) && ctx.Err() == nil {
			return nil, fmt.Errorf("%s: gave up waiting after --wait-lease %s: %w", name, o.waitFor, held)
		}
		return nil, fmt.Errorf("waiting for the lease of %s: %w", name, err)
	}
	return l, nil
}

// try takes the lease once.
func (l *clusterLease) try(ctx context.Context) error {
	st, err := l.g.openState()
	if err != nil {
		return err
	}
	defer st.Close()
	_, err = lease.Acquire(ctx, st, l.name, l.holder, l.ttl, time.Now())
	return err
}

// renew extends the lease in st, an open store (so that what the caller writes next is written by
// the holder).
func (l *clusterLease) renew(ctx context.Context, st *state.Store) error {
	_, err := lease.Renew(ctx, st, l.name, l.holder, l.ttl, time.Now())
	return err
}

// keep renews the lease every third of its time to live until ctx is done, and returns a context
// that is cancelled, with the cause, when the lease is lost (it expired and another process took it):
// the holder must stop acting on the cluster. A renewal that fails otherwise (the state file busy) is
// tried again at the next tick. stop ends the renewals.
func (l *clusterLease) keep(ctx context.Context) (kept context.Context, stop func()) {
	kept, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait.UntilWithContext(kept, func(ctx context.Context) {
			st, err := l.g.openState()
			if err == nil {
				err = l.renew(ctx, st)
				st.Close()
			}
			switch {
			case errors.Is(err, lease.ErrLost):
				cancel(fmt.Errorf("%s: %w", l.name, err))
			case err != nil && ctx.Err() == nil:
				l.g.log.Warn("cannot renew the lease; trying again", "cluster", l.name, "err", err)
			}
		}, max(l.ttl/3, 10*time.Millisecond))
	}()
	return kept, func() {
		cancel(nil)
		<-done
	}
}

// release frees the lease, so that the next process need not wait for it to expire. A failure is
// reported as a warning: the lease expires on its own.
func (l *clusterLease) release() {
	st, err := l.g.openState()
	if err == nil {
		err = lease.Release(context.Background(), st, l.name, l.holder, time.Now())
		st.Close()
	}
	if err != nil {
		fmt.Fprintf(l.g.errOut, "kiln: warning: the lease of %s is not released (%v); it expires within %s\n", l.name, err, l.ttl)
	}
}
