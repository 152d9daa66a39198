package podnet

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRouteTableInNetns applies a route plan with the netlink executor in a network namespace and
// reads the routes back with iproute2: routes to the other nodes' pod ranges appear through their
// InternalIPs on the interface holding this node's InternalIP, the agent's stale route goes, and
// routes of other protocols stay as they were, even one to a node's pod range.
func TestRouteTableInNetns(t *testing.T) {
	requireNetAdmin(t)
	// Two node namespaces on a bridge in a third: the nodes' shared L2 private network.
	lan, _ := newNetns(t, "lan")
	a, ha := newNetns(t, "a")
	run(t, "ip", "-n", lan, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", lan, "link", "set", "br0", "up")
	// An interface that does not hold the InternalIP.
	run(t, "ip", "-n", a, "link", "add", "other0", "type", "veth", "peer", "name", "other1")
	run(t, "ip", "-n", a, "addr", "add", "198.51.100.10/24", "dev", "other0")
	run(t, "ip", "-n", a, "link", "set", "other0", "up")
	run(t, "ip", "-n", a, "link", "set", "other1", "up")
	run(t, "ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "a0", "netns", lan)
	run(t, "ip", "-n", lan, "link", "set", "a0", "master", "br0", "up")
	run(t, "ip", "-n", a, "addr", "add", "192.0.2.10/24", "dev", "eth0")
	run(t, "ip", "-n", a, "link", "set", "eth0", "up")
	// What the node had before the agent: a static route into a range a Node claims, and a route
	// the agent made for a Node that is gone since.
	run(t, "ip", "-n", a, "route", "add", "10.244.9.0/24", "via", "192.0.2.99", "proto", "static")
	run(t, "ip", "-n", a, "route", "add", "10.244.7.0/24", "via", "192.0.2.17", "proto", "107")

	rt := NewRouteTable(ha)
	self := NodeInfo{Name: "a", PodCIDR: pfx("10.244.1.0/24"), InternalIP: addr("192.0.2.10")}
	nodes := []NodeInfo{
		self,
		{Name: "b", PodCIDR: pfx("10.244.2.0/24"), InternalIP: addr("192.0.2.11")},
		{Name: "c", PodCIDR: pfx("10.244.3.0/24"), InternalIP: addr("192.0.2.12")},
		{Name: "d", PodCIDR: pfx("10.244.9.0/24"), InternalIP: addr("192.0.2.13")},
	}
	link, err := rt.Interface("", self.InternalIP)
	if err != nil {
		t.Fatal(err)
	}
	if named, err := rt.Interface("eth0", netip.Addr{}); err != nil || named != link {
		t.Errorf("Interface(eth0) = %d, %v; want %d (the one holding 192.0.2.10)", named, err, link)
	}
	if _, err := rt.Interface("", addr("192.0.2.200")); err == nil || !strings.Contains(err.Error(), "192.0.2.200") {
		t.Errorf("no interface holds 192.0.2.200: got %v, want an error naming it", err)
	}

	current, err := rt.List(self.PodCIDR.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(current, Route{Dst: pfx("10.244.7.0/24"), Via: addr("192.0.2.17"), Protocol: RouteProtocol}) ||
		!slices.Contains(current, Route{Dst: pfx("10.244.9.0/24"), Via: addr("192.0.2.99"), Protocol: 4}) {
		t.Fatalf("List does not show the routes made with ip route: %v", current)
	}
	add, del := PlanRoutes(self, nodes, current)
	if err := rt.Apply(link, add, del); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"10.244.2.0/24 via 192.0.2.11 dev eth0 proto 107",
		"10.244.3.0/24 via 192.0.2.12 dev eth0 proto 107",
		"10.244.9.0/24 via 192.0.2.99 dev eth0 proto static",
		"192.0.2.0/24 dev eth0 proto kernel",
		"198.51.100.0/24 dev other0 proto kernel",
	}
	got := routesIn(t, a)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("routes after the plan (-want +got):\n%s", diff)
	}

	// Applied, the plan is empty; applying an empty plan changes nothing.
	current, err = rt.List(self.PodCIDR.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if add, del := PlanRoutes(self, nodes, current); len(add)+len(del) > 0 {
		t.Errorf("a second plan: add %v del %v, want nothing", add, del)
	}

	// Node c is gone and b has a new address: c's route goes, b's changes, d's static route stays.
	nodes = []NodeInfo{self, {Name: "b", PodCIDR: pfx("10.244.2.0/24"), InternalIP: addr("192.0.2.21")}, nodes[3]}
	add, del = PlanRoutes(self, nodes, current)
	if err := rt.Apply(link, add, del); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"10.244.2.0/24 via 192.0.2.21 dev eth0 proto 107",
		"10.244.9.0/24 via 192.0.2.99 dev eth0 proto static",
		"192.0.2.0/24 dev eth0 proto kernel",
		"198.51.100.0/24 dev other0 proto kernel",
	}
	got = routesIn(t, a)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("routes after node c went (-want +got):\n%s", diff)
	}

	// A gateway that is not on the link fails, naming the route; the rest of the plan is applied.
	err = rt.Apply(link, []Route{{Dst: pfx("10.244.5.0/24"), Via: addr("203.0.113.5"), Protocol: RouteProtocol},
		{Dst: pfx("10.244.6.0/24"), Via: addr("192.0.2.16"), Protocol: RouteProtocol}}, nil)
	if err == nil || !strings.Contains(err.Error(), "10.244.5.0/24 via 203.0.113.5") {
		t.Errorf("an off-link gateway: got %v, want an error naming the route", err)
	}
	if got := routesIn(t, a); !slices.Contains(got, "10.244.6.0/24 via 192.0.2.16 dev eth0 proto 107") {
		t.Errorf("the route after the failed one was not added: %v", got)
	}
}

// TestMasqueradeInNetns loads the masquerading into a network namespace with nft, twice (the second
// load replaces the table whole), and reads it back.
func TestMasqueradeInNetns(t *testing.T) {
	requireNetAdmin(t)
	ns, _ := newNetns(t, "nft")
	nft := Nft{Command: []string{"ip", "netns", "exec", ns, "nft"}}
	for _, pod := range []string{"10.244.1.0/24", "10.244.2.0/24"} {
		rules, err := Masquerade(pfx(pod), pfx("10.244.0.0/16"))
		if err != nil {
			t.Fatal(err)
		}
		if err := nft.Load(t.Context(), rules); err != nil {
			t.Fatal(err)
		}
	}
	got := run(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", NftTable)
	for _, want := range []string{
		"type nat hook postrouting priority srcnat; policy accept;",
		"ip saddr 10.244.2.0/24 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the loaded table lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "10.244.1.0/24") {
		t.Errorf("the first load's rule survived the second:\n%s", got)
	}
	if err := nft.Load(t.Context(), []byte("table inet kiln_podnet { chain x { bogus } }")); err == nil ||
		!strings.Contains(err.Error(), "bogus") {
		t.Errorf("a bad ruleset: got %v, want nft's message", err)
	}
}
