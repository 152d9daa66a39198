package firewall

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kiln-dev/kiln/api/strictyaml"
	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// newCluster returns a QEMU cluster with network n and its defaults set.
func newCluster(n v1alpha1.Network) *v1alpha1.Cluster {
	c := &v1alpha1.Cluster{
		APIVersion: v1alpha1.GroupVersion,
		Kind:       v1alpha1.KindCluster,
		Metadata:   v1alpha1.Metadata{Name: "demo"},
		Spec: v1alpha1.ClusterSpec{
			Provider:     v1alpha1.Provider{Name: v1alpha1.ProviderQEMU},
			Network:      n,
			ControlPlane: v1alpha1.ControlPlane{Count: 1, Image: "kiln.qcow2"},
			NodePools:    []v1alpha1.NodePool{{Name: "workers", Count: 2, Image: "kiln.qcow2"}},
			SSH:          v1alpha1.SSH{Generate: true},
		},
	}
	v1alpha1.SetDefaults(c)
	return c
}

func prefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

// ruleOpts compare rules by what they accept; the comments are checked by the golden rulesets.
var ruleOpts = cmp.Options{
	cmpopts.EquateComparable(netip.Prefix{}),
	cmpopts.IgnoreFields(Rule{}, "Why"),
}

func TestNewIntent(t *testing.T) {
	tcs := []struct {
		name    string
		network v1alpha1.Network
		want    Intent
	}{
		{
			name: "ipv4 with admin range, the endpoint's address inside the node network",
			network: v1alpha1.Network{
				NodeCIDR:    "10.20.0.0/16",
				APIEndpoint: v1alpha1.APIEndpoint{Address: "10.20.0.7"},
				AdminCIDRs:  []string{"203.0.113.0/24"},
			},
			want: Intent{Roles: map[string][]Rule{
				v1alpha1.RoleControlPlane: {
					{Proto: TCP, Ports: Port(22), From: prefixes("203.0.113.0/24")},
					{Proto: TCP, Ports: Port(6443), From: prefixes("10.20.0.0/16", "10.244.0.0/16")},
					{Proto: TCP, Ports: PortRange{First: 2379, Last: 2380}, From: prefixes("10.20.0.0/16")},
					{Proto: TCP, Ports: Port(10250), From: prefixes("10.20.0.0/16", "10.244.0.0/16")},
					{Proto: UDP, Ports: Port(8472), From: prefixes("10.20.0.0/16")},
					{Proto: ICMP, From: prefixes("10.20.0.0/16")},
				},
				v1alpha1.RoleWorker: {
					{Proto: TCP, Ports: Port(22), From: prefixes("203.0.113.0/24")},
					{Proto: TCP, Ports: Port(10250), From: prefixes("10.20.0.0/16", "10.244.0.0/16")},
					{Proto: UDP, Ports: Port(8472), From: prefixes("10.20.0.0/16")},
					{Proto: ICMP, From: prefixes("10.20.0.0/16")},
				},
			}},
		},
		{
			name:    "ipv4 defaults without admin ranges has no ssh rule",
			network: v1alpha1.Network{},
			want: Intent{Roles: map[string][]Rule{
				v1alpha1.RoleControlPlane: {
					{Proto: TCP, Ports: Port(6443), From: prefixes("10.0.0.0/16", "10.244.0.0/16")},
					{Proto: TCP, Ports: PortRange{First: 2379, Last: 2380}, From: prefixes("10.0.0.0/16")},
					{Proto: TCP, Ports: Port(10250), From: prefixes("10.0.0.0/16", "10.244.0.0/16")},
					{Proto: UDP, Ports: Port(8472), From: prefixes("10.0.0.0/16")},
					{Proto: ICMP, From: prefixes("10.0.0.0/16")},
				},
				v1alpha1.RoleWorker: {
					{Proto: TCP, Ports: Port(10250), From: prefixes("10.0.0.0/16", "10.244.0.0/16")},
					{Proto: UDP, Ports: Port(8472), From: prefixes("10.0.0.0/16")},
					{Proto: ICMP, From: prefixes("10.0.0.0/16")},
				},
			}},
		},
		{
			name: "ipv6 with load balancer inside the node network and api port 443",
			network: v1alpha1.Network{
				NodeCIDR:    "fd00:10::/64",
				PodCIDR:     "fd00:244::/56",
				ServiceCIDR: "fd00:96::/108",
				APIEndpoint: v1alpha1.APIEndpoint{Address: "fd00:10::5", Port: 443},
				AdminCIDRs:  []string{"fd00:99::/64", "fd00:98::/64"},
			},
			want: Intent{Roles: map[string][]Rule{
				v1alpha1.RoleControlPlane: {
					{Proto: TCP, Ports: Port(22), From: prefixes("fd00:99::/64", "fd00:98::/64")},
					{Proto: TCP, Ports: Port(443), From: prefixes("fd00:10::/64", "fd00:244::/56")},
					{Proto: TCP, Ports: PortRange{First: 2379, Last: 2380}, From: prefixes("fd00:10::/64")},
					{Proto: TCP, Ports: Port(10250), From: prefixes("fd00:10::/64", "fd00:244::/56")},
					{Proto: UDP, Ports: Port(8472), From: prefixes("fd00:10::/64")},
					{Proto: ICMP, From: prefixes("fd00:10::/64")},
				},
				v1alpha1.RoleWorker: {
					{Proto: TCP, Ports: Port(22), From: prefixes("fd00:99::/64", "fd00:98::/64")},
					{Proto: TCP, Ports: Port(10250), From: prefixes("fd00:10::/64", "fd00:244::/56")},
					{Proto: UDP, Ports: Port(8472), From: prefixes("fd00:10::/64")},
					{Proto: ICMP, From: prefixes("fd00:10::/64")},
				},
			}},
		},
		{
			name: "ipv4 cluster with admin ranges of both families, one inside another",
			network: v1alpha1.Network{
				NodeCIDR:   "10.20.0.0/16",
				AdminCIDRs: []string{"203.0.113.0/24", "2001:db8:1::/48", "203.0.113.128/25", "203.0.113.0/24"},
			},
			want: Intent{Roles: map[string][]Rule{
				v1alpha1.RoleControlPlane: {
					{Proto: TCP, Ports: Port(22), From: prefixes("203.0.113.0/24", "2001:db8:1::/48")},
					{Proto: TCP, Ports: Port(6443), From: prefixes("10.20.0.0/16", "10.244.0.0/16")},
					{Proto: TCP, Ports: PortRange{First: 2379, Last: 2380}, From: prefixes("10.20.0.0/16")},
					{Proto: TCP, Ports: Port(10250), From: prefixes("10.20.0.0/16", "10.244.0.0/16")},
					{Proto: UDP, Ports: Port(8472), From: prefixes("10.20.0.0/16")},
					{Proto: ICMP, From: prefixes("10.20.0.0/16")},
				},
				v1alpha1.RoleWorker: {
					{Proto: TCP, Ports: Port(22), From: prefixes("203.0.113.0/24", "2001:db8:1::/48")},
					{Proto: TCP, Ports: Port(10250), From: prefixes("10.20.0.0/16", "10.244.0.0/16")},
					{Proto: UDP, Ports: Port(8472), From: prefixes("10.20.0.0/16")},
					{Proto: ICMP, From: prefixes("10.20.0.0/16")},
				},
			}},
		},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(tc.network)
			for _, f := range v1alpha1.Validate(c) {
				if f.Severity == strictyaml.SeverityError {
					t.Fatalf("test spec is invalid: %s", f)
				}
			}
			got, err := NewIntent(c)
			if err != nil {
				t.Fatalf("NewIntent: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, ruleOpts); diff != "" {
				t.Errorf("NewIntent (-want +got):\n%s", diff)
			}
			for role, rules := range got.Roles {
				for i, r := range rules {
					if r.Why == "" {
						t.Errorf("%s rule %d (%s %s) has no Why", role, i, r.Proto, r.Ports)
					}
				}
			}
		})
	}
}

