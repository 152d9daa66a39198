package addrpool_test

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/provisioner/addrpool"
	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/statetest"
)

func addrs(ss ...string) map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for _, s := range ss {
		m[netip.MustParseAddr(s)] = true
	}
	return m
}

func TestPick(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prefix  string
		taken   map[netip.Addr]bool
		exclude []netip.Addr
		want    string
		wantErr error
		wantMsg string
	}{
		{name: "empty: the address after the gateway", prefix: "10.0.0.0/24", want: "10.0.0.2"},
		{name: "lowest free", prefix: "10.0.0.0/24", taken: addrs("10.0.0.2", "10.0.0.4"), want: "10.0.0.3"},
		{name: "a freed address is given again", prefix: "10.0.0.0/24", taken: addrs("10.0.0.3"), want: "10.0.0.2"},
		{name: "never the API endpoint", prefix: "10.0.0.0/24", taken: addrs("10.0.0.2"),
			exclude: []netip.Addr{netip.MustParseAddr("10.0.0.3")}, want: "10.0.0.4"},
		{name: "an unmasked prefix counts from its network address", prefix: "192.168.1.77/26", want: "192.168.1.66"},
		{name: "a /30 gives one address", prefix: "10.0.0.4/30", want: "10.0.0.6"},
		{name: "never broadcast", prefix: "10.0.0.0/29", taken: addrs("10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"),
			wantErr: addrpool.ErrExhausted, wantMsg: "10.0.0.0/29: all 5 addresses it gives machines are reserved: no free address"},
		{name: "exhausted, the endpoint not counted", prefix: "10.0.0.0/29", taken: addrs("10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"),
			exclude: []netip.Addr{netip.MustParseAddr("10.0.0.3")}, wantErr: addrpool.ErrExhausted,
			wantMsg: "10.0.0.0/29: all 4 addresses it gives machines are reserved: no free address"},
		{name: "IPv6", prefix: "fd00::/64", wantErr: addrpool.ErrPrefix},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := addrpool.Pick(netip.MustParsePrefix(tc.prefix), tc.taken, tc.exclude...)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || (tc.wantMsg != "" && err.Error() != tc.wantMsg) {
					t.Fatalf("Pick = %v, %v; want error %v (%q)", got, err, tc.wantErr, tc.wantMsg)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("Pick = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	st := statetest.NewEmpty()
	for _, tc := range []struct {
		name   string
		st     addrpool.Store
		prefix netip.Prefix
	}{
		{name: "no store", prefix: netip.MustParsePrefix("10.0.0.0/24")},
		{name: "no prefix", st: st},
		{name: "IPv6", st: st, prefix: netip.MustParsePrefix("fd00::/64")},
		{name: "a /31 has no room", st: st, prefix: netip.MustParsePrefix("10.0.0.0/31")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := addrpool.New(tc.st, tc.prefix); err == nil {
				t.Fatal("New: no error")
			}
		})
	}
}

// stores are the state stores every behaviour is checked on: the real bbolt store and the fake.
func stores(t *testing.T) map[string]func(t *testing.T) addrpool.Store {
	return map[string]func(t *testing.T) addrpool.Store{
		"bbolt": func(t *testing.T) addrpool.Store {
			key := make([]byte, state.KeySize)
			st, err := state.Open(filepath.Join(t.TempDir(), "state.db"), key)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		"memory": func(t *testing.T) addrpool.Store { return statetest.NewEmpty() },
	}
}

func TestPool(t *testing.T) {
	prefix := netip.MustParsePrefix("10.20.0.0/29")
	vip := netip.MustParseAddr("10.20.0.2")
	for kind, open := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			st := open(t)
			p, err := addrpool.New(st, prefix, vip)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Gateway().String(); got != "10.20.0.1" {
				t.Errorf("Gateway = %s, want 10.20.0.1", got)
			}
			reserve := func(cluster, name, want string) {
				t.Helper()
				got, err := p.Reserve(cluster, name)
				if err != nil || got.String() != want {
					t.Fatalf("Reserve(%s, %s) = %v, %v; want %s", cluster, name, got, err, want)
				}
			}
			reserve("a", "a-control-plane-0", "10.20.0.3") // .1 gateway, .2 the API endpoint
			reserve("a", "a-control-plane-0", "10.20.0.3") // same name, same address
			reserve("a", "a-workers-0", "10.20.0.4")
			reserve("b", "a-workers-0", "10.20.0.5") // another cluster's machine of that name
			// Another pool over the same store and prefix sees the same reservations.
			p2, err := addrpool.New(st, netip.MustParsePrefix("10.20.0.7/29"))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := p2.Reserve("a", "a-workers-0"); err != nil || got.String() != "10.20.0.4" {
				t.Fatalf("Reserve through a second pool = %v, %v; want 10.20.0.4", got, err)
			}
			if err := p.Release("a", "a-workers-0"); err != nil {
				t.Fatal(err)
			}
			if err := p.Release("a", "a-workers-0"); err != nil {
				t.Fatalf("Release twice: %v", err)
			}
			reserve("a", "a-workers-1", "10.20.0.4") // the freed address, the lowest
			reserve("a", "a-workers-2", "10.20.0.6")
			_, err = p.Reserve("a", "a-workers-3")
			if !errors.Is(err, addrpool.ErrExhausted) || !strings.Contains(err.Error(), "10.20.0.0/29: all 4 addresses") {
				t.Fatalf("Reserve in a full pool: %v; want ErrExhausted naming the prefix and the count", err)
			}
			holds, err := p.Holds()
			if err != nil {
				t.Fatal(err)
			}
			want := []addrpool.Hold{
				{Cluster: "a", Name: "a-control-plane-0", Address: netip.MustParseAddr("10.20.0.3")},
				{Cluster: "a", Name: "a-workers-1", Address: netip.MustParseAddr("10.20.0.4")},
				{Cluster: "b", Name: "a-workers-0", Address: netip.MustParseAddr("10.20.0.5")},
				{Cluster: "a", Name: "a-workers-2", Address: netip.MustParseAddr("10.20.0.6")},
			}
			if diff := cmp.Diff(want, holds, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("Holds (-want +got):\n%s", diff)
			}

			// A pool whose endpoint a machine already holds refuses to reserve.
			p3, err := addrpool.New(st, prefix, netip.MustParseAddr("10.20.0.5"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p3.Reserve("c", "c-workers-0"); !errors.Is(err, addrpool.ErrConflict) {
				t.Errorf("Reserve with the endpoint held: %v; want ErrConflict", err)
			}
		})
	}
}

func TestPoolReleaseOfNothing(t *testing.T) {
	p, err := addrpool.New(statetest.NewEmpty(), netip.MustParsePrefix("10.0.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Release("a", "x"); err != nil {
		t.Errorf("Release in an empty store: %v", err)
	}
	if holds, err := p.Holds(); err != nil || len(holds) != 0 {
		t.Errorf("Holds of an empty store = %v, %v", holds, err)
	}
}

func TestPoolConcurrent(t *testing.T) {
	const n = 40
	for kind, open := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			st := open(t)
			got := make([]netip.Addr, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					// A pool per reserver, as several providers over one store would have.
					p, err := addrpool.New(st, netip.MustParsePrefix("10.0.0.0/24"))
					if err == nil {
						got[i], err = p.Reserve("c", fmt.Sprintf("c-workers-%d", i))
					}
					errs[i] = err
				})
			}
			wg.Wait()
			seen := map[netip.Addr]int{}
			for i, a := range got {
				if errs[i] != nil {
					t.Fatalf("reserver %d: %v", i, errs[i])
				}
				if j, ok := seen[a]; ok {
					t.Fatalf("reservers %d and %d both got %s", j, i, a)
				}
				seen[a] = i
			}
			// The lowest n addresses after the gateway, and no others.
			for a, i := netip.MustParseAddr("10.0.0.2"), 0; i < n; a, i = a.Next(), i+1 {
				if _, ok := seen[a]; !ok {
					t.Errorf("%s was not given; got %v", a, got)
				}
			}
		})
	}
}

func TestPoolBrokenStore(t *testing.T) {
	broken := errors.New("disk on fire")
	p, err := addrpool.New(statetest.Broken{Err: broken}, netip.MustParsePrefix("10.0.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Reserve("c", "n"); !errors.Is(err, broken) {
		t.Errorf("Reserve: %v; want the store's error", err)
	}
	if err := p.Release("c", "n"); !errors.Is(err, broken) {
		t.Errorf("Release: %v; want the store's error", err)
	}
	if _, err := p.Holds(); !errors.Is(err, broken) {
		t.Errorf("Holds: %v; want the store's error", err)
	}
}
