package aws

import (
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/lint"
)

// Placement is what the AWS provider does for the configs of the machines it places: security groups
// compiled from the firewall intent stand in for the nodes' own firewall, a worker's config travels in
// user-data (16 KiB), and a control-plane config (it holds the cluster's keys) travels through the
// bootstrap bucket behind a small user-data stub, so no channel limits its size.
func Placement() ignition.Placement {
	return ignition.Placement{
		ExternalFirewall: true,
		Channels:         map[string]lint.Limit{v1alpha1.RoleWorker: lint.Limits["aws"]},
	}
}