// With the endpoint made on the control-plane nodes, their API port is haproxy's and admits the admin
// ranges; kube-apiserver listens behind it on its own port, and keepalived's VRRP passes among the
// nodes (and out to its multicast group under restricted egress). Workers are fenced the same either
// way.
func TestNewIntentVIP(t *testing.T) {
	tcs := []struct {
		name    string
		network v1alpha1.Network
		want    []Rule
	}{
		{
			name: "ipv4 with an admin range",
			network: v1alpha1.Network{
				APIEndpoint: v1alpha1.APIEndpoint{Address: "10.0.0.5"},
				AdminCIDRs:  []string{"198.51.100.0/24"},
			},
			want: []Rule{
				{Proto: TCP, Ports: Port(22), From: prefixes("198.51.100.0/24")},
				{Proto: TCP, Ports: Port(6443), From: prefixes("10.0.0.0/16", "10.244.0.0/16", "198.51.100.0/24")},
				{Proto: TCP, Ports: Port(6444), From: prefixes("10.0.0.0/16", "10.244.0.0/16")},
				{Proto: TCP, Ports: PortRange{First: 2379, Last: 2380}, From: prefixes("10.0.0.0/16")},
				{Proto: VRRP, From: prefixes("10.0.0.0/16")},
				{Proto: TCP, Ports: Port(10250), From: prefixes("10.0.0.0/16", "10.244.0.0/16")},
				{Proto: UDP, Ports: Port(8472), From: prefixes("10.0.0.0/16")},
				{Proto: ICMP, From: prefixes("10.0.0.0/16")},
			},
		},
		{
			name: "ipv6, restricted egress, port 443",
			network: v1alpha1.Network{
				NodeCIDR:    "fd00:10::/64",
				PodCIDR:     "fd00:244::/56",
				ServiceCIDR: "fd00:96::/108",
				APIEndpoint: v1alpha1.APIEndpoint{Address: "fd00:10::5", Port: 443},
				Egress:      v1alpha1.Egress{Policy: v1alpha1.EgressRestricted},
			},
			want: []Rule{
				{Proto: TCP, Ports: Port(443), From: prefixes("fd00:10::/64", "fd00:244::/56")},
				{Proto: TCP, Ports: Port(6444), From: prefixes("fd00:10::/64", "fd00:244::/56")},
				{Proto: TCP, Ports: PortRange{First: 2379, Last: 2380}, From: prefixes("fd00:10::/64")},
				{Proto: VRRP, From: prefixes("fd00:10::/64")},
				{Proto: TCP, Ports: Port(10250), From: prefixes("fd00:10::/64", "fd00:244::/56")},
				{Proto: UDP, Ports: Port(8472), From: prefixes("fd00:10::/64")},
				{Proto: ICMP, From: prefixes("fd00:10::/64")},
				{Direction: Out, Proto: Any, To: prefixes("fd00:10::/64", "fd00:244::/56", "fd00:96::/108")},
				{Direction: Out, Proto: VRRP, To: prefixes("ff02::12/128")},
			},
		},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(tc.network)
			for _, f := range v1alpha1.Validate(c) {
				if f.Severity == strictyaml.SeverityError {
					t.Fatalf("test spec is invalid: %s", f)
				}
			}
			got, err := NewIntentFor(c, EndpointVIP)
			if err != nil {
				t.Fatalf("NewIntentFor: %v", err)
			}
			if diff := cmp.Diff(tc.want, got.Roles[v1alpha1.RoleControlPlane], ruleOpts); diff != "" {
				t.Errorf("control-plane rules (-want +got):\n%s", diff)
			}
			lb, err := NewIntent(c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(lb.Roles[v1alpha1.RoleWorker], got.Roles[v1alpha1.RoleWorker], ruleOpts); diff != "" {
				t.Errorf("worker rules differ from those for a load balancer (-lb +vip):\n%s", diff)
			}
			for _, r := range got.Roles[v1alpha1.RoleControlPlane] {
				if r.Why == "" {
					t.Errorf("rule %s %s has no Why", r.Proto, r.Ports)
				}
			}
		})
	}
}

