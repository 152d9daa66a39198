package aws

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/firewall"
)

// RoleLoadBalancer is the security group of the API load balancer, next to the node roles.
const RoleLoadBalancer = "load-balancer"

// Permission is one inbound rule of a security group: one protocol, one port range, one source.
type Permission struct {
	// Protocol is tcp, udp, icmp or icmpv6.
	Protocol string
	// FromPort and ToPort are the port range; for ICMP, the type (8 echo request, 128 for ICMPv6)
	// and the code (-1: any).
	FromPort, ToPort int32
	// Exactly one of CIDR and SourceRole is set: a source network, or the security group of another
	// role of the cluster (RoleLoadBalancer).
	CIDR       netip.Prefix
	SourceRole string
	// Description is the intent rule's reason, in the characters AWS allows.
	Description string
}

// key identifies a permission regardless of its description.
func (p Permission) key() string {
	src := p.SourceRole
	if p.CIDR.IsValid() {
		src = p.CIDR.String()
	}
	return fmt.Sprintf("%s/%d/%d/%s", p.Protocol, p.FromPort, p.ToPort, src)
}

// GroupSpec is a security group kiln keeps for a role, or for a node pool's own inbound rules: its
// inbound rules, and nothing else inbound. Outbound traffic is not filtered (AWS's default egress
// rule stays; spec.network.egress is enforced by the nodes' own firewalls, which AWS nodes do not
// get).
type GroupSpec struct {
	Role string
	// Pool is set on the group of a worker pool's extra rules (spec.nodePools[].ingress), which the
	// pool's instances carry next to the worker group.
	Pool        string
	Description string
	Ingress     []Permission
}

// Key names the group among the cluster's: its role, or "pool-NAME".
func (g GroupSpec) Key() string {
	if g.Pool != "" {
		return poolKey(g.Pool)
	}
	return g.Role
}

func poolKey(pool string) string { return "pool-" + pool }

// APIAccess is who may reach the API through the load balancer.
type APIAccess struct {
	// Port of the API on the load balancer and on the control-plane nodes.
	Port uint16
	// From are the networks that reach the load balancer: the node network and the admin ranges.
	From []netip.Prefix
}

