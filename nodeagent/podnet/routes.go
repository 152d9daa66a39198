package podnet

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// RouteProtocol marks the routes the agent owns (rtnetlink's rtm_protocol): 107 (0x6b), unused by
// the kernel and by the routing daemons of iproute2's rt_protos (keepalived, which holds kiln's API
// VIP, uses 18). Name it in /etc/iproute2/rt_protos.d/kiln.conf ("107 kiln") so that `ip route`
// shows "proto kiln".
const RouteProtocol = 107

// NodeInfo is what the pod network needs of a Node.
type NodeInfo struct {
	// Name is the Node's name.
	Name string
	// PodCIDR is the Node's pod range (spec.podCIDR); invalid when it has none yet.
	PodCIDR netip.Prefix
	// InternalIP is the Node's first InternalIP of PodCIDR's address family (status.addresses);
	// invalid when it has none.
	InternalIP netip.Addr
}

// NodeInfoFrom reads a Node. A Node without a podCIDR or an InternalIP yields a NodeInfo without
// it; an unparsable podCIDR is an error wrapping ErrInvalid that names the node (the NodeInfo then
// has no PodCIDR). Without a podCIDR the InternalIP is the first InternalIP of any family.
func NodeInfoFrom(n *corev1.Node) (NodeInfo, error) {
	info := NodeInfo{Name: n.Name}
	var err error
	if n.Spec.PodCIDR != "" {
		p, perr := netip.ParsePrefix(n.Spec.PodCIDR)
		switch {
		case perr != nil:
			err = fmt.Errorf("podnet: node %s: spec.podCIDR %q: %w: not a range", n.Name, n.Spec.PodCIDR, ErrInvalid)
		case p != p.Masked():
			err = fmt.Errorf("podnet: node %s: spec.podCIDR %q: %w: host bits set", n.Name, n.Spec.PodCIDR, ErrInvalid)
		default:
			info.PodCIDR = p
		}
	}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, perr := netip.ParseAddr(a.Address)
		if perr != nil {
			continue
		}
		ip = ip.Unmap()
		if info.PodCIDR.IsValid() && ip.Is4() != info.PodCIDR.Addr().Is4() {
			continue
		}
		info.InternalIP = ip
		break
	}
	return info, err
}

// Route is a route of the node's main routing table, as far as the pod network cares.
type Route struct {
	// Dst is the destination range.
	Dst netip.Prefix
	// Via is the gateway; invalid for a route without one.
	Via netip.Addr
	// Protocol is the route's rtm_protocol; RouteProtocol for the agent's own.
	Protocol int
}

// Owned says whether the agent made r (its protocol is RouteProtocol).
func (r Route) Owned() bool { return r.Protocol == RouteProtocol }

func (r Route) String() string {
	s := r.Dst.String()
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	return fmt.Sprintf("%s proto %d", s, r.Protocol)
}

// Skip says why a Node gets no route.
type Skip struct {
	Node   string
	Reason string
}

// WantedRoutes returns the routes self wants, one per other Node: "<its podCIDR> via <its
// InternalIP>" with RouteProtocol, in the order of the nodes' names, and the Nodes that get none
// and why: self itself; a Node without a podCIDR or an InternalIP, or of another address family
// than self's podCIDR; a Node whose pod range overlaps self's (self's range is reached through
// its bridge, never through another node); a Node whose InternalIP is self's; a Node whose pod
// range overlaps that of a Node earlier by name (the ranges the controller manager allocates never
// overlap, so this is a conflict to report, not to resolve).
func WantedRoutes(self NodeInfo, nodes []NodeInfo) (want []Route, skipped []Skip) {
	nodes = slices.Clone(nodes)
	slices.SortStableFunc(nodes, func(a, b NodeInfo) int { return cmp.Compare(a.Name, b.Name) })
	owner := map[netip.Prefix]string{}
	for _, n := range nodes {
		skip := func(format string, args ...any) {
			skipped = append(skipped, Skip{Node: n.Name, Reason: fmt.Sprintf(format, args...)})
		}
		switch {
		case n.Name == self.Name:
			continue
		case !n.PodCIDR.IsValid():
			skip("no spec.podCIDR yet")
		case !n.InternalIP.IsValid():
			skip("no InternalIP of the family of its podCIDR %s", n.PodCIDR)
		case !self.PodCIDR.IsValid():
			skip("this node has no podCIDR yet")
		case n.PodCIDR.Addr().Is4() != self.PodCIDR.Addr().Is4():
			skip("podCIDR %s is of another address family than this node's %s", n.PodCIDR, self.PodCIDR)
		case n.PodCIDR.Overlaps(self.PodCIDR):
			skip("podCIDR %s overlaps this node's %s", n.PodCIDR, self.PodCIDR)
		case n.InternalIP == self.InternalIP:
			skip("InternalIP %s is this node's own", n.InternalIP)
		default:
			if other, ok := overlapping(owner, n.PodCIDR); ok {
				skip("podCIDR %s overlaps that of node %s", n.PodCIDR, other)
				continue
			}
			owner[n.PodCIDR] = n.Name
			want = append(want, Route{Dst: n.PodCIDR, Via: n.InternalIP, Protocol: RouteProtocol})
		}
	}
	return want, skipped
}

func overlapping(owner map[netip.Prefix]string, p netip.Prefix) (string, bool) {
	for q, name := range owner {
		if q.Overlaps(p) {
			return name, true
		}
	}
	return "", false
}

// PlanRoutes compares the routes self wants (WantedRoutes) with the current main routing table
// and returns the routes to add and those to delete; deletions are applied first. It deletes only
// routes it owns (RouteProtocol): those to a range no Node wants any more, or through another
// gateway than the Node's InternalIP now. It never adds a route whose destination a route
// of another protocol already holds (a route an operator or another daemon made wins; the
// destination goes unrouted by the agent), nor one to self's own pod range.
func PlanRoutes(self NodeInfo, nodes []NodeInfo, current []Route) (add, del []Route) {
	want, _ := WantedRoutes(self, nodes)
	foreign := map[netip.Prefix]bool{}
	for _, r := range current {
		if !r.Owned() {
			foreign[r.Dst] = true
		}
	}
	wanted := map[netip.Prefix]Route{}
	for _, w := range want {
		if !foreign[w.Dst] {
			wanted[w.Dst] = w
		}
	}
	have := map[netip.Prefix]bool{}
	for _, r := range current {
		if !r.Owned() {
			continue
		}
		if w, ok := wanted[r.Dst]; ok && w.Via == r.Via {
			have[r.Dst] = true // an identical duplicate (another metric) stays: deleting it could hit the one kept
			continue
		}
		del = append(del, r)
	}
	for _, w := range want {
		if _, ok := wanted[w.Dst]; ok && !have[w.Dst] {
			add = append(add, w)
		}
	}
	return add, del
}
