package vsphere

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/privatenet"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/addrpool"
)

// Addresses is where the provider's machines get their static addresses on the port group: kiln
// reserves each machine one of Subnet before its config is rendered (Reserve), keeps it in the state
// store while the VM does not exist yet, sets it on the VM's NIC with a systemd-networkd file in the
// config it hands over, and frees it when the machine is deleted.
type Addresses struct {
	// Store keeps the reservations (provisioner/addrpool).
	Store addrpool.Store
	// Subnet is the port group's IPv4 subnet: spec.network.privateSubnets[0]. Its first host address
	// is taken as the gateway (the default route) and never given to a machine.
	Subnet netip.Prefix
	// Endpoint is spec.network.apiEndpoint.address, the virtual address keepalived holds on the
	// control plane; no machine is given it.
	Endpoint netip.Addr
}

// The spec fields the addresses come from, which errors name.
const (
	fieldSubnet   = "spec.network.privateSubnets[0]"
	fieldEndpoint = "spec.network.apiEndpoint.address"
)

// minSubnetBits is the shortest prefix of Addresses.Subnet: each machine's MAC carries the last 22
// bits of its address (macFor), so a larger subnet could give two machines one MAC.
const minSubnetBits = 10

// AddressesFor returns the Addresses of the cluster spec c (defaults set), its reservations kept in
// st. Its error reports every reason why c's network cannot give vSphere machines their addresses,
// each naming the spec field, and wraps ErrInvalidConfig.
func AddressesFor(c *v1alpha1.Cluster, st addrpool.Store) (Addresses, error) {
	n := c.Spec.Network
	a := Addresses{Store: st}
	var errs []error
	if len(n.PrivateSubnets) == 0 {
		errs = append(errs, fmt.Errorf("vsphere: spec.network.privateSubnets: required: the first is the port group's IPv4 subnet, whose addresses kiln gives the machines: %w", ErrInvalidConfig))
	} else if p, err := netip.ParsePrefix(n.PrivateSubnets[0]); err != nil {
		errs = append(errs, fmt.Errorf("vsphere: %s: %w: %w", fieldSubnet, err, ErrInvalidConfig))
	} else {
		a.Subnet = p
	}
	if n.APIEndpoint.Address != "" {
		if e, err := netip.ParseAddr(n.APIEndpoint.Address); err != nil {
			errs = append(errs, fmt.Errorf("vsphere: %s: %w: %w", fieldEndpoint, err, ErrInvalidConfig))
		} else {
			a.Endpoint = e
		}
	}
	if len(errs) == 0 {
		errs = a.check()
	}
	if len(errs) > 0 {
		return Addresses{}, errors.Join(errs...)
	}
	return a, nil
}

// check returns every reason why a cannot give machines addresses, each naming the spec field and
// wrapping ErrInvalidConfig.
func (a Addresses) check() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("vsphere: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidConfig))
	}
	if a.Store == nil {
		bad("addresses", "no state store to keep the machines' address reservations in")
	}
	s := a.Subnet
	switch {
	case !s.IsValid():
		bad(fieldSubnet, "required: the port group's IPv4 subnet, whose addresses kiln gives the machines")
		return errs
	case !s.Addr().Is4():
		bad(fieldSubnet, "%s is IPv6: vsphere gives machines static IPv4 addresses of the port group's subnet", s)
		return errs
	case s.Bits() > 30:
		bad(fieldSubnet, "%s leaves no address for a machine besides its network address, its first host address (the gateway) and its broadcast address", s)
		return errs
	case s.Bits() < minSubnetBits:
		bad(fieldSubnet, "%s is larger than a /%d: each machine's MAC carries the last %d bits of its address, so machines of a larger subnet could share one", s, minSubnetBits, 32-minSubnetBits)
	}
	s = s.Masked()
	if e := a.Endpoint; e.IsValid() {
		switch gw := s.Addr().Next(); {
		case !s.Contains(e):
			bad(fieldEndpoint, "%s is not in %s (%s), the port group's subnet: keepalived holds it on the control-plane nodes' NICs there", e, fieldSubnet, s)
		case e == s.Addr():
			bad(fieldEndpoint, "%s is the network address of %s (%s)", e, fieldSubnet, s)
		case e == gw:
			bad(fieldEndpoint, "%s is the first host address of %s (%s), which vsphere takes as the port group's gateway: take another unused address", e, fieldSubnet, s)
		case !s.Contains(e.Next()):
			bad(fieldEndpoint, "%s is the broadcast address of %s (%s)", e, fieldSubnet, s)
		case s.Bits() == 30:
			bad(fieldSubnet, "%s leaves no address for a machine besides its network address, its gateway, the API endpoint (%s) and its broadcast address", s, e)
		}
	}
	return errs
}

