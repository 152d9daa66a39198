// Command kiln-bootstorm simulates a boot storm against a kiln boot server on this machine: every
// machine of an inventory fetches its iPXE script and Ignition (and optionally an asset) at once.
package main

import (
	"os"

	"github.com/kiln-dev/kiln/onprem/pxe/loadgen"
)

func main() { os.Exit(loadgen.Main(os.Args[1:], os.Stdout, os.Stderr)) }
