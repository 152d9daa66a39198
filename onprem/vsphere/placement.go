package vsphere

import (
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/lint"
)

// Placement is what the vSphere provider does for the configs of the machines it places: the nodes
// load their firewall themselves (a port group has none); every config travels base64-encoded in
// guestinfo.ignition.config.data, which holds 64 KiB; and the control-plane nodes make the API
// endpoint themselves (keepalived holds spec.network.apiEndpoint.address on the port group, haproxy
// balances to the kube-apiservers).
//
// Node addresses are not known before rendering yet (no NodeAddresses): etcd's members and haproxy's
// backends are node names, which nothing resolves on a port group. What comes next (docs/vsphere.md):
// kiln assigns each machine a static address from the port group's subnet
// (spec.network.privateSubnets), reserved before its config is rendered (provisioner.Addresser, kept
// in the state store since the VM does not exist yet), and the config carries the systemd-networkd
// file that sets it; then this placement declares NodeAddresses.
func Placement() ignition.Placement {
	return ignition.Placement{
		Channels: map[string]lint.Limit{
			v1alpha1.RoleControlPlane: lint.Limits["vsphere"],
			v1alpha1.RoleWorker:       lint.Limits["vsphere"],
		},
		Endpoint: ignition.EndpointVIP,
	}
}
