package aws

import (
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/lint"
)

// Placement is what the AWS provider does for the configs of the machines it places: security groups
// compiled from the firewall intent stand in for the nodes' own firewall, a worker's config travels in
// user-data (16 KiB), and a control-plane config (it holds the cluster's keys) travels through the
// bootstrap bucket behind a small user-data stub, so no channel limits its size. The API endpoint is
// the NLB, outside the nodes (EndpointExternal): kube-apiserver listens on the endpoint's port itself.
//
// Node addresses are known before rendering (NodeAddresses): the provider reserves each machine's
// private address first (Provider.Reserve, a provisioner.Addresser), as an elastic network interface
// in the machine's subnet whose address EC2 picks and holds, and Create launches the instance with
// that interface, so etcd's members and the API servers' advertise addresses in the configs are the
// addresses the nodes get.
func Placement() ignition.Placement {
	return ignition.Placement{
		ExternalFirewall: true,
		Channels:         map[string]lint.Limit{v1alpha1.RoleWorker: lint.Limits["aws"]},
		Endpoint:         ignition.EndpointExternal,
		NodeAddresses:    true,
	}
}
