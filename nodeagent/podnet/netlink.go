package podnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteTable reads and changes the main routing table of one network namespace through netlink.
type RouteTable struct {
	h *netlink.Handle
}

// NewRouteTable returns a RouteTable for h, a netlink handle in the namespace to change
// (netlink.NewHandle() for the agent's own, netlink.NewHandleAt for another).
func NewRouteTable(h *netlink.Handle) *RouteTable { return &RouteTable{h: h} }

// Interface returns the index of the interface the routes go out of: the one named name when name
// is set, else the one that holds addr (the node's InternalIP). Its error wraps ErrNoInterface.
func (t *RouteTable) Interface(name string, addr netip.Addr) (int, error) {
	if name != "" {
		l, err := t.h.LinkByName(name)
		if err != nil {
			return 0, fmt.Errorf("podnet: interface %s: %w: %w", name, ErrNoInterface, err)
		}
		return l.Attrs().Index, nil
	}
	if !addr.IsValid() {
		return 0, fmt.Errorf("podnet: the node's interface: %w: no InternalIP to find it by (name it with --interface)", ErrNoInterface)
	}
	links, err := t.h.LinkList()
	if err != nil {
		return 0, fmt.Errorf("podnet: list interfaces: %w", err)
	}
	for _, l := range links {
		addrs, err := t.h.AddrList(l, family(addr))
		if err != nil {
			return 0, fmt.Errorf("podnet: addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
				return l.Attrs().Index, nil
			}
		}
	}
	return 0, fmt.Errorf("podnet: the node's interface: %w: none holds the InternalIP %s (name it with --interface)", ErrNoInterface, addr)
}

// List returns the routes of the main table of addr's family (IPv4 or IPv6), multipath routes
// passed over.
func (t *RouteTable) List(fam netip.Addr) ([]Route, error) {
	var rs []netlink.Route
	var err error
	for range 5 { // a dump interrupted by a concurrent change is repeated
		rs, err = t.h.RouteListFiltered(family(fam), &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("podnet: list routes: %w", err)
	}
	var out []Route
	for _, r := range rs {
		if len(r.MultiPath) > 0 {
			continue
		}
		rt := Route{Protocol: int(r.Protocol)}
		if r.Dst == nil {
			rt.Dst = netip.PrefixFrom(zero(fam), 0)
		} else {
			ip, _ := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			rt.Dst = netip.PrefixFrom(ip.Unmap(), ones)
		}
		if gw, ok := netip.AddrFromSlice(r.Gw); ok {
			rt.Via = gw.Unmap()
		}
		out = append(out, rt)
	}
	return out, nil
}

// Apply deletes del, then adds (replaces, by destination) add through the interface link. It goes on
// after a failure and returns every error, each naming its route.
func (t *RouteTable) Apply(link int, add, del []Route) error {
	var errs []error
	for _, r := range del {
		if err := t.h.RouteDel(nlRoute(r, 0)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("podnet: delete route %s: %w", r, err))
		}
	}
	for _, r := range add {
		if err := t.h.RouteReplace(nlRoute(r, link)); err != nil {
			errs = append(errs, fmt.Errorf("podnet: add route %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

func nlRoute(r Route, link int) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: link,
		Dst:       &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
		Protocol:  netlink.RouteProtocol(r.Protocol),
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
	}
	return nr
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func zero(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}