// SecurityGroups compiles the firewall intent into one security group per node role, one per node pool
// with inbound rules of its own, and the load balancer's: each inbound intent rule becomes one
// permission per source network, and the control plane's API rule also admits the load balancer's
// group (the NLB's security group, so its health checks and forwarded connections pass). Outbound
// rules are not compiled: security groups keep AWS's open egress. It is a pure function;
// EnsureNetwork makes AWS match its result.
func SecurityGroups(intent firewall.Intent, api APIAccess) ([]GroupSpec, error) {
	if _, ok := intent.Roles[v1alpha1.RoleControlPlane]; !ok {
		return nil, fmt.Errorf("aws: firewall intent has no %s role: %w", v1alpha1.RoleControlPlane, ErrInvalidSpec)
	}
	if api.Port == 0 {
		return nil, fmt.Errorf("aws: API port is 0: %w", ErrInvalidSpec)
	}
	roles := make([]string, 0, len(intent.Roles))
	for r := range intent.Roles {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	var out []GroupSpec
	for _, role := range roles {
		g := GroupSpec{Role: role, Description: "kiln " + role + " nodes"}
		for i, r := range intent.Roles[role] {
			if r.Direction == firewall.Out {
				continue
			}
			for _, from := range r.From {
				perm, err := permission(r, from)
				if err != nil {
					return nil, fmt.Errorf("aws: firewall intent %s rule %d: %w", role, i, err)
				}
				g.Ingress = append(g.Ingress, perm)
			}
			if role == v1alpha1.RoleControlPlane && r.Proto == firewall.TCP && r.Ports == firewall.Port(api.Port) {
				g.Ingress = append(g.Ingress, Permission{Protocol: "tcp", FromPort: int32(api.Port), ToPort: int32(api.Port),
					SourceRole: RoleLoadBalancer, Description: describe("kubernetes API from the load balancer")})
			}
		}
		out = append(out, g)
	}
	pools := make([]string, 0, len(intent.Pools))
	for p := range intent.Pools {
		pools = append(pools, p)
	}
	slices.Sort(pools)
	for _, pool := range pools {
		g := GroupSpec{Role: v1alpha1.RoleWorker, Pool: pool, Description: "kiln pool " + pool + " nodes"}
		for i, r := range intent.Pools[pool] {
			if r.Direction == firewall.Out {
				continue
			}
			for _, from := range r.From {
				perm, err := permission(r, from)
				if err != nil {
					return nil, fmt.Errorf("aws: firewall intent pool %s rule %d: %w", pool, i, err)
				}
				g.Ingress = append(g.Ingress, perm)
			}
		}
		out = append(out, g)
	}
	lb := GroupSpec{Role: RoleLoadBalancer, Description: "kiln API load balancer"}
	for _, from := range api.From {
		if !from.IsValid() {
			return nil, fmt.Errorf("aws: API access from an invalid network: %w", ErrInvalidSpec)
		}
		lb.Ingress = append(lb.Ingress, Permission{Protocol: "tcp", FromPort: int32(api.Port), ToPort: int32(api.Port),
			CIDR: from.Masked(), Description: describe("kubernetes API from the node network and the admin ranges")})
	}
	return append(out, lb), nil
}

func permission(r firewall.Rule, from netip.Prefix) (Permission, error) {
	p := Permission{CIDR: from.Masked(), Description: describe(r.Why)}
	switch r.Proto {
	case firewall.TCP, firewall.UDP:
		if r.Ports.First == 0 || r.Ports.First > r.Ports.Last {
			return Permission{}, fmt.Errorf("port range %q: %w", r.Ports, ErrInvalidSpec)
		}
		p.Protocol, p.FromPort, p.ToPort = string(r.Proto), int32(r.Ports.First), int32(r.Ports.Last)
	case firewall.ICMP:
		p.Protocol, p.FromPort, p.ToPort = "icmp", 8, -1
		if from.Addr().Is6() {
			p.Protocol, p.FromPort = "icmpv6", 128
		}
	default:
		return Permission{}, fmt.Errorf("protocol %q: %w", r.Proto, ErrInvalidSpec)
	}
	return p, nil
}

// describe keeps the characters AWS allows in a rule description (a-zA-Z0-9, spaces and
// ._-:/()#,@[]+=&;{}!$*), at most 255 of them.
func describe(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(" ._-:/()#,@[]+=&;{}!$*", r):
			return r
		}
		return -1
	}, s)
	if len(s) > 255 {
		s = s[:255]
	}
	return s
}

// SubnetPlan is one subnet of the cluster's network.
type SubnetPlan struct {
	// Name is the subnet's kiln.dev/resource tag: "private-N" or "public-AZ".
	Name   string
	AZ     string
	CIDR   netip.Prefix
	Public bool
}

