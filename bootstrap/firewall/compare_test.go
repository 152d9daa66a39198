package firewall

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// The live-*.json files are `nft -j list ruleset` output recorded from a network namespace that had
// loaded the named golden ruleset (nftables 1.0.6, Debian 12); live-ipv4-worker-drifted.json had then
// been changed by hand with nft: a rule accepting tcp 8080 from anywhere added, the IPv4 SSH rule
// deleted, the input policy set to accept, and another table added.
func TestCompare(t *testing.T) {
	intent := func(spec, role string) []Rule {
		t.Helper()
		c := decodeFixture(t, spec)
		i, err := NewIntent(c)
		if err != nil {
			t.Fatal(err)
		}
		pool := ""
		if role == v1alpha1.RoleWorker {
			pool = c.Spec.NodePools[0].Name
		}
		return i.Node(role, pool)
	}
	for _, tc := range []struct {
		name, live string
		rules      []Rule
		want       Comparison
	}{
		{
			name:  "restricted control plane, as loaded",
			live:  "live-restricted-control-plane.json",
			rules: intent("restricted", v1alpha1.RoleControlPlane),
			want:  Comparison{Rules: 20},
		},
		{
			// nft lists VRRP by its /etc/protocols name; the intent's rule names protocol 112.
			name: "restricted control plane behind a virtual address, as loaded",
			live: "live-restricted-vip-control-plane.json",
			rules: func() []Rule {
				i, err := NewIntentFor(decodeFixture(t, "restricted"), EndpointVIP)
				if err != nil {
					t.Fatal(err)
				}
				return i.Roles[v1alpha1.RoleControlPlane]
			}(),
			want: Comparison{Rules: 23},
		},
		{
			name:  "restricted control plane behind a virtual address, compared with the intent for a load balancer",
			live:  "live-restricted-vip-control-plane.json",
			rules: intent("restricted", v1alpha1.RoleControlPlane),
			want: Comparison{Rules: 23, Differences: []Difference{
				{Kind: Extra, Chain: "input", Rule: "ip saddr 10.30.0.0/16 meta l4proto 112 accept", Why: "VRRP of keepalived, which moves the API endpoint's address, among control-plane nodes (the node network)"},
				{Kind: Extra, Chain: "input", Rule: "ip saddr {10.244.0.0/16, 10.30.0.0/16, 203.0.113.0/24} tcp dport 6443 accept", Why: "kubernetes API endpoint (haproxy) from the node network, pods and the admin ranges (spec.network.adminCIDRs)"},
				{Kind: Extra, Chain: "input", Rule: "ip saddr {10.244.0.0/16, 10.30.0.0/16} tcp dport 6444 accept", Why: "kube-apiserver behind haproxy, from haproxy (the node network) and the kubernetes Service's clients (pods)"},
				{Kind: Missing, Chain: "input", Rule: "ip saddr {10.244.0.0/16, 10.30.0.0/16} tcp dport 6443 accept", Why: "kubernetes API from the load balancer, the node network and pods on this node"},
				{Kind: Extra, Chain: "output", Rule: "ip daddr 224.0.0.18/32 meta l4proto 112 accept", Why: "VRRP advertisements of keepalived to the other control-plane nodes (multicast)"},
			}},
		},
		{
			name:  "ipv4 worker, as loaded",
			live:  "live-ipv4-worker.json",
			rules: intent("ipv4", v1alpha1.RoleWorker),
			want:  Comparison{Rules: 10},
		},
		{
			name:  "ipv4 worker, drifted",
			live:  "live-ipv4-worker-drifted.json",
			rules: intent("ipv4", v1alpha1.RoleWorker),
			want: Comparison{
				Rules: 10,
				Differences: []Difference{
					{Kind: Changed, Chain: "input", Rule: "chain input (type filter hook input priority 0 policy accept), want type filter hook input priority 0 policy drop"},
					{Kind: Extra, Chain: "input", Rule: "tcp dport 8080 accept", Why: "debug server"},
					{Kind: Missing, Chain: "input", Rule: "ip saddr {198.51.100.7/32, 203.0.113.0/24} tcp dport 22 accept", Why: "ssh from the admin ranges (spec.network.adminCIDRs)"},
				},
				OtherTables: []string{"ip other"},
			},
		},
		{
			name:  "no kiln table",
			live:  "live-empty.json",
			rules: intent("ipv4", v1alpha1.RoleWorker),
			want:  Comparison{Differences: []Difference{{Kind: Missing, Rule: "table inet kiln_filter: the node has no kiln firewall"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live, err := os.ReadFile(filepath.Join("testdata", tc.live))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Compare(tc.rules, live)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Compare (-want +got):\n%s", diff)
			}
		})
	}

	// The ipv4 worker's ruleset, from before the spec restricted egress: the output chain is missing.
	c := decodeFixture(t, "ipv4")
	c.Spec.Network.Egress.Policy = "restricted"
	i, err := NewIntent(c)
	if err != nil {
		t.Fatal(err)
	}
	live, err := os.ReadFile(filepath.Join("testdata", "live-ipv4-worker.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Compare(i.Roles[v1alpha1.RoleWorker], live)
	if err != nil {
		t.Fatal(err)
	}
	want := Comparison{Rules: 10, Differences: []Difference{{Kind: Missing, Chain: "output", Rule: "chain output"}}}
	for _, d := range Canonical(i.Roles[v1alpha1.RoleWorker]) {
		if d.Chain == "output" {
			d.Kind = Missing
			want.Differences = append(want.Differences, d)
		}
	}
	if len(want.Differences) != 8 {
		t.Fatalf("%d outbound differences, want the chain, its 6 fixed rules and the cluster's", len(want.Differences))
	}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b Difference) bool { return a.Rule < b.Rule })); diff != "" {
		t.Errorf("Compare after egress was restricted (-want +got):\n%s", diff)
	}

	if _, err := Compare(nil, []byte("table inet kiln_filter {")); err == nil {
		t.Error("Compare accepted nft's text output")
	}
}
