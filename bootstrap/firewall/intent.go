// Package firewall computes the inbound firewall of every node role from the cluster spec (the intent)
// and compiles it into the forms a target enforces: an nftables ruleset with a systemd unit that
// loads it before the network comes up (vSphere, bare metal and QEMU nodes, installed by Ignition).
//
// The intent is one pure function of the spec, NewIntent. Per role, only these connections are accepted and all
// other inbound traffic is dropped:
//
//   - SSH (tcp 22) from spec.network.adminCIDRs only; no admin range means no SSH rule at all.
//   - The Kubernetes API (tcp spec.network.apiEndpoint.port, 6443 by default) on control-plane nodes,
//     from the load balancer's address (spec.network.apiEndpoint.address, when known), the node
//     network (spec.network.nodeCIDR), where kubelets and the other control-plane nodes are, and
//     pods. Where the endpoint is a load balancer outside the nodes (EndpointLoadBalancer: AWS's NLB),
//     the API server listens on that port itself. Where it is made on the control-plane nodes
//     (EndpointVIP: vSphere, metal, QEMU), haproxy listens on it, and the admin ranges reach it too
//     (they reach the NLB on AWS); kube-apiserver then listens behind haproxy on
//     v1alpha1.APIServerPortBehindVIP (tcp 6444), open to the node network, where haproxy connects
//     from, and to pods: the kubernetes Service's endpoints are the API servers' own addresses and
//     port. keepalived's VRRP (IP protocol 112), which moves the endpoint's address between the
//     control-plane nodes, is accepted from the node network.
//   - etcd client and peer traffic (tcp 2379-2380) on control-plane nodes, from the node network.
//
// "Among control-plane nodes" is the node network: control-plane nodes are replaced over a cluster's
// life, with new addresses, and a node's ruleset is fixed when it first boots.
//   - The kubelet API (tcp 10250) on every node, from the control plane. Control-plane addresses are
//     not known when the rules are rendered (machines get their addresses as they boot), so "the
//     control plane" is the node network.
//   - The pod network between nodes: VXLAN (udp 8472) from the node network, the encapsulation of
//     flannel's default vxlan backend. A pod network that needs more is a change to this package.
//   - ICMP echo requests (ping) from the node network.
//
// Replies to connections the node opened, and ICMP errors that belong to a connection, pass as
// established or related traffic; loopback traffic always passes. The nftables form also accepts the
// link-local IPv6 traffic a node needs to keep its addresses (see Nftables).
//
// A node pool may ask for more (spec.nodePools[].ingress, e.g. a NodePort range for an outside load
// balancer): those rules are the pool's own (Intent.Pools), and validation warns about each.
//
// Outbound traffic is not filtered unless spec.network.egress.policy is restricted. Then every role
// gets outbound rules (Direction Out) that accept connections only to the node, pod and service
// networks, the API load balancer's address, and spec.network.egress.allowedCIDRs: the NAT gateway
// or proxy, resolvers and registries the operator names; with EndpointVIP, control-plane nodes also
// send VRRP advertisements to their multicast group (224.0.0.18, ff02::12). Everything else the node itself sends is
// dropped; routed pod traffic is not (that is the pod network's NetworkPolicy's job).
package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// Ports of the services the intent opens (the API port comes from the spec).
const (
	PortSSH        = 22
	PortEtcdClient = 2379
	PortEtcdPeer   = 2380
	PortVXLAN      = 8472
	PortKubelet    = 10250
)

// Proto is the protocol a rule accepts.
type Proto string

// Protocols of rules. An ICMP rule accepts echo requests (ICMPv6 echo requests from IPv6 sources).
// VRRP is IP protocol 112, which has no ports. Any, only for outbound rules, accepts every protocol
// to the rule's destinations.
const (
	TCP  Proto = "tcp"
	UDP  Proto = "udp"
	ICMP Proto = "icmp"
	VRRP Proto = "vrrp"
	Any  Proto = "any"
)

// ProtoNumberVRRP is VRRP's IP protocol number.
const ProtoNumberVRRP = 112

// VRRP's multicast groups, where keepalived sends its advertisements.
var (
	vrrpGroup4 = netip.MustParsePrefix("224.0.0.18/32")
	vrrpGroup6 = netip.MustParsePrefix("ff02::12/128")
)

// Endpoint is how the cluster's API endpoint is made, as far as the nodes' firewall is concerned.
type Endpoint int

