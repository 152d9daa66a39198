// Package addrpool reserves static addresses of one network prefix for named machines before the
// machines exist, in kiln's state store, so that a machine's address can be rendered into its config
// and the machine made with it later (provisioner.Addresser).
//
// A pool is one value in the state store (bucket Bucket, key the prefix), changed in one transaction
// per reservation, so that concurrent reservers, in one process or several, never hand out one
// address twice. Clusters whose machines share a port group share its prefix's pool, and so never
// collide either.
//
// Which address a machine gets is decided by Pick, a pure function of the prefix, the addresses
// already held and those to skip: the lowest free one, never the prefix's network address, its first
// host address (the gateway, by the convention kiln asks users to follow: docs/vsphere.md), its last
// address (broadcast), or an address the caller excludes (the cluster's API endpoint, which keepalived
// holds). The same (cluster, name) always gets the address it holds; Release frees it.
package addrpool

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/kiln-dev/kiln/state"
)

// Bucket is the state-store bucket of address pools, one value per prefix.
const Bucket = "addresses"

// Store is what a Pool needs of the state store: the pool's value, made once if missing and changed in
// one transaction per reservation or release, and read.
type Store interface {
	state.Getter
	state.Creator
	state.Modifier
}

// Hold is one reserved address.
type Hold struct {
	Cluster string     `json:"cluster"`
	Name    string     `json:"name"`
	Address netip.Addr `json:"address"`
}

// value is a pool as the store keeps it.
type value struct {
	Prefix string `json:"prefix"`
	Holds  []Hold `json:"holds"`
}

// Pool hands out the addresses of one IPv4 prefix. It is safe for concurrent use.
type Pool struct {
	st      Store
	prefix  netip.Prefix
	exclude []netip.Addr
}

// New returns the pool of prefix in st. Addresses in exclude (the cluster's API endpoint) are never
// given to a machine. The prefix must be IPv4 and leave at least one address besides its network,
// gateway and broadcast addresses.
func New(st Store, prefix netip.Prefix, exclude ...netip.Addr) (*Pool, error) {
	switch {
	case st == nil:
		return nil, errors.New("addrpool: no state store")
	case !prefix.IsValid() || !prefix.Addr().Is4():
		return nil, fmt.Errorf("addrpool: %s: %w", prefix, ErrPrefix)
	case prefix.Bits() > 30:
		return nil, fmt.Errorf("addrpool: %s: %w: it holds no address besides its network, gateway and broadcast addresses", prefix, ErrPrefix)
	}
	return &Pool{st: st, prefix: prefix.Masked(), exclude: slices.Clone(exclude)}, nil
}

// Prefix is the pool's prefix.
func (p *Pool) Prefix() netip.Prefix { return p.prefix }

// Gateway is the prefix's first host address, which the pool never hands out: by convention the
// gateway of the machines' network.
func (p *Pool) Gateway() netip.Addr { return p.prefix.Addr().Next() }

func (p *Pool) key() string { return p.prefix.String() }

// Reserve returns the address that the machine called name of cluster holds, reserving the lowest free
// one first if it holds none. The decision and the write are one transaction.
func (p *Pool) Reserve(cluster, name string) (netip.Addr, error) {
	if cluster == "" || name == "" {
		return netip.Addr{}, fmt.Errorf("addrpool: reserve %q of cluster %q: a cluster and a name are required", name, cluster)
	}
	if err := p.st.Create(Bucket, p.key(), value{Prefix: p.key()}); err != nil && !errors.Is(err, state.ErrExists) {
		return netip.Addr{}, fmt.Errorf("addrpool: reserve %s in %s: %w", name, p.prefix, err)
	}
	var (
		v    value
		addr netip.Addr
	)
	err := p.st.Modify(Bucket, p.key(), &v, func() error {
		var err error
		v.Holds, addr, err = reserve(v.Holds, p.prefix, cluster, name, p.exclude)
		return err
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addrpool: reserve %s of cluster %s in %s: %w", name, cluster, p.prefix, err)
	}
	return addr, nil
}

// Release frees the address that the machine called name of cluster holds. A machine that holds none
// is not an error.
func (p *Pool) Release(cluster, name string) error {
	var v value
	err := p.st.Modify(Bucket, p.key(), &v, func() error {
		v.Holds = slices.DeleteFunc(v.Holds, func(h Hold) bool { return h.Cluster == cluster && h.Name == name })
		return nil
	})
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("addrpool: release %s of cluster %s in %s: %w", name, cluster, p.prefix, err)
	}
	return nil
}

// Holds returns every address held in the pool, of every cluster, lowest first.
func (p *Pool) Holds() ([]Hold, error) {
	var v value
	if err := p.st.Get(Bucket, p.key(), &v); err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("addrpool: read %s: %w", p.prefix, err)
	}
	slices.SortFunc(v.Holds, func(a, b Hold) int { return a.Address.Compare(b.Address) })
	return v.Holds, nil
}

// reserve decides the reservation of (cluster, name) given what holds: the holds afterwards and the
// machine's address.
func reserve(holds []Hold, prefix netip.Prefix, cluster, name string, exclude []netip.Addr) ([]Hold, netip.Addr, error) {
	taken := make(map[netip.Addr]bool, len(holds))
	for _, h := range holds {
		taken[h.Address] = true
	}
	for _, x := range exclude {
		if i := slices.IndexFunc(holds, func(h Hold) bool { return h.Address == x }); i >= 0 {
			return nil, netip.Addr{}, fmt.Errorf("%s, which must stay free (the API endpoint), is held by %s of cluster %s: %w",
				x, holds[i].Name, holds[i].Cluster, ErrConflict)
		}
	}
	if i := slices.IndexFunc(holds, func(h Hold) bool { return h.Cluster == cluster && h.Name == name }); i >= 0 {
		return holds, holds[i].Address, nil
	}
	addr, err := Pick(prefix, taken, exclude...)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	holds = append(holds, Hold{Cluster: cluster, Name: name, Address: addr})
	slices.SortFunc(holds, func(a, b Hold) int {
		return cmp.Or(a.Address.Compare(b.Address), cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Name, b.Name))
	})
	return holds, addr, nil
}

// Pick returns the lowest address of the IPv4 prefix that is neither taken nor excluded, nor the
// prefix's network address, its first host address (the gateway) or its last address (broadcast).
// With none left it returns ErrExhausted, naming the prefix and how many addresses it has to give.
func Pick(prefix netip.Prefix, taken map[netip.Addr]bool, exclude ...netip.Addr) (netip.Addr, error) {
	prefix = prefix.Masked()
	if !prefix.IsValid() || !prefix.Addr().Is4() {
		return netip.Addr{}, fmt.Errorf("%s: %w", prefix, ErrPrefix)
	}
	skip := map[netip.Addr]bool{}
	for _, x := range exclude {
		skip[x] = true
	}
	usable := 0
	// From the address after the gateway to the one before broadcast.
	for a := prefix.Addr().Next().Next(); prefix.Contains(a) && prefix.Contains(a.Next()); a = a.Next() {
		if skip[a] {
			continue
		}
		if !taken[a] {
			return a, nil
		}
		usable++
	}
	return netip.Addr{}, fmt.Errorf("%s: all %d addresses it gives machines are reserved: %w", prefix, usable, ErrExhausted)
}
