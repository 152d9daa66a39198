package firewall

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

func TestEgressAndPools(t *testing.T) {
	outRules := func(rules []Rule) []Rule {
		var out []Rule
		for _, r := range rules {
			if r.Direction == Out {
				out = append(out, r)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		egress v1alpha1.Egress
		want   []Rule
	}{
		{name: "empty is open"},
		{name: "open", egress: v1alpha1.Egress{Policy: v1alpha1.EgressOpen, AllowedCIDRs: []string{"192.0.2.53/32"}}},
		{
			name:   "restricted: the cluster's networks and the load balancer",
			egress: v1alpha1.Egress{Policy: v1alpha1.EgressRestricted},
			want: []Rule{{Direction: Out, Proto: Any, To: prefixes("198.51.100.10/32", "10.0.0.0/16", "10.244.0.0/16", "10.96.0.0/12"),
				Why: "egress to the cluster: the node network, pods, services and the API load balancer"}},
		},
		{
			name:   "restricted with allowed networks, one of them inside the node network",
			egress: v1alpha1.Egress{Policy: v1alpha1.EgressRestricted, AllowedCIDRs: []string{"10.0.0.1/32", "192.0.2.0/24", "2001:db8::/32"}},
			want: []Rule{
				{Direction: Out, Proto: Any, To: prefixes("198.51.100.10/32", "10.0.0.0/16", "10.244.0.0/16", "10.96.0.0/12"),
					Why: "egress to the cluster: the node network, pods, services and the API load balancer"},
				{Direction: Out, Proto: Any, To: prefixes("192.0.2.0/24", "2001:db8::/32"), Why: "egress allowed by spec.network.egress.allowedCIDRs"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(v1alpha1.Network{APIEndpoint: v1alpha1.APIEndpoint{Address: "198.51.100.10"}, Egress: tc.egress})
			intent, err := NewIntent(c)
			if err != nil {
				t.Fatal(err)
			}
			for _, role := range []string{v1alpha1.RoleControlPlane, v1alpha1.RoleWorker} {
				if diff := cmp.Diff(tc.want, outRules(intent.Roles[role]), ruleOpts); diff != "" {
					t.Errorf("%s outbound rules (-want +got):\n%s", role, diff)
				}
				rs, err := Nftables(intent.Roles[role], role)
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.Contains(string(rs), "chain output"); got != (len(tc.want) > 0) {
					t.Errorf("%s ruleset has an output chain: %v, want %v", role, got, len(tc.want) > 0)
				}
			}
		})
	}
}

func TestPoolIngress(t *testing.T) {
	c := newCluster(v1alpha1.Network{})
	c.Spec.NodePools = append(c.Spec.NodePools, v1alpha1.NodePool{Name: "edge", Count: 1, Image: "kiln.qcow2",
		Ingress: []v1alpha1.IngressRule{
			{Protocol: "tcp", Port: 30000, EndPort: 32767, FromCIDRs: []string{"0.0.0.0/0"}, Reason: "NodePorts"},
			{Protocol: "udp", Port: 51820, FromCIDRs: []string{"192.0.2.0/24", "192.0.2.7/32"}},
		}})
	intent, err := NewIntent(c)
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Proto: TCP, Ports: PortRange{First: 30000, Last: 32767}, From: prefixes("0.0.0.0/0"), Why: "NodePorts"},
		{Proto: UDP, Ports: Port(51820), From: prefixes("192.0.2.0/24"), Why: "ingress of pool edge (spec.nodePools[].ingress)"},
	}
	if diff := cmp.Diff(map[string][]Rule{"edge": want}, intent.Pools, ruleOpts); diff != "" {
		t.Errorf("pools (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(append(intent.Roles[v1alpha1.RoleWorker], want...), intent.Node(v1alpha1.RoleWorker, "edge"), ruleOpts); diff != "" {
		t.Errorf("Node(worker, edge) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(intent.Roles[v1alpha1.RoleWorker], intent.Node(v1alpha1.RoleWorker, "workers"), ruleOpts); diff != "" {
		t.Errorf("Node(worker, workers) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(intent.Roles[v1alpha1.RoleControlPlane], intent.Node(v1alpha1.RoleControlPlane, ""), ruleOpts); diff != "" {
		t.Errorf("Node(control-plane) (-want +got):\n%s", diff)
	}
}

func TestEgressAndPoolErrors(t *testing.T) {
	c := newCluster(v1alpha1.Network{Egress: v1alpha1.Egress{Policy: "closed", AllowedCIDRs: []string{"10.0.0.1/8"}}})
	c.Spec.NodePools[0].Ingress = []v1alpha1.IngressRule{{Protocol: "sctp", Port: 1, FromCIDRs: []string{"0.0.0.0/0"}}}
	_, err := NewIntent(c)
	if !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("got %v, want ErrInvalidSpec", err)
	}
	for _, want := range []string{"spec.network.egress.allowedCIDRs[0]", "spec.network.egress.policy", "spec.nodePools[0].ingress[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s:\n%v", want, err)
		}
	}
	if _, err := Nftables([]Rule{{Proto: Any, From: prefixes("10.0.0.0/8"), Why: "x"}}, "worker"); !errors.Is(err, ErrInvalidRule) {
		t.Errorf("an inbound rule of any protocol: got %v, want ErrInvalidRule", err)
	}
	if _, err := Nftables([]Rule{{Direction: Out, Proto: Any, Why: "x"}}, "worker"); err == nil || !strings.Contains(err.Error(), "no destination") {
		t.Errorf("an outbound rule without destinations: got %v", err)
	}
}
