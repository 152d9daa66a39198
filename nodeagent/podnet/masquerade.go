package podnet

import (
	"fmt"
	"net/netip"
	"strings"
)

// NftTable is the nftables table (family inet) that holds the pod network's masquerading.
const NftTable = "kiln_podnet"

// Masquerade returns an nftables ruleset for `nft -f` that masquerades what the node's pods
// (podCIDR) send to destinations outside the cluster's pod range (clusterCIDR), multicast
// excepted: pod-to-pod traffic, on this node or across nodes, keeps the pods' addresses; traffic
// to the node network, the load balancer or the internet leaves with the node's address.
//
// It declares, deletes and then defines the table inet kiln_podnet, so that loading it again
// replaces the table whole, atomically, and never touches other tables (the node's firewall
// kiln_filter, kube-proxy's, portmap's). podCIDR must lie within clusterCIDR.
func Masquerade(podCIDR, clusterCIDR netip.Prefix) ([]byte, error) {
	if err := checkPodCIDR(podCIDR); err != nil {
		return nil, fmt.Errorf("podnet: masquerade: %w", err)
	}
	if !clusterCIDR.IsValid() || clusterCIDR != clusterCIDR.Masked() {
		return nil, fmt.Errorf("podnet: masquerade: cluster cidr %q: %w: want a range without host bits", clusterCIDR, ErrInvalid)
	}
	if clusterCIDR.Bits() > podCIDR.Bits() || !clusterCIDR.Contains(podCIDR.Addr()) {
		return nil, fmt.Errorf("podnet: masquerade: pod cidr %s: %w: not within the cluster cidr %s", podCIDR, ErrInvalid, clusterCIDR)
	}
	fam, multicast := "ip", "224.0.0.0/4"
	if podCIDR.Addr().Is6() {
		fam, multicast = "ip6", "ff00::/8"
	}
	var b strings.Builder
	b.WriteString("#!/usr/sbin/nft -f\n")
	b.WriteString("# kiln pod network (kiln-node podnet). Generated from the node's spec.podCIDR; do not edit.\n")
	b.WriteString("# Declare, delete, define: loading this again replaces the table whole and leaves other tables alone.\n")
	fmt.Fprintf(&b, "table inet %s\n", NftTable)
	fmt.Fprintf(&b, "delete table inet %s\n\n", NftTable)
	fmt.Fprintf(&b, "table inet %s {\n", NftTable)
	b.WriteString("\tchain postrouting {\n")
	b.WriteString("\t\ttype nat hook postrouting priority srcnat; policy accept;\n\n")
	fmt.Fprintf(&b, "\t\t%s saddr %s %s daddr != %s %s daddr != %s masquerade comment \"pods leaving the cluster's pod network\"\n",
		fam, podCIDR, fam, clusterCIDR, fam, multicast)
	b.WriteString("\t}\n}\n")
	return []byte(b.String()), nil
}
