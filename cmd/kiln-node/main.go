// Command kiln-node runs the agents of a kiln node (`kiln-node podnet`, the pod network). See
// `kiln-node --help`.
package main

import (
	"os"

	"github.com/kiln-dev/kiln/nodeagent/command"
)

func main() { os.Exit(command.Run()) }
