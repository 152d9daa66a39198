package vsphere

import (
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/lint"
)

// Placement is what the vSphere provider does for the configs of the machines it places: the nodes
// load their firewall themselves (a port group has none); every config travels base64-encoded in
// guestinfo.ignition.config.data, which holds 64 KiB; the control-plane nodes make the API endpoint
// themselves (keepalived holds spec.network.apiEndpoint.address on the port group, haproxy balances
// to the kube-apiservers); and every machine's address is known before its config is rendered
// (NodeAddresses), so that etcd's members and haproxy's backends are addresses: kiln reserves each
// machine a static address of the port group's subnet (spec.network.privateSubnets[0]) in its state
// store before the VM exists (Provider.Reserve), and Create hands the VM its config wrapped with the
// systemd-networkd file that sets the address on its NIC (docs/vsphere.md).
//
// With served (spec.provider.vsphere.configServer), guestinfo carries only each machine's stub and
// the machine fetches its config once from kiln: the config itself has no size limit.
func Placement(served bool) ignition.Placement {
	pl := ignition.Placement{Endpoint: ignition.EndpointVIP, NodeAddresses: true}
	if !served {
		pl.Channels = map[string]lint.Limit{
			v1alpha1.RoleControlPlane: lint.Limits["vsphere"],
			v1alpha1.RoleWorker:       lint.Limits["vsphere"],
		}
	}
	return pl
}