// Ways of making the API endpoint.
const (
	// EndpointLoadBalancer: a load balancer outside the nodes (AWS's NLB) forwards the endpoint's
	// port to the same port of kube-apiserver on the control-plane nodes.
	EndpointLoadBalancer Endpoint = iota
	// EndpointVIP: the endpoint is made on the control-plane nodes themselves: keepalived holds its
	// address (VRRP among the control-plane nodes), and haproxy on each listens on its port and
	// forwards to kube-apiserver on v1alpha1.APIServerPortBehindVIP.
	EndpointVIP
)

// Direction says whether a rule accepts connections to the node or from it.
type Direction string

// Directions. The zero Direction is In.
const (
	In  Direction = ""
	Out Direction = "out"
)

// String writes the direction as "in" or "out".
func (d Direction) String() string {
	if d == Out {
		return "out"
	}
	return "in"
}

// PortRange is the destination ports First to Last, inclusive. A single port has First == Last; ICMP
// rules have the zero PortRange.
type PortRange struct {
	First, Last uint16
}

// Port is the range holding port p alone.
func Port(p uint16) PortRange { return PortRange{First: p, Last: p} }

// String writes the range as nftables and most people do: "22", "2379-2380", or "" for none.
func (r PortRange) String() string {
	switch {
	case r == PortRange{}:
		return ""
	case r.First == r.Last:
		return strconv.Itoa(int(r.First))
	default:
		return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
	}
}

// Rule accepts inbound connections of one protocol to some ports from some source networks, or, with
// Direction Out, outbound connections to some destination networks.
type Rule struct {
	Direction Direction
	Proto     Proto
	Ports     PortRange
	// From are the source networks of an inbound rule, IPv4 and IPv6 alike; an inbound rule always
	// names at least one.
	From []netip.Prefix
	// To are the destination networks of an outbound rule; an outbound rule always names at least one.
	To []netip.Prefix
	// Why says what the rule is for; it is the rule's comment in every compiled form.
	Why string
}

// Intent is the firewall of every node role: the rules that accept traffic, keyed by role
// (v1alpha1.RoleControlPlane, v1alpha1.RoleWorker). Inbound traffic that a role's rules do not accept is dropped;
// outbound traffic too, if the role has outbound rules. Pools holds the further inbound rules of the
// node pools that ask for them (spec.nodePools[].ingress), by pool name.
type Intent struct {
	Roles map[string][]Rule
	Pools map[string][]Rule
}

// Node returns the rules of a node of role in pool (empty for the control plane): the role's rules,
// then the pool's own.
func (i Intent) Node(role, pool string) []Rule {
	rules := append([]Rule(nil), i.Roles[role]...)
	if role == v1alpha1.RoleWorker {
		rules = append(rules, i.Pools[pool]...)
	}
	return rules
}

// NewIntent computes the firewall intent of the cluster c for an API endpoint made by a load balancer
// outside the nodes (EndpointLoadBalancer); see NewIntentFor.
func NewIntent(c *v1alpha1.Cluster) (Intent, error) {
	return NewIntentFor(c, EndpointLoadBalancer)
}

