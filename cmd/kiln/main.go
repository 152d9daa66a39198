// Command kiln bakes, boots, places and heals immutable Kubernetes nodes. See `kiln --help`.
package main

import (
	"os"
	_ "time/tzdata" // maintenance windows name IANA time zones; a node may have no zoneinfo

	"github.com/kiln-dev/kiln/internal/cli"
)

func main() { os.Exit(cli.Run()) }
