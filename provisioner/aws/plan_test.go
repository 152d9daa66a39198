package aws

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/firewall"
)

var permOpts = cmp.Options{
	cmpopts.EquateComparable(netip.Prefix{}),
	cmpopts.IgnoreFields(Permission{}, "Description"),
	cmpopts.IgnoreFields(GroupSpec{}, "Description"),
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func tcp(port int32, from string) Permission {
	return Permission{Protocol: "tcp", FromPort: port, ToPort: port, CIDR: pfx(from)}
}

func TestSecurityGroups(t *testing.T) {
	intent, err := firewall.NewIntent(testCluster("demo"))
	if err != nil {
		t.Fatal(err)
	}
	node, pods, admin := "10.0.0.0/16", "10.244.0.0/16", "203.0.113.0/24"
	tcs := []struct {
		name   string
		intent firewall.Intent
		api    APIAccess
		want   []GroupSpec
	}{
		{
			name:   "the intent of a cluster spec",
			intent: intent,
			api:    APIAccess{Port: 6443, From: []netip.Prefix{pfx(node), pfx(admin)}},
			want: []GroupSpec{
				{Role: v1alpha1.RoleControlPlane, Ingress: []Permission{
					tcp(22, admin),
					tcp(6443, node), tcp(6443, pods),
					{Protocol: "tcp", FromPort: 6443, ToPort: 6443, SourceRole: RoleLoadBalancer},
					{Protocol: "tcp", FromPort: 2379, ToPort: 2380, CIDR: pfx(node)},
					tcp(10250, node), tcp(10250, pods),
					{Protocol: "udp", FromPort: 8472, ToPort: 8472, CIDR: pfx(node)},
					{Protocol: "icmp", FromPort: 8, ToPort: -1, CIDR: pfx(node)},
				}},
				{Role: v1alpha1.RoleWorker, Ingress: []Permission{
					tcp(22, admin),
					tcp(10250, node), tcp(10250, pods),
					{Protocol: "udp", FromPort: 8472, ToPort: 8472, CIDR: pfx(node)},
					{Protocol: "icmp", FromPort: 8, ToPort: -1, CIDR: pfx(node)},
				}},
				{Role: RoleLoadBalancer, Ingress: []Permission{tcp(6443, node), tcp(6443, admin)}},
			},
		},
		{
			name: "ipv6 sources and another API port",
			intent: firewall.Intent{Roles: map[string][]firewall.Rule{
				v1alpha1.RoleControlPlane: {
					{Proto: firewall.TCP, Ports: firewall.Port(443), From: []netip.Prefix{pfx("fd00::/64")}, Why: "api"},
					{Proto: firewall.ICMP, From: []netip.Prefix{pfx("fd00::/64"), pfx("10.1.0.0/16")}, Why: "flannel's ping"},
				},
			}},
			api: APIAccess{Port: 443, From: []netip.Prefix{pfx("2001:db8::/48")}},
			want: []GroupSpec{
				{Role: v1alpha1.RoleControlPlane, Ingress: []Permission{
					tcp(443, "fd00::/64"),
					{Protocol: "tcp", FromPort: 443, ToPort: 443, SourceRole: RoleLoadBalancer},
					{Protocol: "icmpv6", FromPort: 128, ToPort: -1, CIDR: pfx("fd00::/64")},
					{Protocol: "icmp", FromPort: 8, ToPort: -1, CIDR: pfx("10.1.0.0/16")},
				}},
				{Role: RoleLoadBalancer, Ingress: []Permission{tcp(443, "2001:db8::/48")}},
			},
		},
		{
			name: "a pool's own rules get a group of their own; outbound rules stay with the nodes' firewalls",
			intent: firewall.Intent{
				Roles: map[string][]firewall.Rule{
					v1alpha1.RoleControlPlane: {
						{Proto: firewall.TCP, Ports: firewall.Port(22), From: []netip.Prefix{pfx(admin)}},
						{Direction: firewall.Out, Proto: firewall.Any, To: []netip.Prefix{pfx(node)}},
					},
					v1alpha1.RoleWorker: {{Direction: firewall.Out, Proto: firewall.Any, To: []netip.Prefix{pfx(node)}}},
				},
				Pools: map[string][]firewall.Rule{
					"edge": {{Proto: firewall.TCP, Ports: firewall.PortRange{First: 30000, Last: 32767}, From: []netip.Prefix{pfx("0.0.0.0/0")}}},
					"gpu":  {{Proto: firewall.UDP, Ports: firewall.Port(4789), From: []netip.Prefix{pfx(node), pfx(pods)}}},
				},
			},
			api: APIAccess{Port: 6443, From: []netip.Prefix{pfx(node)}},
			want: []GroupSpec{
				{Role: v1alpha1.RoleControlPlane, Ingress: []Permission{tcp(22, admin)}},
				{Role: v1alpha1.RoleWorker},
				{Role: v1alpha1.RoleWorker, Pool: "edge", Ingress: []Permission{{Protocol: "tcp", FromPort: 30000, ToPort: 32767, CIDR: pfx("0.0.0.0/0")}}},
				{Role: v1alpha1.RoleWorker, Pool: "gpu", Ingress: []Permission{
					{Protocol: "udp", FromPort: 4789, ToPort: 4789, CIDR: pfx(node)},
					{Protocol: "udp", FromPort: 4789, ToPort: 4789, CIDR: pfx(pods)},
				}},
				{Role: RoleLoadBalancer, Ingress: []Permission{tcp(6443, node)}},
			},
		},
		{
			name: "no load balancer sources: the load balancer accepts nothing",
			intent: firewall.Intent{Roles: map[string][]firewall.Rule{
				v1alpha1.RoleControlPlane: {{Proto: firewall.TCP, Ports: firewall.Port(22), From: []netip.Prefix{pfx(admin)}}},
			}},
			api: APIAccess{Port: 6443},
			want: []GroupSpec{
				{Role: v1alpha1.RoleControlPlane, Ingress: []Permission{tcp(22, admin)}},
				{Role: RoleLoadBalancer},
			},
		},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SecurityGroups(tc.intent, tc.api)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, permOpts); d != "" {
				t.Errorf("SecurityGroups (-want +got):\n%s", d)
			}
			for _, g := range got {
				for _, p := range g.Ingress {
					if p.Description != describe(p.Description) || strings.Contains(p.Description, "'") {
						t.Errorf("%s: description %q has characters AWS refuses", g.Role, p.Description)
					}
				}
			}
		})
	}
}

