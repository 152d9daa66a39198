package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
)

type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
	// NodeImages are the container images kiln's node image carries (no registry serves them).
	NodeImages nodeImages `json:"nodeImages"`
}

type nodeImages struct {
	Pause string `json:"pause"`
	Echo  string `json:"echo"`
}

func newVersion(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print kiln's version (and, as JSON or YAML, the container images its nodes carry)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo{Version: Version, Commit: Commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
				NodeImages: nodeImages{Pause: kubecfg.SandboxImage, Echo: kubecfg.EchoImage}}
			if format == "text" {
				_, err := fmt.Fprintf(g.out, "kiln %s (commit %s, %s, %s)\n", v.Version, v.Commit, v.GoVersion, v.Platform)
				return err
			}
			return printStructured(g.out, format, v)
		},
	}
	addFormatFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}