// PlanSubnets lays out the network: the private subnets (the spec's, and more /24s of the node
// network until every availability zone has one) spread over the zones in order, and one public /26
// per zone, taken from the top of the node network, for its NAT gateway and the load balancer.
func PlanSubnets(nodeCIDR string, private []string, azs []string) ([]SubnetPlan, error) {
	node, err := netip.ParsePrefix(nodeCIDR)
	if err != nil || !node.Addr().Is4() || node != node.Masked() {
		return nil, fmt.Errorf("aws: network.nodeCIDR %q is not an IPv4 CIDR without host bits: %w", nodeCIDR, ErrInvalidSpec)
	}
	if node.Bits() > 22 {
		return nil, fmt.Errorf("aws: network.nodeCIDR %s is smaller than a /22, too small for private and public subnets in two zones: %w", node, ErrInvalidSpec)
	}
	if len(azs) < 2 {
		return nil, fmt.Errorf("aws: provider.aws.availabilityZones has %d zone(s), want at least 2: %w", len(azs), ErrInvalidSpec)
	}
	seen := map[string]bool{}
	for i, az := range azs {
		if az == "" || seen[az] {
			return nil, fmt.Errorf("aws: provider.aws.availabilityZones[%d] %q is empty or repeated: %w", i, az, ErrInvalidSpec)
		}
		seen[az] = true
	}
	var taken []netip.Prefix
	var out []SubnetPlan
	for i, s := range private {
		p, err := netip.ParsePrefix(s)
		if err != nil || p != p.Masked() {
			return nil, fmt.Errorf("aws: network.privateSubnets[%d] %q is not a CIDR without host bits: %w", i, s, ErrInvalidSpec)
		}
		if !node.Contains(p.Addr()) || p.Bits() < node.Bits() {
			return nil, fmt.Errorf("aws: network.privateSubnets[%d] %s is not inside network.nodeCIDR %s: %w", i, p, node, ErrInvalidSpec)
		}
		if p.Bits() > 28 {
			return nil, fmt.Errorf("aws: network.privateSubnets[%d] %s is smaller than a /28, the smallest AWS subnet: %w", i, p, ErrInvalidSpec)
		}
		for _, q := range taken {
			if q.Overlaps(p) {
				return nil, fmt.Errorf("aws: network.privateSubnets[%d] %s overlaps %s: %w", i, p, q, ErrInvalidSpec)
			}
		}
		taken = append(taken, p)
	}
	// Public subnets first, from the top, so that extra private ones never take their place.
	var public []SubnetPlan
	for _, az := range azs {
		p, ok := carve(node, 26, taken, true)
		if !ok {
			return nil, fmt.Errorf("aws: network.nodeCIDR %s has no free /26 for the public subnet of %s: %w", node, az, ErrInvalidSpec)
		}
		taken = append(taken, p)
		public = append(public, SubnetPlan{Name: "public-" + az, AZ: az, CIDR: p, Public: true})
	}
	for len(private) < len(azs) {
		p, ok := carve(node, 24, taken, false)
		if !ok {
			return nil, fmt.Errorf("aws: network.nodeCIDR %s has no free /24 for a private subnet in %s: %w", node, azs[len(private)], ErrInvalidSpec)
		}
		taken = append(taken, p)
		private = append(private, p.String())
	}
	for i, s := range private {
		out = append(out, SubnetPlan{Name: fmt.Sprintf("private-%d", i), AZ: azs[i%len(azs)], CIDR: netip.MustParsePrefix(s).Masked()})
	}
	return append(out, public...), nil
}

// carve finds the first (or, fromEnd, last) block of that size in parent that overlaps nothing taken.
func carve(parent netip.Prefix, bits int, taken []netip.Prefix, fromEnd bool) (netip.Prefix, bool) {
	if bits < parent.Bits() {
		return netip.Prefix{}, false
	}
	n := 1 << (bits - parent.Bits())
	base := parent.Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	size := uint32(1) << (32 - bits)
	for i := range n {
		k := i
		if fromEnd {
			k = n - 1 - i
		}
		a := start + uint32(k)*size
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), bits)
		if !slices.ContainsFunc(taken, p.Overlaps) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// shortName is a load balancing name (at most 32 characters, letters, digits and hyphens) for the
// cluster: "kiln-CLUSTER-SUFFIX", or with a hash of the cluster when that is too long.
func shortName(cluster, suffix string) string {
	name := "kiln-" + cluster + "-" + suffix
	if len(name) <= 32 {
		return name
	}
	sum := sha256.Sum256([]byte(cluster))
	h := hex.EncodeToString(sum[:])[:8]
	keep := 32 - len("kiln--") - len(suffix) - len(h) - 1
	return "kiln-" + strings.TrimRight(cluster[:keep], "-") + "-" + h + "-" + suffix
}
