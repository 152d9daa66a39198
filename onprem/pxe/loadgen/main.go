package loadgen

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kiln-dev/kiln/onprem/pxe"
)

// Main is kiln-bootstorm's command line: a boot storm of every machine of an inventory against a
// boot server on this machine. It returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kiln-bootstorm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", "http://127.0.0.1:8080", "boot server (a loopback address)")
	inv := fs.String("i", "machines.yaml", "inventory whose machines to simulate")
	rounds := fs.Int("rounds", 1, "boots per machine (a script, and the Ignition of an armed machine)")
	rate := fs.Float64("rate", 0, "open loop: script+Ignition requests per second (0: every machine at once)")
	asset := fs.String("asset", "", "asset each machine fetches after its rounds (path under /assets/)")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the whole storm")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	data, err := os.ReadFile(*inv)
	if err != nil {
		fmt.Fprintln(stderr, "kiln-bootstorm:", err)
		return 1
	}
	i, err := pxe.DecodeInventory(data, *inv)
	if err != nil {
		fmt.Fprintln(stderr, "kiln-bootstorm:", err)
		return 1
	}
	cfg := Config{BaseURL: *base, Rounds: *rounds, Asset: *asset, Timeout: *timeout, Rate: *rate}
	for _, m := range i.Machines {
		cfg.MACs = append(cfg.MACs, m.MAC)
	}
	res, err := Run(context.Background(), cfg)
	fmt.Fprintln(stdout, res)
	if err != nil {
		fmt.Fprintln(stderr, "kiln-bootstorm:", err)
		return 1
	}
	if res.Errors > 0 {
		return 1
	}
	return 0
}
