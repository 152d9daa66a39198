package cli

import (
	"context"
	"net/netip"

	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/bootstrap/servingcsr"
	"github.com/kiln-dev/kiln/provisioner"
)

// approveServing approves the pending kubelet serving CSRs of the machines ms, as the provider listed
// them, each for the machine's name and private address only (servingcsr.Approve): kube-apiserver
// checks a kubelet's serving certificate against the cluster CA, so that logs, exec and
// port-forward need it, and kube-controller-manager approves none. What is approved, and each CSR
// left pending once, is logged.
func (k *tokenKeeper) approveServing(ctx context.Context, client kubernetes.Interface, ms []provisioner.Machine) (servingcsr.Result, error) {
	return servingcsr.Approve(ctx, client, knownMachines(ms), k.log)
}

// knownMachines are the machines of ms that exist (not gone), by name, each with its private address
// (none while the provider has not given it one). The SSH endpoint a provider forwards is no address
// of the machine's and is not used.
func knownMachines(ms []provisioner.Machine) map[string][]netip.Addr {
	known := make(map[string][]netip.Addr, len(ms))
	for _, m := range ms {
		if m.State == provisioner.StateGone {
			continue
		}
		var addrs []netip.Addr
		if a, err := netip.ParseAddr(m.Address); err == nil {
			addrs = append(addrs, a.Unmap())
		}
		known[m.Name] = addrs
	}
	return known
}
