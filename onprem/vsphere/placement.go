package vsphere

import (
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/lint"
)

// Placement is what the vSphere provider does for the configs of the machines it places: the nodes
// load their firewall themselves (a port group has none), and every config travels base64-encoded in
// guestinfo.ignition.config.data, which holds 64 KiB.
func Placement() ignition.Placement {
	return ignition.Placement{Channels: map[string]lint.Limit{
		v1alpha1.RoleControlPlane: lint.Limits["vsphere"],
		v1alpha1.RoleWorker:       lint.Limits["vsphere"],
	}}
}
