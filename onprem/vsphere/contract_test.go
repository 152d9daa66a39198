package vsphere

import (
	"testing"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
)

func TestContract(t *testing.T) {
	for _, kind := range simKinds {
		t.Run(kind, func(t *testing.T) {
			providertest.Run(t, func(t *testing.T) providertest.Setup {
				h := newSim(t, kind)
				return providertest.Setup{
					New:   func() provisioner.Provider { return h.newProvider(t) },
					Image: h.template,
				}
			})
		})
	}
}
