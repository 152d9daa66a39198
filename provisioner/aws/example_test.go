package aws_test

import (
	"fmt"
	"net/netip"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/firewall"
	"github.com/kiln-dev/kiln/provisioner/aws"
)

func ExampleSecurityGroups() {
	node := netip.MustParsePrefix("10.0.0.0/16")
	admin := netip.MustParsePrefix("203.0.113.0/24")
	intent := firewall.Intent{Roles: map[string][]firewall.Rule{
		v1alpha1.RoleControlPlane: {
			{Proto: firewall.TCP, Ports: firewall.Port(22), From: []netip.Prefix{admin}, Why: "ssh from the admin ranges"},
			{Proto: firewall.TCP, Ports: firewall.Port(6443), From: []netip.Prefix{node}, Why: "kubernetes API"},
		},
		v1alpha1.RoleWorker: {
			{Proto: firewall.ICMP, From: []netip.Prefix{node}, Why: "ping from the node network"},
		},
	}}
	groups, err := aws.SecurityGroups(intent, aws.APIAccess{Port: 6443, From: []netip.Prefix{node, admin}})
	if err != nil {
		panic(err)
	}
	for _, g := range groups {
		fmt.Println(g.Role)
		for _, p := range g.Ingress {
			src := p.SourceRole + " group"
			if p.CIDR.IsValid() {
				src = p.CIDR.String()
			}
			fmt.Printf("  %s %d-%d from %s\n", p.Protocol, p.FromPort, p.ToPort, src)
		}
	}
	// Output:
	// control-plane
	//   tcp 22-22 from 203.0.113.0/24
	//   tcp 6443-6443 from 10.0.0.0/16
	//   tcp 6443-6443 from load-balancer group
	// worker
	//   icmp 8--1 from 10.0.0.0/16
	// load-balancer
	//   tcp 6443-6443 from 10.0.0.0/16
	//   tcp 6443-6443 from 203.0.113.0/24
}
