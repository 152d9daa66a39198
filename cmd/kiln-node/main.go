// Command kiln-node runs the agents of a kiln node (`kiln-node podnet`, the pod network). See
// `kiln-node --help`.
package main

import (
	"os"
	_ "time/tzdata" // maintenance windows name IANA time zones; a node may have no zoneinfo

	"github.com/kiln-dev/kiln/nodeagent/command"
)

func main() { os.Exit(command.Run()) }
