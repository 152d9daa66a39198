package rebootlock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock/rebootlocktest"
)

// TestSemaphoreOnAPIServer runs the semaphore against a real kube-apiserver and etcd, each holder
// with a client certificate of its own in the group that the pool's Role is bound to (get and
// update of the pool's Leases, nothing else), as a node's agent holds it.
//
//	CI=true go test -count=1 -run TestSemaphoreOnAPIServer -v ./nodeagent/rebootlock
func TestSemaphoreOnAPIServer(t *testing.T) {
	c := rebootlocktest.Start(t)
	// holder returns a semaphore of pool for one holder, with its own client.
	holder := func(t *testing.T, pool string, slots int, id string, now func() time.Time) *rebootlock.Semaphore {
		return &rebootlock.Semaphore{
			Client: c.ClientAs(t, "kiln-test:"+id, rebootlock.Group(pool)),
			Pool:   pool, Slots: slots, Duration: 15 * time.Minute, Now: now,
		}
	}
	lease := func(t *testing.T, pool string, slot int) *coordinationv1.Lease {
		t.Helper()
		l, err := c.Admin.CoordinationV1().Leases(rebootlock.Namespace).Get(t.Context(), rebootlock.LeaseName(pool, slot), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	holders := func(t *testing.T, s *rebootlock.Semaphore) []rebootlock.Holder {
		t.Helper()
		h, err := s.Holders(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	t.Run("acquire, renew, release", func(t *testing.T) {
		ctx := t.Context()
		c.CreatePool(t, "basic", 1)
		t0 := time.Now().UTC().Truncate(time.Second)
		now := t0 // the holder's clock, moved by hand
		s := holder(t, "basic", 1, "n1", func() time.Time { return now })
		if slot, err := s.Acquire(ctx, "n1"); slot != 0 || err != nil {
			t.Fatalf("Acquire = %d, %v; want slot 0", slot, err)
		}
		want := []rebootlock.Holder{{Slot: 0, Identity: "n1", Acquired: t0, Renewed: t0, Expires: t0.Add(15 * time.Minute)}}
		if diff := cmp.Diff(want, holders(t, s)); diff != "" {
			t.Errorf("holders after Acquire (-want +got):\n%s", diff)
		}
		l := lease(t, "basic", 0)
		if *l.Spec.LeaseDurationSeconds != 900 || *l.Spec.LeaseTransitions != 1 {
			t.Errorf("Lease spec %+v: want 900 s and 1 transition", l.Spec)
		}

		now = now.Add(time.Minute)
		if err := s.Renew(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		want[0].Renewed, want[0].Expires = t0.Add(time.Minute), t0.Add(16*time.Minute)
		if diff := cmp.Diff(want, holders(t, s)); diff != "" {
			t.Errorf("holders after Renew (-want +got):\n%s", diff)
		}

		// Acquiring again is a renewal: the same slot, the same acquisition, no new transition.
		now = now.Add(time.Minute)
		if slot, err := s.Acquire(ctx, "n1"); slot != 0 || err != nil {
			t.Fatalf("Acquire again = %d, %v; want slot 0", slot, err)
		}
		want[0].Renewed, want[0].Expires = t0.Add(2*time.Minute), t0.Add(17*time.Minute)
		if diff := cmp.Diff(want, holders(t, s)); diff != "" {
			t.Errorf("holders after a second Acquire (-want +got):\n%s", diff)
		}
		if l := lease(t, "basic", 0); *l.Spec.LeaseTransitions != 1 {
			t.Errorf("%d transitions after a second Acquire by the holder, want 1", *l.Spec.LeaseTransitions)
		}

		if err := s.Release(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]rebootlock.Holder{{Slot: 0}}, holders(t, s)); diff != "" {
			t.Errorf("holders after Release (-want +got):\n%s", diff)
		}
		if err := s.Release(ctx, "n1"); err != nil {
			t.Errorf("a second Release: %v, want none: it holds nothing", err)
		}
		if err := s.Renew(ctx, "n1"); !errors.Is(err, rebootlock.ErrNotHeld) {
			t.Errorf("Renew after Release: %v, want ErrNotHeld", err)
		}
		// The next holder is a transition.
		if slot, err := holder(t, "basic", 1, "n2", nil).Acquire(ctx, "n2"); slot != 0 || err != nil {
			t.Fatalf("Acquire by n2 = %d, %v; want slot 0", slot, err)
		}
		if l := lease(t, "basic", 0); *l.Spec.HolderIdentity != "n2" || *l.Spec.LeaseTransitions != 2 {
			t.Errorf("Lease spec %+v: want n2 and 2 transitions", l.Spec)
		}
	})

	t.Run("every slot held", func(t *testing.T) {
		ctx := t.Context()
		c.CreatePool(t, "pair", 2)
		a, b, d := holder(t, "pair", 2, "a", nil), holder(t, "pair", 2, "b", nil), holder(t, "pair", 2, "d", nil)
		for i, s := range []*rebootlock.Semaphore{a, b} {
			id := []string{"a", "b"}[i]
			if slot, err := s.Acquire(ctx, id); slot != i || err != nil {
				t.Fatalf("Acquire by %s = %d, %v; want slot %d", id, slot, err, i)
			}
		}
		_, err := d.Acquire(ctx, "d")
		var busy *rebootlock.BusyError
		if !errors.As(err, &busy) || !errors.Is(err, rebootlock.ErrBusy) {
			t.Fatalf("Acquire of a full pool: %v, want a BusyError", err)
		}
		if busy.Pool != "pair" || len(busy.Holders) != 2 || busy.Holders[0].Identity != "a" || busy.Holders[1].Identity != "b" {
			t.Errorf("busy: %+v, want slots 0 and 1 held by a and b", busy)
		}
		if !strings.Contains(err.Error(), `slot 0 by "a"`) || !strings.Contains(err.Error(), `slot 1 by "b"`) {
			t.Errorf("error %q does not name the holders", err)
		}
		if err := a.Release(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if slot, err := d.Acquire(ctx, "d"); slot != 0 || err != nil {
			t.Fatalf("Acquire by d after a's release = %d, %v; want slot 0", slot, err)
		}
	})

	t.Run("an expired holder's slot is taken over", func(t *testing.T) {
		ctx := t.Context()
		c.CreatePool(t, "expiry", 1)
		later := func() time.Time { return time.Now().Add(16 * time.Minute) } // past a's 15 min
		a, b := holder(t, "expiry", 1, "a", nil), holder(t, "expiry", 1, "b", later)
		if _, err := a.Acquire(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Acquire(ctx, "b"); err != nil {
			t.Fatalf("Acquire by b after a's lease expired: %v", err)
		}
		if l := lease(t, "expiry", 0); *l.Spec.HolderIdentity != "b" || *l.Spec.LeaseTransitions != 2 {
			t.Errorf("Lease spec %+v: want b and 2 transitions", l.Spec)
		}
		// a, back from the dead, has lost its slot; its release does not free b's.
		if err := a.Renew(ctx, "a"); !errors.Is(err, rebootlock.ErrNotHeld) {
			t.Errorf("Renew by the stale holder: %v, want ErrNotHeld", err)
		}
		if err := a.Release(ctx, "a"); err != nil {
			t.Errorf("Release by the stale holder: %v, want none", err)
		}
		if h := holders(t, b); h[0].Identity != "b" || h[0].Expired {
			t.Errorf("after the stale holder's Release: %+v, want b's", h)
		}
		// In a's time b's lease is fresh: the slot is b's.
		if _, err := a.Acquire(ctx, "a"); !errors.Is(err, rebootlock.ErrBusy) {
			t.Errorf("Acquire by a while b holds: %v, want ErrBusy", err)
		}
	})

	t.Run("a missing Lease", func(t *testing.T) {
		// A pool that was never made (seen by the admin: a holder may get only its pool's Leases),
		// and one whose second Lease was deleted.
		c.CreatePool(t, "gone", 2)
		if err := c.Admin.CoordinationV1().Leases(rebootlock.Namespace).Delete(t.Context(), rebootlock.LeaseName("gone", 1), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			s       *rebootlock.Semaphore
			missing string
		}{
			{s: &rebootlock.Semaphore{Client: c.Admin, Pool: "ghost", Slots: 1}, missing: "kiln-reboot-ghost-0"},
			{s: holder(t, "gone", 2, "n1", nil), missing: "kiln-reboot-gone-1"},
		} {
			_, err := tc.s.Acquire(t.Context(), "n1")
			if !errors.Is(err, rebootlock.ErrNoLease) || !strings.Contains(err.Error(), "kube-node-lease/"+tc.missing) ||
				!strings.Contains(err.Error(), "cluster init creates") || !strings.Contains(err.Error(), "kiln cluster secure") {
				t.Errorf("pool %s of %d: %v, want ErrNoLease naming %s and who creates it", tc.s.Pool, tc.s.Slots, err, tc.missing)
			}
		}
	})

	t.Run("rbac", func(t *testing.T) {
		ctx := t.Context()
		c.CreatePool(t, "db", 1)
		c.CreatePool(t, "web", 1)
		// The holders of db may not touch web's Leases, nor list Leases.
		stranger := &rebootlock.Semaphore{Client: c.ClientAs(t, "kiln-test:db-1", rebootlock.Group("db")), Pool: "web", Slots: 1}
		if _, err := stranger.Acquire(ctx, "db-1"); !apierrors.IsForbidden(err) {
			t.Errorf("Acquire of another pool's slot: %v, want Forbidden", err)
		}
		if _, err := stranger.Client.CoordinationV1().Leases(rebootlock.Namespace).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list Leases: %v, want Forbidden", err)
		}
		// A node's own identity (system:node:NAME in system:nodes) cannot hold the lock even when
		// RBAC lets its group: the NodeRestriction admission plugin lets a node write only the Lease
		// named after itself. The lock needs an identity of its own.
		node := &rebootlock.Semaphore{Client: c.ClientAs(t, "system:node:db-1", "system:nodes", rebootlock.Group("db")), Pool: "db", Slots: 1}
		if _, err := node.Acquire(ctx, "db-1"); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "node lease with the same name") {
			t.Errorf("Acquire as the node itself: %v, want Forbidden by NodeRestriction", err)
		}
		if _, err := node.Holders(ctx); err != nil {
			t.Errorf("Holders as the node itself (get only): %v", err)
		}
	})

	for _, slots := range []int{1, 2} {
		t.Run(fmt.Sprintf("8 racers on %d slots", slots), func(t *testing.T) {
			race(t, c, fmt.Sprintf("race-%d", slots), slots, 8)
		})
	}
}

// hold is one time that a racer held a slot: from after its Acquire returned to before it called
// Release, a part of the time its Lease named it.
type hold struct {
	id         string
	slot       int
	start, end time.Time
}

// race lets racers holders, each with its own client, take and release pool's slots for a few
// seconds (and at least 40 holds), while a watch records every change of the pool's Leases. From the
// holds: never more than slots at once, never two in one slot. From the watch: a slot only ever goes
// from free to held and back (never from one holder to another: nothing expires here), never one id
// in two slots, and the holders' takes, in order, are the holds the racers saw.
func race(t *testing.T, c *rebootlocktest.Cluster, pool string, slots, racers int) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c.CreatePool(t, pool, slots)
	leases := c.Admin.CoordinationV1().Leases(rebootlock.Namespace)
	selector := metav1.ListOptions{LabelSelector: rebootlock.PoolLabel + "=" + pool}
	list, err := leases.List(ctx, selector)
	if err != nil {
		t.Fatal(err)
	}
	selector.ResourceVersion = list.ResourceVersion
	w, err := leases.Watch(ctx, selector)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	var (
		mu    sync.Mutex
		holds = map[string][]hold{}
		total atomic.Int64
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for i := range racers {
		id := fmt.Sprintf("racer-%d", i)
		s := &rebootlock.Semaphore{Client: c.ClientAs(t, "kiln-test:"+id, rebootlock.Group(pool)), Pool: pool, Slots: slots}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				slot, err := s.Acquire(ctx, id)
				if errors.Is(err, rebootlock.ErrBusy) {
					time.Sleep(rand.N(2 * time.Millisecond))
					continue
				}
				if err != nil {
					t.Errorf("%s: Acquire: %v", id, err)
					return
				}
				h := hold{id: id, slot: slot, start: time.Now()}
				time.Sleep(rand.N(3 * time.Millisecond))
				h.end = time.Now()
				if err := s.Release(ctx, id); err != nil {
					t.Errorf("%s: Release: %v", id, err)
					return
				}
				mu.Lock()
				holds[id] = append(holds[id], h)
				mu.Unlock()
				total.Add(1)
			}
		})
	}
	// Load for a few seconds, and until there were enough holds to say something.
	time.Sleep(3 * time.Second)
	for total.Load() < 40 && ctx.Err() == nil && !t.Failed() {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	n := int(total.Load())
	t.Logf("%d holds by %d racers on %d slots", n, racers, slots)
	if n < 40 || t.Failed() {
		t.Fatalf("%d holds: %v", n, ctx.Err())
	}

	// Each hold is two writes: the take and the release; nothing else writes the Leases.
	slotOf := map[string]int{}
	for i, name := range rebootlock.LeaseNames(pool, slots) {
		slotOf[name] = i
	}
	state := make([]string, slots)
	transitions := make([]int32, slots)
	takes := map[string][]int{}
	for events := 0; events < 2*n; events++ {
		var ev watch.Event
		select {
		case ev = <-w.ResultChan():
		case <-ctx.Done():
			t.Fatalf("the watch saw %d of %d writes: %v", events, 2*n, ctx.Err())
		}
		l, ok := ev.Object.(*coordinationv1.Lease)
		if ev.Type != watch.Modified || !ok {
			t.Fatalf("watch event %d: %s %T, want a modified Lease", events, ev.Type, ev.Object)
		}
		slot := slotOf[l.Name]
		now := ""
		if l.Spec.HolderIdentity != nil {
			now = *l.Spec.HolderIdentity
		}
		switch {
		case now != "" && state[slot] != "":
			t.Fatalf("event %d: slot %d went from %s to %s: overwritten", events, slot, state[slot], now)
		case now == "" && state[slot] == "":
			t.Fatalf("event %d: slot %d written while free and left free", events, slot)
		case now != "":
			if slices.Contains(state, now) {
				t.Fatalf("event %d: %s takes slot %d holding another: %q", events, now, slot, state)
			}
			transitions[slot]++
			if got := *l.Spec.LeaseTransitions; got != transitions[slot] {
				t.Errorf("event %d: slot %d at %d transitions, want %d", events, slot, got, transitions[slot])
			}
			takes[now] = append(takes[now], slot)
		}
		state[slot] = now
	}
	for id, hs := range holds {
		var slots []int
		for _, h := range hs {
			slots = append(slots, h.slot)
		}
		if !slices.Equal(takes[id], slots) {
			t.Errorf("%s: the watch saw it take slots %v, it held %v", id, takes[id], slots)
		}
	}

	// The holds, as the racers saw them: at most slots at once, one at a time in each slot.
	var all []hold
	for _, hs := range holds {
		all = append(all, hs...)
	}
	slices.SortFunc(all, func(a, b hold) int { return a.start.Compare(b.start) })
	var open []hold // holds not ended before the current one starts
	for _, h := range all {
		open = slices.DeleteFunc(open, func(o hold) bool { return o.end.Before(h.start) })
		for _, o := range open {
			if o.slot == h.slot {
				t.Errorf("%s held slot %d from %v while %s held it until %v", h.id, h.slot, h.start, o.id, o.end)
			}
		}
		open = append(open, h)
		if len(open) > slots {
			t.Errorf("%d holders at once at %v on %d slots: %+v", len(open), h.start, slots, open)
		}
	}
}
