package lease_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/lease"
	"github.com/kiln-dev/kiln/state/statetest"
)

var (
	t0  = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	ttl = 30 * time.Second

	me    = lease.Holder{Name: "kiln apply", PID: 100, Host: "ops-1"}
	other = lease.Holder{Name: "kiln apply", PID: 200, Host: "ops-2"}
)

func held(h lease.Holder, since, renewed time.Time) lease.Lease {
	return lease.Lease{Holder: h, Since: since, Renewed: renewed, Expires: renewed.Add(ttl)}
}

func fixed(t *testing.T, l lease.Lease) *statetest.Memory {
	return statetest.NewFixed(t, statetest.Values{lease.Bucket: {"prod": l}})
}

// stored is the lease prod as the store keeps it.
func stored(t *testing.T, s state.Getter) lease.Lease {
	t.Helper()
	l, err := lease.Get(s, "prod")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAcquire(t *testing.T) {
	tests := []struct {
		name    string
		store   func(t *testing.T) *statetest.Memory
		now     time.Time
		want    lease.Lease
		wantErr error
		wantMsg string
	}{
		{
			name:  "nobody ever held it",
			store: func(*testing.T) *statetest.Memory { return statetest.NewEmpty() },
			now:   t0,
			want:  held(me, t0, t0),
		},
		{
			name:  "another holder's lease expired: taken over",
			store: func(t *testing.T) *statetest.Memory { return fixed(t, held(other, t0.Add(-time.Hour), t0.Add(-ttl))) },
			now:   t0,
			want:  held(me, t0, t0),
		},
		{
			name: "released by its holder: taken at once",
			store: func(t *testing.T) *statetest.Memory {
				return fixed(t, lease.Lease{Holder: other, Since: t0.Add(-time.Hour), Renewed: t0.Add(-time.Second), Expires: t0})
			},
			now:  t0,
			want: held(me, t0, t0),
		},
		{
			name: "held by another: refused, naming the holder, its pid and since when",
			store: func(t *testing.T) *statetest.Memory {
				return fixed(t, held(other, t0.Add(-time.Hour), t0.Add(-ttl+time.Second)))
			},
			now:     t0,
			wantErr: lease.ErrHeld,
			wantMsg: "lease prod: held by another process: kiln apply (pid 200 on ops-2) since 2026-03-04T04:06:07Z, until 2026-03-04T05:06:08Z unless renewed",
		},
		{
			name: "held by the caller already: renewed, since kept",
			store: func(t *testing.T) *statetest.Memory {
				return fixed(t, held(me, t0.Add(-time.Hour), t0.Add(-time.Second)))
			},
			now:  t0,
			want: held(me, t0.Add(-time.Hour), t0),
		},
		{
			name: "the caller's own lease expired: taken again, since now",
			store: func(t *testing.T) *statetest.Memory {
				return fixed(t, held(me, t0.Add(-time.Hour), t0.Add(-time.Minute)))
			},
			now:  t0,
			want: held(me, t0, t0),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.store(t)
			before, _ := lease.Get(s, "prod")
			got, err := lease.Acquire(t.Context(), s, "prod", me, ttl, tc.now)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Acquire: %v", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Acquire: %v, want %v", err, tc.wantErr)
			case tc.wantMsg != "" && err.Error() != tc.wantMsg:
				t.Fatalf("Acquire: %q, want %q", err, tc.wantMsg)
			}
			if tc.wantErr != nil {
				var h *lease.HeldError
				if !errors.As(err, &h) || h.Lease != before {
					t.Errorf("the error carries %+v, want the lease as held, %+v", h, before)
				}
				if diff := cmp.Diff(before, stored(t, s)); diff != "" {
					t.Errorf("a refused Acquire changed the lease (-before +after):\n%s", diff)
				}
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Acquire (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, stored(t, s)); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenewAndRelease(t *testing.T) {
	ctx := t.Context()
	s := statetest.NewEmpty()
	if _, err := lease.Acquire(ctx, s, "prod", me, ttl, t0); err != nil {
		t.Fatal(err)
	}
	// Renewed before it expires, it stays the caller's past the first expiry.
	for i := 1; i <= 3; i++ {
		now := t0.Add(time.Duration(i) * 20 * time.Second)
		if _, err := lease.Renew(ctx, s, "prod", me, ttl, now); err != nil {
			t.Fatalf("renew %d: %v", i, err)
		}
		if _, err := lease.Acquire(ctx, s, "prod", other, ttl, now.Add(ttl-time.Nanosecond)); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("another holder after renew %d: %v, want ErrHeld", i, err)
		}
	}
	if got, want := stored(t, s), held(me, t0, t0.Add(time.Minute)); got != want {
		t.Errorf("after renewals: %+v, want %+v", got, want)
	}

	// Another holder can neither renew nor release it.
	if _, err := lease.Renew(ctx, s, "prod", other, ttl, t0.Add(time.Minute)); !errors.Is(err, lease.ErrLost) {
		t.Errorf("Renew by another holder: %v, want ErrLost", err)
	}
	if err := lease.Release(ctx, s, "prod", other, t0.Add(time.Minute)); !errors.Is(err, lease.ErrLost) {
		t.Errorf("Release by another holder: %v, want ErrLost", err)
	}

	// Released, the next holder need not wait for the expiry.
	if err := lease.Release(ctx, s, "prod", me, t0.Add(61*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, err := lease.Acquire(ctx, s, "prod", other, ttl, t0.Add(62*time.Second)); err != nil || got.Holder != other {
		t.Fatalf("Acquire after Release: %+v, %v", got, err)
	}
	// The first holder's Renew now says it lost the lease, and who has it.
	_, err := lease.Renew(ctx, s, "prod", me, ttl, t0.Add(63*time.Second))
	if !errors.Is(err, lease.ErrLost) || !strings.Contains(err.Error(), "pid 200 on ops-2") {
		t.Errorf("Renew after takeover: %v, want ErrLost naming pid 200 on ops-2", err)
	}

	// No lease: Renew has lost it, Release has nothing to do.
	empty := statetest.NewEmpty()
	if _, err := lease.Renew(ctx, empty, "prod", me, ttl, t0); !errors.Is(err, lease.ErrLost) {
		t.Errorf("Renew of no lease: %v, want ErrLost", err)
	}
	if err := lease.Release(ctx, empty, "prod", me, t0); err != nil {
		t.Errorf("Release of no lease: %v", err)
	}
}

func TestBadArguments(t *testing.T) {
	s := statetest.NewEmpty()
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name string
		do   func() error
		want string
	}{
		{"no ttl", func() error { _, err := lease.Acquire(t.Context(), s, "prod", me, 0, t0); return err }, "lease prod: time to live 0s, want more than 0"},
		{"no name", func() error { _, err := lease.Acquire(t.Context(), s, "", me, ttl, t0); return err }, "lease : state: leases: empty key"},
		{"cancelled", func() error { _, err := lease.Acquire(cancelled, s, "prod", me, ttl, t0); return err }, "lease prod: context canceled"},
	} {
		if err := tc.do(); err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if b, _ := s.Buckets(); len(b) != 0 {
		t.Errorf("bad arguments wrote to the store: %v", b)
	}
}

// TestBrokenStore: an error of the store reaches the caller with the lease named, and is not taken
// for a lease held by another.
func TestBrokenStore(t *testing.T) {
	broken := statetest.Broken{Err: state.ErrCorrupt}
	_, err := lease.Acquire(t.Context(), broken, "prod", me, ttl, t0)
	if !errors.Is(err, state.ErrCorrupt) || errors.Is(err, lease.ErrHeld) || !strings.HasPrefix(err.Error(), "lease prod: ") {
		t.Errorf("Acquire: %v, want ErrCorrupt with the lease's name", err)
	}
	if _, err := lease.Renew(t.Context(), broken, "prod", me, ttl, t0); !errors.Is(err, state.ErrCorrupt) || errors.Is(err, lease.ErrLost) {
		t.Errorf("Renew: %v, want ErrCorrupt", err)
	}
	if err := lease.Release(t.Context(), broken, "prod", me, t0); !errors.Is(err, state.ErrCorrupt) {
		t.Errorf("Release: %v, want ErrCorrupt", err)
	}
	if _, err := lease.Get(broken, "prod"); !errors.Is(err, state.ErrCorrupt) {
		t.Errorf("Get: %v, want ErrCorrupt", err)
	}
}

// race has n holders take the lease at once through take, and returns the holders that got it;
// every other must have been refused with ErrHeld.
func race(t *testing.T, n int, take func(h lease.Holder) error) []lease.Holder {
	t.Helper()
	var (
		mu      sync.Mutex
		winners []lease.Holder
		wg      sync.WaitGroup
		start   = make(chan struct{})
	)
	for i := range n {
		h := lease.Holder{Name: "kiln apply", PID: 1000 + i, Host: "ops"}
		wg.Go(func() {
			<-start
			err := take(h)
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, h)
				mu.Unlock()
			case !errors.Is(err, lease.ErrHeld):
				t.Errorf("holder %d: %v, want ErrHeld or the lease", h.PID, err)
			}
		})
	}
	close(start)
	wg.Wait()
	return winners
}

func TestRaceMemory(t *testing.T) {
	for round := range 50 {
		s := statetest.NewEmpty()
		if round%2 == 1 { // a free lease that exists: the race goes through Modify
			s = fixed(t, held(other, t0.Add(-time.Hour), t0.Add(-time.Hour)))
		}
		winners := race(t, 8, func(h lease.Holder) error {
			_, err := lease.Acquire(t.Context(), s, "prod", h, ttl, t0)
			return err
		})
		if len(winners) != 1 || stored(t, s).Holder != winners[0] {
			t.Fatalf("round %d: winners %v, stored %+v; want exactly one, stored", round, winners, stored(t, s))
		}
	}
}

// open opens the state file at path as a kiln process does, waiting while another has it.
func open(t *testing.T, path string) *state.Store {
	t.Helper()
	for {
		s, err := state.Open(path, bytes.Repeat([]byte{7}, state.KeySize))
		if errors.Is(err, state.ErrLocked) {
			continue
		}
		if err != nil {
			t.Error(err)
			return nil
		}
		return s
	}
}

// TestFileStore races for the lease on the real state file, each contender with its own handle on
// it as two kiln processes would have, then lets the winner's lease expire and another take over.
func TestFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), state.FileName)
	ctx := t.Context()
	withFile := func(fn func(s *state.Store) error) error {
		s := open(t, path)
		if s == nil {
			return errors.New("no store")
		}
		defer s.Close()
		return fn(s)
	}

	winners := race(t, 2, func(h lease.Holder) error {
		return withFile(func(s *state.Store) error {
			_, err := lease.Acquire(ctx, s, "prod", h, ttl, t0)
			return err
		})
	})
	if len(winners) != 1 {
		t.Fatalf("winners %v, want exactly one", winners)
	}
	first := winners[0]

	// Two contenders on one handle too: the store's transactions serialize them.
	shared := open(t, filepath.Join(t.TempDir(), state.FileName))
	defer shared.Close()
	if w := race(t, 2, func(h lease.Holder) error {
		_, err := lease.Acquire(ctx, shared, "prod", h, ttl, t0)
		return err
	}); len(w) != 1 {
		t.Fatalf("on one handle: winners %v, want exactly one", w)
	}

	// The winner crashes: nobody may take the lease before it expires, anyone after.
	next := lease.Holder{Name: "kiln apply --watch", PID: 3000, Host: "ops"}
	err := withFile(func(s *state.Store) error {
		_, err := lease.Acquire(ctx, s, "prod", next, ttl, t0.Add(ttl-time.Millisecond))
		return err
	})
	if want := fmt.Sprintf("(pid %d on ops) since %s", first.PID, t0.Format(time.RFC3339)); !errors.Is(err, lease.ErrHeld) || !strings.Contains(err.Error(), want) {
		t.Fatalf("before expiry: %v, want ErrHeld naming %s", err, want)
	}
	if err := withFile(func(s *state.Store) error {
		got, err := lease.Acquire(ctx, s, "prod", next, ttl, t0.Add(ttl))
		if err == nil && got != held(next, t0.Add(ttl), t0.Add(ttl)) {
			err = fmt.Errorf("took %+v", got)
		}
		return err
	}); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if err := withFile(func(s *state.Store) error {
		_, err := lease.Renew(ctx, s, "prod", first, ttl, t0.Add(ttl+time.Second))
		return err
	}); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("the crashed holder's renew after the takeover: %v, want ErrLost", err)
	}
}

