package aws

import (
	"testing"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
)

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Setup {
		f := startFake(t)
		p := newProvider(t, f)
		ensureNetwork(t, p, "kt")
		ensureNetwork(t, p, "kt-workers")
		return providertest.Setup{
			New:   func() provisioner.Provider { return newProvider(t, f) },
			Image: testImage,
		}
	})
}
