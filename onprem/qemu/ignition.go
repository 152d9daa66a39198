package qemu

import (
	"net/netip"

	"github.com/kiln-dev/kiln/bootstrap/privatenet"
)

// Files the outer config writes.
const (
	PrivateNetworkFile = privatenet.NetworkFile
	HostsFile          = privatenet.HostsFile
)

// privateNetwork is a machine's NIC on the cluster's private network.
type privateNetwork struct {
	MAC     string
	Address netip.Addr
	Prefix  netip.Prefix
}

type hostEntry struct{ Address, Name string }

// wrapIgnition returns the outer config a machine boots with (privatenet.Wrap): it merges inner and
// adds the private NIC's systemd-networkd file, matched by the NIC's MAC, and /etc/hosts. fw_cfg
// has no size limit, so inner travels uncompressed.
func wrapIgnition(inner []byte, nw privateNetwork, hosts []hostEntry) ([]byte, error) {
	hs := make([]privatenet.Host, len(hosts))
	for i, h := range hosts {
		hs[i] = privatenet.Host{Address: h.Address, Name: h.Name}
	}
	return privatenet.Wrap(inner, privatenet.Network{
		Origin: "onprem/qemu",
		NIC:    privatenet.NIC{MAC: nw.MAC, Address: nw.Address, Prefix: nw.Prefix},
		Hosts:  hs,
	})
}
