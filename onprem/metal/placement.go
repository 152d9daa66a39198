package metal

import "github.com/kiln-dev/kiln/bootstrap/ignition"

// Placement is what the bare-metal provider does for the configs of the machines it places: the nodes
// load their firewall themselves; a config is fetched over HTTP from the boot server, with no size
// limit; and the control-plane nodes make the API endpoint themselves (keepalived holds
// spec.network.apiEndpoint.address on the machines' network, haproxy balances to the
// kube-apiservers).
//
// Node addresses are not known before rendering yet (no NodeAddresses): etcd's members and haproxy's
// backends are node names. What comes next (docs/pxe.md): a machine's address is the inventory's, or
// the lease the boot server's DHCP gives its MAC, known when kiln allocates the machine and before it
// serves the config; the provider reserves it then (provisioner.Addresser), and this placement
// declares NodeAddresses.
func Placement() ignition.Placement { return ignition.Placement{Endpoint: ignition.EndpointVIP} }