// A holder on this host whose process is gone (SIGKILL, a crash) does not block the next actor until
// its lease expires; one on another host, or one that still runs, does.
func TestAcquireFromADeadHolder(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	me := lease.Self("kiln apply")
	for _, tc := range []struct {
		name   string
		holder lease.Holder
		want   bool
	}{
		{name: "dead process on this host", holder: lease.Holder{Name: "kiln apply", PID: dead.Process.Pid, Host: host}, want: true},
		{name: "dead pid on another host", holder: lease.Holder{Name: "kiln apply", PID: dead.Process.Pid, Host: host + "-other"}, want: false},
		{name: "live process on this host", holder: lease.Holder{Name: "kiln apply", PID: os.Getppid(), Host: host}, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := statetest.NewEmpty()
			if _, err := lease.Acquire(t.Context(), st, "demo", tc.holder, time.Minute, now); err != nil {
				t.Fatal(err)
			}
			_, err := lease.Acquire(t.Context(), st, "demo", me, time.Minute, now.Add(time.Second))
			if got := err == nil; got != tc.want {
				t.Fatalf("took it: %v (err %v), want %v", got, err, tc.want)
			}
			if !tc.want && !errors.Is(err, lease.ErrHeld) {
				t.Fatalf("err = %v, want ErrHeld", err)
			}
		})
	}
}