// NewIntentFor computes the firewall intent of the cluster c, whose defaults must have been set
// (v1alpha1.SetDefaults; v1alpha1.Decode does it), for an API endpoint made as ep says. It reports
// every problem it finds at once, each wrapping ErrInvalidSpec and naming the field.
func NewIntentFor(c *v1alpha1.Cluster, ep Endpoint) (Intent, error) {
	if c == nil {
		return Intent{}, fmt.Errorf("firewall: no cluster: %w", ErrInvalidSpec)
	}
	n := c.Spec.Network
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("firewall: spec.network.%s: %s: %w", path, fmt.Sprintf(format, args...), ErrInvalidSpec))
	}

	node, err := parsePrefix(n.NodeCIDR)
	if err != nil {
		fail("nodeCIDR", "%v", err)
	}
	pods, err := parsePrefix(n.PodCIDR)
	if err != nil {
		fail("podCIDR", "%v", err)
	}
	var admin []netip.Prefix
	for i, s := range n.AdminCIDRs {
		p, err := parsePrefix(s)
		if err != nil {
			fail(fmt.Sprintf("adminCIDRs[%d]", i), "%v", err)
			continue
		}
		admin = append(admin, p)
	}
	var lb []netip.Prefix
	if a := n.APIEndpoint.Address; a != "" {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Zone() != "" || ip.IsUnspecified() {
			fail("apiEndpoint.address", "%q is not an IP address without a zone", a)
		} else {
			ip = ip.Unmap()
			lb = append(lb, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	var services netip.Prefix
	if n.Egress.Policy == v1alpha1.EgressRestricted {
		if services, err = parsePrefix(n.ServiceCIDR); err != nil {
			fail("serviceCIDR", "%v", err)
		}
	}
	var allowed []netip.Prefix
	for i, s := range n.Egress.AllowedCIDRs {
		p, err := parsePrefix(s)
		if err != nil {
			fail(fmt.Sprintf("egress.allowedCIDRs[%d]", i), "%v", err)
			continue
		}
		allowed = append(allowed, p)
	}
	switch n.Egress.Policy {
	case "", v1alpha1.EgressOpen, v1alpha1.EgressRestricted:
	default:
		fail("egress.policy", "%q is neither %s nor %s", n.Egress.Policy, v1alpha1.EgressOpen, v1alpha1.EgressRestricted)
	}
	pools := map[string][]Rule{}
	for i, pool := range c.Spec.NodePools {
		for j, in := range pool.Ingress {
			r, err := ingressRule(pool.Name, in)
			if err != nil {
				errs = append(errs, fmt.Errorf("firewall: spec.nodePools[%d].ingress[%d]: %v: %w", i, j, err, ErrInvalidSpec))
				continue
			}
			pools[pool.Name] = append(pools[pool.Name], r)
		}
	}
	apiPort := n.APIEndpoint.Port
	switch {
	case apiPort < 1 || apiPort > 65535:
		fail("apiEndpoint.port", "%d is not a port from 1 to 65535 (are the defaults set?)", apiPort)
	case apiPort == PortSSH || apiPort == PortKubelet || (apiPort >= PortEtcdClient && apiPort <= PortEtcdPeer):
		fail("apiEndpoint.port", "%d is taken by SSH, etcd or the kubelet on control-plane nodes", apiPort)
	case ep == EndpointVIP && apiPort == v1alpha1.APIServerPortBehindVIP:
		fail("apiEndpoint.port", "%d is where kube-apiserver listens behind haproxy on control-plane nodes", apiPort)
	}
	switch ep {
	case EndpointLoadBalancer, EndpointVIP:
	default:
		errs = append(errs, fmt.Errorf("firewall: endpoint %d: neither a load balancer nor a virtual address: %w", ep, ErrInvalidSpec))
	}
	if len(errs) > 0 {
		return Intent{}, errors.Join(errs...)
	}

	nodes := []netip.Prefix{node}
	var common []Rule
	if len(admin) > 0 {
		common = append(common, Rule{
			Proto: TCP, Ports: Port(PortSSH), From: cover(admin),
			Why: "ssh from the admin ranges (spec.network.adminCIDRs)",
		})
	}
	kubelet := Rule{
		Proto: TCP, Ports: Port(PortKubelet), From: cover([]netip.Prefix{node, pods}),
		Why: "kubelet API from the control plane (the node network: control-plane addresses are not known in advance) and from pods (metrics)",
	}
	pod := Rule{
		Proto: UDP, Ports: Port(PortVXLAN), From: nodes,
		Why: "pod network: VXLAN (flannel's default backend) between nodes",
	}
	ping := Rule{
		Proto: ICMP, From: nodes,
		Why: "ping from the node network",
	}

	cp := append([]Rule(nil), common...)
	if ep == EndpointVIP {
		cp = append(cp,
			Rule{
				Proto: TCP, Ports: Port(uint16(apiPort)), From: cover(slices.Concat(lb, []netip.Prefix{node, pods}, admin)),
				Why: "kubernetes API endpoint (haproxy) from the node network, pods and the admin ranges (spec.network.adminCIDRs)",
			},
			Rule{
				Proto: TCP, Ports: Port(v1alpha1.APIServerPortBehindVIP), From: cover([]netip.Prefix{node, pods}),
				Why: "kube-apiserver behind haproxy, from haproxy (the node network) and the kubernetes Service's clients (pods)",
			},
		)
	} else {
		cp = append(cp, Rule{
			Proto: TCP, Ports: Port(uint16(apiPort)), From: cover(append(lb, node, pods)),
			Why: "kubernetes API from the load balancer, the node network and pods on this node",
		})
	}
	cp = append(cp, Rule{
		Proto: TCP, Ports: PortRange{First: PortEtcdClient, Last: PortEtcdPeer}, From: nodes,
		Why: "etcd client and peer traffic among control-plane nodes (the node network)",
	})
	if ep == EndpointVIP {
		cp = append(cp, Rule{
			Proto: VRRP, From: nodes,
			Why: "VRRP of keepalived, which moves the API endpoint's address, among control-plane nodes (the node network)",
		})
	}
	cp = append(cp, kubelet, pod, ping)
	worker := append([]Rule(nil), common...)
	worker = append(worker, kubelet, pod, ping)
	if n.Egress.Policy == v1alpha1.EgressRestricted {
		out := []Rule{{
			Direction: Out, Proto: Any, To: cover(slices.Concat(lb, []netip.Prefix{node, pods, services})),
			Why: "egress to the cluster: the node network, pods, services and the API load balancer",
		}}
		// Allowed networks that the cluster's own already hold need no line of their own.
		cluster := out[0].To
		var extra []netip.Prefix
		for _, p := range cover(slices.Concat(cluster, allowed)) {
			if !slices.Contains(cluster, p) {
				extra = append(extra, p)
			}
		}
		if len(extra) > 0 {
			out = append(out, Rule{
				Direction: Out, Proto: Any, To: extra,
				Why: "egress allowed by spec.network.egress.allowedCIDRs",
			})
		}
		cp = append(cp, out...)
		worker = append(worker, out...)
		if ep == EndpointVIP {
			group := vrrpGroup4
			if node.Addr().Is6() {
				group = vrrpGroup6
			}
			cp = append(cp, Rule{
				Direction: Out, Proto: VRRP, To: []netip.Prefix{group},
				Why: "VRRP advertisements of keepalived to the other control-plane nodes (multicast)",
			})
		}
	}
	intent := Intent{Roles: map[string][]Rule{
		v1alpha1.RoleControlPlane: cp,
		v1alpha1.RoleWorker:       worker,
	}}
	if len(pools) > 0 {
		intent.Pools = pools
	}
	return intent, nil
}

// ingressRule is the rule of a pool's extra inbound rule.
func ingressRule(pool string, in v1alpha1.IngressRule) (Rule, error) {
	r := Rule{Proto: Proto(in.Protocol)}
	if r.Proto != TCP && r.Proto != UDP {
		return Rule{}, fmt.Errorf("protocol %q is neither tcp nor udp", in.Protocol)
	}
	last := in.EndPort
	if last == 0 {
		last = in.Port
	}
	if in.Port < 1 || last < in.Port || last > 65535 {
		return Rule{}, fmt.Errorf("ports %d-%d: want 1 to 65535, port no more than endPort", in.Port, last)
	}
	r.Ports = PortRange{First: uint16(in.Port), Last: uint16(last)}
	var from []netip.Prefix
	for _, s := range in.FromCIDRs {
		p, err := parsePrefix(s)
		if err != nil {
			return Rule{}, fmt.Errorf("fromCIDRs: %v", err)
		}
		from = append(from, p)
	}
	if len(from) == 0 {
		return Rule{}, errors.New("fromCIDRs: none")
	}
	r.From = cover(from)
	r.Why = "ingress of pool " + pool + " (spec.nodePools[].ingress)"
	if in.Reason != "" {
		r.Why = in.Reason
	}
	return r, nil
}

// parsePrefix parses a CIDR, IPv4-mapped IPv6 networks as IPv4, and rejects host bits.
func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty (are the defaults set?)")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set", s)
	}
	return unmap(p), nil
}

// unmap turns an IPv4-mapped IPv6 network (::ffff:10.0.0.0/104) into its IPv4 network.
func unmap(p netip.Prefix) netip.Prefix {
	if !p.Addr().Is4In6() {
		return p
	}
	bits := p.Bits() - 96
	if bits < 0 {
		return p
	}
	return netip.PrefixFrom(p.Addr().Unmap(), bits)
}

// cover returns ps without the networks that another of ps already holds, in their order: the load
// balancer inside the node network needs no line of its own.
func cover(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for i, p := range ps {
		covered := false
		for j, q := range ps {
			if i == j {
				continue
			}
			// q holds p if q is no longer and contains p's address; of two equal ones keep the first.
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) && (q.Bits() < p.Bits() || q != p || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}
