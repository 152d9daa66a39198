package qemu

import (
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/provisioner"
)

// Placement is what the local QEMU provider does for the configs of the machines it places: the nodes
// load their firewall themselves; a config travels as a file through fw_cfg, which holds any size a
// node config reaches; the control-plane nodes make the API endpoint (keepalived holds its address
// on the private network, haproxy balances to the kube-apiservers); and every machine's private
// address is reserved before its config is rendered (Provider.Reserve); the machines are emulated
// (TCG), so the control plane's leader elections tolerate a slow API server.
func Placement() ignition.Placement {
	return ignition.Placement{Endpoint: ignition.EndpointVIP, NodeAddresses: true, SlowMachines: true}
}

// ControlPlaneFirst reports whether kiln apply brings a cluster's control plane up before it creates
// its workers (provisioner.StagedBoot): yes, unless Config.WorkersWithControlPlane. The machines are
// emulated (TCG) on this host, and workers booting beside a new control plane starve its API server.
func (p *Provider) ControlPlaneFirst() bool { return !p.cfg.WorkersWithControlPlane }

var _ provisioner.StagedBoot = (*Provider)(nil)