func TestSecurityGroupsErrors(t *testing.T) {
	cp := func(rules ...firewall.Rule) firewall.Intent {
		return firewall.Intent{Roles: map[string][]firewall.Rule{v1alpha1.RoleControlPlane: rules}}
	}
	tcs := []struct {
		name   string
		intent firewall.Intent
		api    APIAccess
		want   string
	}{
		{"no control plane", firewall.Intent{Roles: map[string][]firewall.Rule{v1alpha1.RoleWorker: nil}}, APIAccess{Port: 6443}, "no control-plane role"},
		{"no API port", cp(), APIAccess{}, "API port is 0"},
		{"unknown protocol", cp(firewall.Rule{Proto: "sctp", Ports: firewall.Port(9), From: []netip.Prefix{pfx("10.0.0.0/8")}}), APIAccess{Port: 6443}, `control-plane rule 0: protocol "sctp"`},
		{"empty port range", cp(firewall.Rule{Proto: firewall.TCP, From: []netip.Prefix{pfx("10.0.0.0/8")}}), APIAccess{Port: 6443}, "control-plane rule 0: port range"},
		{"invalid API source", cp(), APIAccess{Port: 6443, From: []netip.Prefix{{}}}, "invalid network"},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SecurityGroups(tc.intent, tc.api)
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidSpec naming %q", err, tc.want)
			}
		})
	}
}

