package podnet

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// self is node a, the node the plans are made for.
var self = NodeInfo{Name: "a", PodCIDR: pfx("10.244.1.0/24"), InternalIP: addr("192.0.2.10")}

func node(name, podCIDR, ip string) NodeInfo {
	n := NodeInfo{Name: name}
	if podCIDR != "" {
		n.PodCIDR = pfx(podCIDR)
	}
	if ip != "" {
		n.InternalIP = addr(ip)
	}
	return n
}

func owned(dst, via string) Route {
	return Route{Dst: pfx(dst), Via: addr(via), Protocol: RouteProtocol}
}

// foreign is a route of another protocol (boot: a static route from the node's network config).
func foreign(dst, via string) Route {
	r := Route{Dst: pfx(dst), Protocol: 3}
	if via != "" {
		r.Via = addr(via)
	}
	return r
}

// kernel is the node's connected route to its private network and its own bridge's route.
var kernel = []Route{
	{Dst: pfx("192.0.2.0/24"), Protocol: 2},
	{Dst: pfx("10.244.1.0/24"), Protocol: 2},
	foreign("0.0.0.0/0", "192.0.2.1"),
}

func TestPlanRoutes(t *testing.T) {
	b := node("b", "10.244.2.0/24", "192.0.2.11")
	c := node("c", "10.244.3.0/24", "192.0.2.12")
	for _, tc := range []struct {
		name     string
		self     NodeInfo
		nodes    []NodeInfo
		current  []Route
		add, del []Route
	}{
		{
			name:    "alone: nothing to do",
			self:    self,
			nodes:   []NodeInfo{self},
			current: kernel,
		},
		{
			name:    "two other nodes: a route to each",
			self:    self,
			nodes:   []NodeInfo{c, self, b},
			current: kernel,
			add:     []Route{owned("10.244.2.0/24", "192.0.2.11"), owned("10.244.3.0/24", "192.0.2.12")},
		},
		{
			name:    "routes in place: nothing to do",
			self:    self,
			nodes:   []NodeInfo{self, b, c},
			current: append(slices.Clone(kernel), owned("10.244.3.0/24", "192.0.2.12"), owned("10.244.2.0/24", "192.0.2.11")),
		},
		{
			name:    "a node is gone: its route goes",
			self:    self,
			nodes:   []NodeInfo{self, b},
			current: append(slices.Clone(kernel), owned("10.244.2.0/24", "192.0.2.11"), owned("10.244.3.0/24", "192.0.2.12")),
			del:     []Route{owned("10.244.3.0/24", "192.0.2.12")},
		},
		{
			name:    "every other node gone: all owned routes go, nothing else",
			self:    self,
			nodes:   []NodeInfo{self},
			current: append(slices.Clone(kernel), owned("10.244.2.0/24", "192.0.2.11"), owned("10.244.3.0/24", "192.0.2.12")),
			del:     []Route{owned("10.244.2.0/24", "192.0.2.11"), owned("10.244.3.0/24", "192.0.2.12")},
		},
		{
			name:    "a node's address changed: the old route goes, the new one comes",
			self:    self,
			nodes:   []NodeInfo{self, node("b", "10.244.2.0/24", "192.0.2.21")},
			current: append(slices.Clone(kernel), owned("10.244.2.0/24", "192.0.2.11")),
			add:     []Route{owned("10.244.2.0/24", "192.0.2.21")},
			del:     []Route{owned("10.244.2.0/24", "192.0.2.11")},
		},
		{
			name:    "a node without a podCIDR yet: no route",
			self:    self,
			nodes:   []NodeInfo{self, node("b", "", "192.0.2.11"), c},
			current: kernel,
			add:     []Route{owned("10.244.3.0/24", "192.0.2.12")},
		},
		{
			name:    "a node without an InternalIP: no route",
			self:    self,
			nodes:   []NodeInfo{self, node("b", "10.244.2.0/24", ""), c},
			current: kernel,
			add:     []Route{owned("10.244.3.0/24", "192.0.2.12")},
		},
		{
			name:    "this node without a podCIDR: no routes, owned ones go",
			self:    node("a", "", "192.0.2.10"),
			nodes:   []NodeInfo{node("a", "", "192.0.2.10"), b},
			current: []Route{owned("10.244.2.0/24", "192.0.2.11")},
			del:     []Route{owned("10.244.2.0/24", "192.0.2.11")},
		},
		{
			name:    "a node claiming this node's pod range: never routed",
			self:    self,
			nodes:   []NodeInfo{self, node("b", "10.244.1.0/24", "192.0.2.11"), node("c", "10.244.0.0/16", "192.0.2.12")},
			current: kernel,
		},
		{
			name:    "an owned route to this node's own range (a stale one): it goes",
			self:    self,
			nodes:   []NodeInfo{self},
			current: []Route{owned("10.244.1.0/24", "192.0.2.11"), owned("10.244.1.128/25", "192.0.2.11")},
			del:     []Route{owned("10.244.1.0/24", "192.0.2.11"), owned("10.244.1.128/25", "192.0.2.11")},
		},
		{
			name:    "a node with this node's address: no route through itself",
			self:    self,
			nodes:   []NodeInfo{self, node("b", "10.244.2.0/24", "192.0.2.10")},
			current: kernel,
		},
		{
			name:    "another node by the same name: it is this node",
			self:    self,
			nodes:   []NodeInfo{node("a", "10.244.9.0/24", "192.0.2.19")},
			current: kernel,
		},
		{
			name:    "a foreign route holds the destination: it wins, untouched",
			self:    self,
			nodes:   []NodeInfo{self, b, c},
			current: append(slices.Clone(kernel), foreign("10.244.2.0/24", "192.0.2.99")),
			add:     []Route{owned("10.244.3.0/24", "192.0.2.12")},
		},
		{
			name:    "a foreign route appears where an owned one is: the owned one goes",
			self:    self,
			nodes:   []NodeInfo{self, b},
			current: []Route{foreign("10.244.2.0/24", "192.0.2.99"), owned("10.244.2.0/24", "192.0.2.11")},
			del:     []Route{owned("10.244.2.0/24", "192.0.2.11")},
		},
		{
			name:    "a foreign route to a gone node's range: untouched",
			self:    self,
			nodes:   []NodeInfo{self},
			current: []Route{foreign("10.244.7.0/24", "192.0.2.17")},
		},
		{
			name:    "two nodes with overlapping ranges: the first by name gets the route",
			self:    self,
			nodes:   []NodeInfo{self, node("d", "10.244.2.0/24", "192.0.2.14"), b, node("e", "10.244.2.0/23", "192.0.2.15")},
			current: kernel,
			add:     []Route{owned("10.244.2.0/24", "192.0.2.11")},
		},
		{
			name:    "an IPv6 node in an IPv4 cluster: no route",
			self:    self,
			nodes:   []NodeInfo{self, node("b", "fd00:10:244:2::/64", "fd00::11")},
			current: kernel,
		},
		{
			name:    "duplicate owned routes (other metrics): both stay, a delete could hit either",
			self:    self,
			nodes:   []NodeInfo{self, b},
			current: []Route{owned("10.244.2.0/24", "192.0.2.11"), owned("10.244.2.0/24", "192.0.2.11")},
		},
		{
			name:    "IPv6: a route to each other node",
			self:    node("a", "fd00:10:244:1::/64", "fd00::10"),
			nodes:   []NodeInfo{node("a", "fd00:10:244:1::/64", "fd00::10"), node("b", "fd00:10:244:2::/64", "fd00::11")},
			current: []Route{owned("fd00:10:244:9::/64", "fd00::19")},
			add:     []Route{owned("fd00:10:244:2::/64", "fd00::11")},
			del:     []Route{owned("fd00:10:244:9::/64", "fd00::19")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			add, del := PlanRoutes(tc.self, tc.nodes, tc.current)
			if diff := cmp.Diff(tc.add, add, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("add (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.del, del, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("del (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWantedRoutesSkips(t *testing.T) {
	_, skipped := WantedRoutes(self, []NodeInfo{
		self,
		node("b", "", "192.0.2.11"),
		node("c", "10.244.3.0/24", ""),
		node("d", "10.244.1.0/25", "192.0.2.14"),
		node("e", "10.244.5.0/24", "192.0.2.10"),
		node("f", "10.244.6.0/24", "192.0.2.16"),
		node("g", "10.244.6.0/24", "192.0.2.17"),
	})
	want := []Skip{
		{Node: "b", Reason: "no spec.podCIDR yet"},
		{Node: "c", Reason: "no InternalIP of the family of its podCIDR 10.244.3.0/24"},
		{Node: "d", Reason: "podCIDR 10.244.1.0/25 overlaps this node's 10.244.1.0/24"},
		{Node: "e", Reason: "InternalIP 192.0.2.10 is this node's own"},
		{Node: "g", Reason: "podCIDR 10.244.6.0/24 overlaps that of node f"},
	}
	if diff := cmp.Diff(want, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
}

func TestNodeInfoFrom(t *testing.T) {
	mk := func(podCIDR string, addrs ...corev1.NodeAddress) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n"},
			Spec:       corev1.NodeSpec{PodCIDR: podCIDR},
			Status:     corev1.NodeStatus{Addresses: addrs},
		}
	}
	internal := func(a string) corev1.NodeAddress { return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a} }
	for _, tc := range []struct {
		name    string
		node    *corev1.Node
		want    NodeInfo
		invalid bool
	}{
		{name: "ready", node: mk("10.244.2.0/24", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n"}, internal("192.0.2.11")),
			want: node("n", "10.244.2.0/24", "192.0.2.11")},
		{name: "nothing yet", node: mk(""), want: node("n", "", "")},
		{name: "no podCIDR: the first InternalIP", node: mk("", internal("fd00::11"), internal("192.0.2.11")), want: node("n", "", "fd00::11")},
		{name: "dual-stack addresses: the podCIDR's family", node: mk("10.244.2.0/24", internal("fd00::11"), internal("192.0.2.11")),
			want: node("n", "10.244.2.0/24", "192.0.2.11")},
		{name: "an external IP is not internal", node: mk("10.244.2.0/24", corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "198.51.100.1"}),
			want: node("n", "10.244.2.0/24", "")},
		{name: "an unparsable address is passed over", node: mk("10.244.2.0/24", internal("bogus"), internal("192.0.2.11")),
			want: node("n", "10.244.2.0/24", "192.0.2.11")},
		{name: "an unparsable podCIDR", node: mk("10.244.2.0", internal("192.0.2.11")), want: node("n", "", "192.0.2.11"), invalid: true},
		{name: "a podCIDR with host bits", node: mk("10.244.2.1/24", internal("192.0.2.11")), want: node("n", "", "192.0.2.11"), invalid: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NodeInfoFrom(tc.node)
			if tc.invalid != errors.Is(err, ErrInvalid) {
				t.Errorf("error %v, want ErrInvalid: %v", err, tc.invalid)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzPlanRoutes checks PlanRoutes' promises on arbitrary worlds: it never deletes a route it does
// not own nor one that is not there, never adds a route to this node's own pod range, a route
// that is not its own or a second route to a destination, never adds where a foreign route holds
// the destination, and applying its plan reaches a fixed point.
func FuzzPlanRoutes(f *testing.F) {
	f.Add([]byte{1, 2, 10, 3, 1, 0, 2, 11, 4}, []byte{2, 11, 1, 0, 3, 2})
	f.Add([]byte{1, 1, 10, 2, 1, 1, 11, 2}, []byte{1, 10, 1, 1, 2, 0})
	f.Fuzz(func(t *testing.T, nodeBytes, routeBytes []byte) {
		// Small address spaces, so that collisions (same ranges, same addresses) are common.
		prefixOf := func(b byte) netip.Prefix {
			bits := 22 + int(b%4)
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, b >> 2 & 7, 0}), bits).Masked()
		}
		addrOf := func(b byte) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, 10 + b%6}) }
		var nodes []NodeInfo
		for i := 0; i+2 < len(nodeBytes) && len(nodes) < 12; i += 3 {
			n := NodeInfo{Name: string(rune('a' + nodeBytes[i]%8))}
			if nodeBytes[i+1]&0x80 == 0 {
				n.PodCIDR = prefixOf(nodeBytes[i+1])
			}
			if nodeBytes[i+2]&0x80 == 0 {
				n.InternalIP = addrOf(nodeBytes[i+2])
			}
			nodes = append(nodes, n)
		}
		self := NodeInfo{Name: "a", PodCIDR: prefixOf(0), InternalIP: addrOf(0)}
		if len(nodes) > 0 && nodes[0].Name == "a" {
			self = nodes[0]
		}
		var current []Route
		for i := 0; i+2 < len(routeBytes) && len(current) < 16; i += 3 {
			r := Route{Dst: prefixOf(routeBytes[i]), Via: addrOf(routeBytes[i+1]), Protocol: int(routeBytes[i+2] % 4)}
			if r.Protocol == 3 { // 0 unspec, 1 redirect, 2 kernel, or the agent's own
				r.Protocol = RouteProtocol
			}
			current = append(current, r)
		}

		add, del := PlanRoutes(self, nodes, current)
		foreignDst := map[netip.Prefix]bool{}
		for _, r := range current {
			if !r.Owned() {
				foreignDst[r.Dst] = true
			}
		}
		for _, r := range del {
			if !r.Owned() {
				t.Fatalf("deletes %v, a route it does not own", r)
			}
			if !slices.Contains(current, r) {
				t.Fatalf("deletes %v, which is not there", r)
			}
		}
		seen := map[netip.Prefix]bool{}
		for _, r := range add {
			if !r.Owned() {
				t.Fatalf("adds %v without its own protocol", r)
			}
			if self.PodCIDR.IsValid() && r.Dst.Overlaps(self.PodCIDR) {
				t.Fatalf("adds %v into its own pod range %v", r, self.PodCIDR)
			}
			if r.Via == self.InternalIP {
				t.Fatalf("adds %v through its own address", r)
			}
			if foreignDst[r.Dst] {
				t.Fatalf("adds %v where a foreign route holds the destination", r)
			}
			if seen[r.Dst] {
				t.Fatalf("adds two routes to %v", r.Dst)
			}
			seen[r.Dst] = true
		}
		// Apply the plan as the executor does (delete, then replace by destination) and plan again.
		var next []Route
		for _, r := range current {
			if !slices.Contains(del, r) && !seen[r.Dst] {
				next = append(next, r)
			}
		}
		next = append(next, add...)
		add2, del2 := PlanRoutes(self, nodes, next)
		if len(add2) > 0 || len(del2) > 0 {
			t.Fatalf("no fixed point: after the plan, add %v del %v", add2, del2)
		}
	})
}
