package qemu

import "github.com/kiln-dev/kiln/bootstrap/ignition"

// Placement is what the local QEMU provider does for the configs of the machines it places: the nodes
// load their firewall themselves, and a config travels as a file through fw_cfg, which holds any size a
// node config reaches.
func Placement() ignition.Placement { return ignition.Placement{} }