func TestNewIntentErrors(t *testing.T) {
	tcs := []struct {
		name    string
		cluster *v1alpha1.Cluster
		// endpoint defaults to EndpointLoadBalancer.
		endpoint *Endpoint
		// want are substrings of the error, one per finding.
		want []string
	}{
		{
			name:    "no cluster",
			cluster: nil,
			want:    []string{"no cluster"},
		},
		{
			name: "defaults not set",
			cluster: &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{Network: v1alpha1.Network{
				AdminCIDRs: []string{"203.0.113.0/24"},
			}}},
			want: []string{"spec.network.nodeCIDR: empty", "spec.network.podCIDR: empty", "spec.network.apiEndpoint.port: 0 is not a port"},
		},
		{
			name: "every bad value at once",
			cluster: newCluster(v1alpha1.Network{
				NodeCIDR:    "10.20.0.1/16",
				APIEndpoint: v1alpha1.APIEndpoint{Address: "api.example.com", Port: 10250},
				AdminCIDRs:  []string{"203.0.113.0/24", "everywhere"},
			}),
			want: []string{
				`spec.network.nodeCIDR: "10.20.0.1/16" has host bits set`,
				`spec.network.adminCIDRs[1]: "everywhere" is not a CIDR`,
				`spec.network.apiEndpoint.address: "api.example.com" is not an IP address`,
				"spec.network.apiEndpoint.port: 10250 is taken",
			},
		},
		{
			name: "api port on etcd's",
			cluster: newCluster(v1alpha1.Network{
				APIEndpoint: v1alpha1.APIEndpoint{Port: 2380},
			}),
			want: []string{"spec.network.apiEndpoint.port: 2380 is taken"},
		},
		{
			name: "api port on kube-apiserver's behind haproxy",
			cluster: newCluster(v1alpha1.Network{
				APIEndpoint: v1alpha1.APIEndpoint{Port: 6444},
			}),
			endpoint: ptr(EndpointVIP),
			want:     []string{"spec.network.apiEndpoint.port: 6444 is where kube-apiserver listens behind haproxy"},
		},
		{
			name:     "unknown endpoint",
			cluster:  newCluster(v1alpha1.Network{}),
			endpoint: ptr(Endpoint(7)),
			want:     []string{"endpoint 7: neither a load balancer nor a virtual address"},
		},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			ep := EndpointLoadBalancer
			if tc.endpoint != nil {
				ep = *tc.endpoint
			}
			got, err := NewIntentFor(tc.cluster, ep)
			if err == nil {
				t.Fatalf("NewIntent = %+v, want an error", got)
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error %v does not wrap ErrInvalidSpec", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("got %d findings, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
