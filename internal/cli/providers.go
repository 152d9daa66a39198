package cli

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/converge"
)

// provider returns the provider the spec names, configured from its block of the spec.
func (g *globals) provider(ctx context.Context, c *v1alpha1.Cluster) (provisioner.Provider, error) {
	if g.newProvider != nil {
		return g.newProvider(ctx, c)
	}
	switch name := c.Spec.Provider.Name; name {
	default:
		return nil, fmt.Errorf("spec.provider.name: provider %q cannot place machines in this build of kiln", name)
	}
}

// sshEndpointer is the capability of providers whose machines' SSH port is reached at an address of
// their own (the local QEMU provider forwards it on loopback).
type sshEndpointer interface {
	SSHEndpoint(m provisioner.Machine) string
}

// prober returns how apply probes the machines of provider p: SSH at the address the provider
// forwards it to. Machines of other providers sit in private networks kiln need not reach; they are
// judged by their provider state (and, later, their Node's Ready condition).
func (g *globals) prober(c *v1alpha1.Cluster, p provisioner.Provider) converge.Prober {
	if se, ok := p.(sshEndpointer); ok {
		return converge.TCPProber{Endpoint: func(m provisioner.Machine, port int) string {
			if port == converge.DefaultSSHPort {
				return se.SSHEndpoint(m)
			}
			return ""
		}}
	}
	return nil
}
