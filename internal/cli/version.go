package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

func newVersion(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print kiln's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo{Version: Version, Commit: Commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
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
