// Command kiln-pause is the process of kiln's pod sandbox image: it sleeps until SIGINT or SIGTERM and
// reaps orphaned children meanwhile (package images/nodeimages/pause).
package main

import (
	"os"

	"github.com/kiln-dev/kiln/images/nodeimages/pause"
)

func main() { os.Exit(pause.Main(os.Args[1:], os.Stdout, os.Stderr)) }
