package v1alpha1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kiln-dev/kiln/api/strictyaml"
)

// TestFirewallFields covers spec.network.egress and spec.nodePools[].ingress: the choices that open or
// close a node beyond kiln's firewall intent.
func TestFirewallFields(t *testing.T) {
	pool := "  nodePools:\n" +
		"    - name: edge\n" +
		"      count: 1\n" +
		"      image: kiln.qcow2\n" +
		"      ingress:\n"
	tests := []struct {
		name string
		doc  string
		want []strictyaml.Finding
	}{
		{
			name: "restricted egress with an allowed range and the load balancer's address",
			doc: minimal + "  network:\n    apiEndpoint: {address: 10.0.0.7}\n" +
				"    egress:\n      policy: restricted\n      allowedCIDRs: [192.0.2.53/32]\n",
		},
		{
			name: "open egress by name",
			doc:  minimal + "  network:\n    egress: {policy: open}\n",
		},
		{
			name: "unknown policy",
			doc:  minimal + "  network:\n    egress: {policy: closed}\n",
			want: []strictyaml.Finding{errAt("spec.network.egress.policy", 13, 22, `unknown egress policy "closed", want open or restricted`)},
		},
		{
			name: "allowed ranges of an open policy are ignored",
			doc:  minimal + "  network:\n    egress:\n      allowedCIDRs: [192.0.2.53/32]\n",
			want: []strictyaml.Finding{warnAt("spec.network.egress.allowedCIDRs", 14, 21, "ignored: the egress policy is open (set policy: restricted to limit egress to these)")},
		},
		{
			name: "restricted, everything allowed, a bad range",
			doc: minimal + "  network:\n    egress:\n      policy: restricted\n" +
				"      allowedCIDRs: [0.0.0.0/0, 10.1.2.3/8]\n",
			want: []strictyaml.Finding{
				warnAt("spec.network.egress.allowedCIDRs[0]", 15, 22, "0.0.0.0/0 allows every destination: restricted egress is then as open as open"),
				errAt("spec.network.egress.allowedCIDRs[1]", 15, 33, `"10.1.2.3/8" has host bits set: the network is 10.0.0.0/8`),
			},
		},
		{
			name: "restricted egress is not enforced on aws",
			doc: strings.Replace(minimal, qemu, "  provider:\n    name: aws\n    aws: {region: eu-west-1}\n", 1) +
				"  network:\n    egress: {policy: restricted}\n",
			want: []strictyaml.Finding{warnAt("spec.network.egress.policy", 14, 22, "not enforced on aws: nodes there have no node firewall, and the security groups leave egress to the NAT gateway")},
		},
		{
			name: "a NodePort range from anywhere is a warning",
			doc: minimal + pool +
				"        - {protocol: tcp, port: 30000, endPort: 32767, fromCIDRs: [0.0.0.0/0], reason: public services}\n",
			want: []strictyaml.Finding{warnAt("spec.nodePools[0].ingress[0]", 17, 11, "opens tcp 30000-32767 on the pool's nodes from anywhere, beyond kiln's firewall intent")},
		},
		{
			name: "one port from a load balancer is a warning too",
			doc: minimal + pool +
				"        - {protocol: udp, port: 4789, fromCIDRs: [10.0.5.0/24, 10.0.6.0/24]}\n",
			want: []strictyaml.Finding{warnAt("spec.nodePools[0].ingress[0]", 17, 11, "opens udp 4789 on the pool's nodes from 10.0.5.0/24, 10.0.6.0/24, beyond kiln's firewall intent")},
		},
		{
			name: "every field wrong",
			doc: minimal + pool +
				"        - {protocol: sctp, port: 0, endPort: 70000, fromCIDRs: [], reason: \"say \\\"hi\\\"\"}\n" +
				"        - {port: 80, endPort: 79, fromCIDRs: [nowhere]}\n",
			want: []strictyaml.Finding{
				errAt("spec.nodePools[0].ingress[0].protocol", 17, 22, `unknown protocol "sctp", want tcp or udp`),
				errAt("spec.nodePools[0].ingress[0].port", 17, 34, "must be a port from 1 to 65535, got 0"),
				errAt("spec.nodePools[0].ingress[0].endPort", 17, 46, "must be from port (0) to 65535, got 70000"),
				errAt("spec.nodePools[0].ingress[0].fromCIDRs", 17, 64, "required: the networks that may connect (0.0.0.0/0 for anywhere)"),
				errAt("spec.nodePools[0].ingress[0].reason", 17, 76, "at most 96 characters, without quotes, backslashes or control characters (it becomes a firewall comment)"),
				errAt("spec.nodePools[0].ingress[1].protocol", 18, 11, "required, tcp or udp"),
				errAt("spec.nodePools[0].ingress[1].endPort", 18, 31, "must be from port (80) to 65535, got 79"),
				errAt("spec.nodePools[0].ingress[1].fromCIDRs[0]", 18, 47, `"nowhere" is not a CIDR (want e.g. 10.0.0.0/16 or fd00::/64)`),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, findingsOf(t, tc.doc)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}
