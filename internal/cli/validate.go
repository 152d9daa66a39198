package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/api/strictyaml"
	"github.com/kiln-dev/kiln/api/v1alpha1"
)

type validateResult struct {
	File     string               `json:"file"`
	Valid    bool                 `json:"valid"`
	Findings []strictyaml.Finding `json:"findings"`
}

func newValidate(g *globals) *cobra.Command {
	var (
		specPath string
		format   string
		strict   bool
	)
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a cluster spec: every problem at once, each with its YAML path and line:column",
		Long: `validate decodes a cluster spec strictly (unknown fields, wrong types, invalid values) and reports
every finding at once as FILE:LINE:COL: PATH: MESSAGE. Warnings do not fail unless --strict is given.
The exit code is 1 when the spec is invalid.`,
		Example: `  kiln validate -f cluster.yaml
  kiln validate -f cluster.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			data, err := readlimit.ReadFile(specPath, readlimit.Spec)
			if err != nil {
				return fmt.Errorf("read cluster spec: %w", err)
			}
			_, warnings, err := v1alpha1.DecodeWithWarnings(data, specPath)
			res := validateResult{File: specPath, Valid: err == nil && !(strict && len(warnings) > 0)}
			var verr *strictyaml.Error
			switch {
			case errors.As(err, &verr):
				res.Findings = verr.Findings
			case err != nil:
				return err
			}
			res.Findings = append(res.Findings, warnings...)
			if format != "text" {
				if err := printStructured(g.out, format, res); err != nil {
					return err
				}
			} else {
				for _, f := range res.Findings {
					fmt.Fprintln(g.out, f.Format(specPath))
				}
				if res.Valid {
					fmt.Fprintf(g.out, "%s: valid\n", specPath)
				}
			}
			if !res.Valid {
				return fmt.Errorf("%s: invalid (%d finding(s))", specPath, len(res.Findings))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec to check")
	addFormatFlag(cmd, &format, formatText, formatJSON, formatYAML)
	cmd.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors")
	return cmd
}
