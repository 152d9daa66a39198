package metal

import "github.com/kiln-dev/kiln/bootstrap/ignition"

// Placement is what the bare-metal provider does for the configs of the machines it places: the nodes
// load their firewall themselves, and a config is fetched over HTTP from the boot server, with no size
// limit.
func Placement() ignition.Placement { return ignition.Placement{} }
