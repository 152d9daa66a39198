// Command kiln bakes, boots, places and heals immutable Kubernetes nodes. See `kiln --help`.
package main

import (
	"os"

	"github.com/kiln-dev/kiln/internal/cli"
)

func main() { os.Exit(cli.Run()) }
