// Command kiln-echo is kiln's test workload: an HTTP server on :8080 that answers with its hostname and
// pod IP, or with -get URL a client (package images/nodeimages/echo).
package main

import (
	"os"

	"github.com/kiln-dev/kiln/images/nodeimages/echo"
)

func main() { os.Exit(echo.Main(os.Args[1:], os.Stdout, os.Stderr)) }
