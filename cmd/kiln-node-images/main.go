// Command kiln-node-images writes the container images every kiln node carries (the sandbox and the
// test image) as image archives for `ctr images import` (package images/nodeimages).
package main

import (
	"os"

	"github.com/kiln-dev/kiln/images/nodeimages"
)

func main() { os.Exit(nodeimages.Main(os.Args[1:], os.Stdout, os.Stderr)) }