func TestPlanSubnets(t *testing.T) {
	tcs := []struct {
		name    string
		node    string
		private []string
		azs     []string
		want    []SubnetPlan
	}{
		{
			name: "one given private subnet, two zones: a second /24 is added",
			node: "10.0.0.0/16", private: []string{"10.0.0.0/24"}, azs: []string{"a1", "b1"},
			want: []SubnetPlan{
				{Name: "private-0", AZ: "a1", CIDR: pfx("10.0.0.0/24")},
				{Name: "private-1", AZ: "b1", CIDR: pfx("10.0.1.0/24")},
				{Name: "public-a1", AZ: "a1", CIDR: pfx("10.0.255.192/26"), Public: true},
				{Name: "public-b1", AZ: "b1", CIDR: pfx("10.0.255.128/26"), Public: true},
			},
		},
		{
			name: "more private subnets than zones spread round-robin",
			node: "10.20.0.0/16", private: []string{"10.20.0.0/20", "10.20.16.0/20", "10.20.32.0/20"}, azs: []string{"a1", "b1"},
			want: []SubnetPlan{
				{Name: "private-0", AZ: "a1", CIDR: pfx("10.20.0.0/20")},
				{Name: "private-1", AZ: "b1", CIDR: pfx("10.20.16.0/20")},
				{Name: "private-2", AZ: "a1", CIDR: pfx("10.20.32.0/20")},
				{Name: "public-a1", AZ: "a1", CIDR: pfx("10.20.255.192/26"), Public: true},
				{Name: "public-b1", AZ: "b1", CIDR: pfx("10.20.255.128/26"), Public: true},
			},
		},
		{
			name: "no private subnets given, and a given one at the top is skipped by public ones",
			node: "10.1.0.0/22", private: []string{"10.1.3.0/24"}, azs: []string{"a1", "b1", "c1"},
			want: []SubnetPlan{
				{Name: "private-0", AZ: "a1", CIDR: pfx("10.1.3.0/24")},
				{Name: "private-1", AZ: "b1", CIDR: pfx("10.1.0.0/24")},
				{Name: "private-2", AZ: "c1", CIDR: pfx("10.1.1.0/24")},
				{Name: "public-a1", AZ: "a1", CIDR: pfx("10.1.2.192/26"), Public: true},
				{Name: "public-b1", AZ: "b1", CIDR: pfx("10.1.2.128/26"), Public: true},
				{Name: "public-c1", AZ: "c1", CIDR: pfx("10.1.2.64/26"), Public: true},
			},
		},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlanSubnets(tc.node, tc.private, tc.azs)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Prefix{})); d != "" {
				t.Errorf("PlanSubnets (-want +got):\n%s", d)
			}
		})
	}
}

func TestPlanSubnetsErrors(t *testing.T) {
	two := []string{"a1", "b1"}
	tcs := []struct {
		name    string
		node    string
		private []string
		azs     []string
		want    string
	}{
		{"one zone", "10.0.0.0/16", nil, []string{"a1"}, "availabilityZones has 1 zone(s)"},
		{"repeated zone", "10.0.0.0/16", nil, []string{"a1", "a1"}, "availabilityZones[1]"},
		{"bad node CIDR", "10.0.0.1/16", nil, two, "network.nodeCIDR"},
		{"ipv6 node CIDR", "fd00::/48", nil, two, "network.nodeCIDR"},
		{"node CIDR too small", "10.0.0.0/24", nil, two, "smaller than a /22"},
		{"private subnet outside", "10.0.0.0/16", []string{"10.1.0.0/24"}, two, "privateSubnets[0] 10.1.0.0/24 is not inside"},
		{"private subnets overlap", "10.0.0.0/16", []string{"10.0.0.0/20", "10.0.1.0/24"}, two, "privateSubnets[1] 10.0.1.0/24 overlaps"},
		{"private subnet too small", "10.0.0.0/16", []string{"10.0.0.0/29"}, two, "privateSubnets[0]"},
		{"no room for public subnets", "10.0.0.0/22", []string{"10.0.0.0/22"}, two, "no free /26"},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PlanSubnets(tc.node, tc.private, tc.azs)
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidSpec naming %q", err, tc.want)
			}
		})
	}
}

func TestShortName(t *testing.T) {
	for _, c := range []string{"demo", "a-very-long-cluster-name-that-goes-on-and-on", "x23456789012345678901234567"} {
		n := shortName(c, "api")
		if len(n) > 32 || !strings.HasPrefix(n, "kiln-") || !strings.HasSuffix(n, "-api") || strings.Contains(n, "--") {
			t.Errorf("shortName(%q) = %q, want kiln-...-api of at most 32 characters", c, n)
		}
	}
	if a, b := shortName("a-very-long-cluster-name-that-goes-on-and-on", "api"), shortName("a-very-long-cluster-name-that-goes-on-and-off", "api"); a == b {
		t.Errorf("two long cluster names share the load balancer name %q", a)
	}
}

func TestOptionsFor(t *testing.T) {
	c := testCluster("demo")
	c.Spec.Provider.AWS.VPCID = "vpc-0a1b2c3d4e5f60718"
	c.Spec.Provider.AWS.InstanceProfile = "kiln-node"
	got, err := OptionsFor(c)
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Region: "us-east-1", AvailabilityZones: testAZs, VPCID: "vpc-0a1b2c3d4e5f60718", InstanceType: "m6i.large",
		InstanceProfile: "kiln-node", AdminCIDRs: []string{"203.0.113.0/24"}, PresignExpiry: v1alpha1.DefaultEnrollmentTTL}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("OptionsFor (-want +got):\n%s", d)
	}
	c.Spec.Provider = testCluster("demo").Spec.Provider
	c.Spec.Provider.AWS = nil
	if _, err := OptionsFor(c); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("OptionsFor without an aws block: %v", err)
	}
}
