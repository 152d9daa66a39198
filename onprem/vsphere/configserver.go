package vsphere

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/kiln-dev/kiln/provisioner"
)

var _ provisioner.ConfigServing = (*Provider)(nil)

// ConfigServer implements provisioner.ConfigServing when the spec names one (provider.vsphere's
// configServer, IP:PORT): kiln listens there, on its own host's address on the private port group,
// and the machines fetch their configs from it; guestinfo then carries only their stubs. It is the
// same address for every cluster of the spec and every kiln process. Without one it is an error
// naming the field: the caller then gives machines their whole configs (Serves says which).
func (p *Provider) ConfigServer(_ context.Context, cluster string) (provisioner.ConfigServer, error) {
	if p.configServer == "" {
		return provisioner.ConfigServer{}, fmt.Errorf("vsphere: config server of %s: spec.provider.vsphere.configServer is not set: %w", cluster, ErrInvalidConfig)
	}
	ap, err := netip.ParseAddrPort(p.configServer)
	if err != nil || ap.Port() == 0 {
		return provisioner.ConfigServer{}, fmt.Errorf("vsphere: config server of %s: spec.provider.vsphere.configServer %q is not IP:PORT: %w", cluster, p.configServer, ErrInvalidConfig)
	}
	return provisioner.ConfigServer{Listen: ap.String(), URL: "https://" + ap.String(), Names: []string{ap.Addr().String()}}, nil
}

// Serves reports whether the machines fetch their configs from kiln's config server (ConfigServer),
// rather than carry them whole in guestinfo.
func (p *Provider) Serves() bool { return p.configServer != "" }