// pool checks a and returns its address pool.
func (a Addresses) pool() (*addrpool.Pool, error) {
	if errs := a.check(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var exclude []netip.Addr
	if a.Endpoint.IsValid() {
		exclude = append(exclude, a.Endpoint)
	}
	pool, err := addrpool.New(a.Store, a.Subnet, exclude...)
	if err != nil {
		return nil, fmt.Errorf("vsphere: %s: %w: %w", fieldSubnet, err, ErrInvalidConfig)
	}
	return pool, nil
}

// Reserve gives the machine called name of cluster its address on the port group before the machine
// exists, so that the address can be rendered into its config: the lowest free one of the subnet,
// never its network, gateway (first) or broadcast address or the API endpoint. Reserving a name
// again returns its address; Create makes the machine with it, and Delete releases it.
func (p *Provider) Reserve(ctx context.Context, cluster, name string) (netip.Addr, error) {
	if err := ctx.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("vsphere: reserve %q: %w", name, err)
	}
	addr, err := p.reserve(cluster, name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vsphere: reserve %q: %w", name, err)
	}
	return addr, nil
}

// reserve reserves the address of name; an error for a full subnet, or an API endpoint held by a
// machine, names the spec field to change.
func (p *Provider) reserve(cluster, name string) (netip.Addr, error) {
	addr, err := p.addrs.Reserve(cluster, name)
	switch {
	case errors.Is(err, addrpool.ErrExhausted):
		return netip.Addr{}, fmt.Errorf("%s: %w (delete machines, or give the port group a larger subnet)", fieldSubnet, err)
	case errors.Is(err, addrpool.ErrConflict):
		return netip.Addr{}, fmt.Errorf("%s: %w", fieldEndpoint, err)
	case err != nil:
		return netip.Addr{}, err
	}
	return addr, nil
}

// release frees the addresses that name holds: of cluster, or, when cluster is "" (the VM is gone),
// of every cluster, since a name is unique in the provider's folder.
func (p *Provider) release(cluster, name string) error {
	clusters := []string{cluster}
	if cluster == "" {
		holds, err := p.addrs.Holds()
		if err != nil {
			return err
		}
		clusters = clusters[:0]
		for _, h := range holds {
			if h.Name == name {
				clusters = append(clusters, h.Cluster)
			}
		}
	}
	for _, c := range clusters {
		if err := p.addrs.Release(c, name); err != nil {
			return err
		}
	}
	return nil
}

// macFor is the static MAC of the machine at addr: VMware's range for manually set addresses,
// 00:50:56:00:00:00 to 00:50:56:3F:FF:FF, with the address's last 22 bits, so that two machines of
// one subnet (up to a /10) never share a MAC.
func macFor(addr netip.Addr) string {
	b := addr.As4()
	return fmt.Sprintf("00:50:56:%02x:%02x:%02x", b[1]&0x3f, b[2], b[3])
}

// machineConfig is the config the machine of spec at addr boots with: spec.Ignition, wrapped with
// the systemd-networkd file that sets addr on the NIC of MAC mac (privatenet.Wrap) and /etc/hosts with
// the cluster's reserved addresses, compressed to fit guestinfo.
func (p *Provider) machineConfig(spec provisioner.MachineSpec, addr netip.Addr, mac string) ([]byte, error) {
	hosts := []privatenet.Host{{Address: addr.String(), Name: spec.Name}}
	holds, err := p.addrs.Holds()
	if err != nil {
		return nil, err
	}
	for _, h := range holds {
		if h.Cluster == spec.Cluster {
			hosts = append(hosts, privatenet.Host{Address: h.Address.String(), Name: h.Name})
		}
	}
	out, err := privatenet.Wrap(spec.Ignition, privatenet.Network{
		Origin: "onprem/vsphere",
		NIC:    privatenet.NIC{MAC: mac, Address: addr, Prefix: p.addrs.Prefix(), Gateway: p.addrs.Gateway()},
		Hosts:  hosts,
		Gzip:   true,
	})
	if err != nil {
		return nil, err
	}
	if n := base64.StdEncoding.EncodedLen(len(out)); n > MaxIgnitionSize {
		return nil, fmt.Errorf("ignition: %d bytes base64 with the network config (the node's config gzip-compressed), guestinfo takes %d "+
			"(set spec.provider.vsphere.configServer: the VM then carries a stub and fetches its config once from kiln): %w",
			n, MaxIgnitionSize, ErrIgnitionTooLarge)
	}
	return out, nil
}
