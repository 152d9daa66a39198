package podnet

import (
	"encoding/json"
	"fmt"
	"net/netip"
)

// CNI config names and places.
const (
	// NetworkName is the CNI network's name (host-local keeps its leases in
	// /var/lib/cni/networks/<NetworkName>).
	NetworkName = "kiln"
	// BridgeName is the Linux bridge that the node's pods attach to; it holds the gateway address,
	// the first address of the node's podCIDR.
	BridgeName = "cni0"
	// ConflistFile is the name of the CNI config in the CNI config directory (DefaultCNIDir).
	ConflistFile = "10-kiln.conflist"
	// DefaultCNIDir is where containerd's CRI plugin reads CNI configs.
	DefaultCNIDir = "/etc/cni/net.d"
	// CNIVersion is the CNI spec version of the config.
	CNIVersion = "1.0.0"
)

type conflist struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type bridgePlugin struct {
	Type        string `json:"type"`
	Bridge      string `json:"bridge"`
	IsGateway   bool   `json:"isGateway"`
	IPMasq      bool   `json:"ipMasq"`
	HairpinMode bool   `json:"hairpinMode"`
	IPAM        ipam   `json:"ipam"`
}

type ipam struct {
	Type   string        `json:"type"`
	Ranges [][]ipamRange `json:"ranges"`
	Routes []ipamRoute   `json:"routes"`
}

type ipamRange struct {
	Subnet string `json:"subnet"`
}

type ipamRoute struct {
	Dst string `json:"dst"`
}

type portmapPlugin struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
	SNAT         bool            `json:"snat"`
}

// Conflist returns the node's CNI network configuration list (CNI spec 1.0.0) for its pod range:
//
//   - bridge: the pods' veths on the bridge cni0, which holds the range's first address as the
//     pods' gateway (isGateway), with hairpin mode so that a pod reaches itself through a Service.
//     ipMasq is off: see the package documentation and Masquerade.
//   - host-local IPAM over podCIDR, with a default route through the bridge.
//   - portmap, for hostPort, with snat so that a pod's hostPort answers from the node itself.
//
// Loopback needs no entry: containerd sets up lo in every sandbox. podCIDR must be a range with
// room for a gateway and a pod (IPv4 /30 or wider, IPv6 /126 or wider) and no host bits set.
func Conflist(podCIDR netip.Prefix) ([]byte, error) {
	if err := checkPodCIDR(podCIDR); err != nil {
		return nil, fmt.Errorf("podnet: cni config: %w", err)
	}
	def := "0.0.0.0/0"
	if podCIDR.Addr().Is6() {
		def = "::/0"
	}
	c := conflist{
		CNIVersion: CNIVersion,
		Name:       NetworkName,
		Plugins: []any{
			bridgePlugin{
				Type:        "bridge",
				Bridge:      BridgeName,
				IsGateway:   true,
				IPMasq:      false,
				HairpinMode: true,
				IPAM: ipam{
					Type:   "host-local",
					Ranges: [][]ipamRange{{{Subnet: podCIDR.String()}}},
					Routes: []ipamRoute{{Dst: def}},
				},
			},
			portmapPlugin{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}, SNAT: true},
		},
	}
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("podnet: cni config: %w", err)
	}
	return append(out, '\n'), nil
}

// checkPodCIDR says whether p can be a node's pod range.
func checkPodCIDR(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("pod cidr: %w: empty or not a range", ErrInvalid)
	}
	if p != p.Masked() {
		return fmt.Errorf("pod cidr %s: %w: host bits set (want %s)", p, ErrInvalid, p.Masked())
	}
	if p.Addr().Is4In6() {
		return fmt.Errorf("pod cidr %s: %w: an IPv4-mapped IPv6 range", p, ErrInvalid)
	}
	if max := p.Addr().BitLen() - 2; p.Bits() > max {
		return fmt.Errorf("pod cidr %s: %w: too small for a gateway and a pod (want /%d or wider)", p, ErrInvalid, max)
	}
	return nil
}
