package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/api/strictyaml"
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/onprem/pxe"
)

type validateResult struct {
	File     string               `json:"file"`
	Valid    bool                 `json:"valid"`
	Findings []strictyaml.Finding `json:"findings"`
	// Inventory is the check of a metal cluster's machine inventory (spec.provider.metal.inventory).
	Inventory *validateResult `json:"inventory,omitempty"`
	// missing: the file is not there (a metal cluster's inventory not written yet), so not "valid".
	missing bool
}

// validateInventory checks the machine inventory of metal cluster c, whose spec is at specPath: the
// inventory's own findings, and its BMCs' transports (Redfish over http:// or unverified TLS, IPMI)
// as warnings naming each machine. An inventory that is not there yet is a warning: its BMCs are not
// checked.
func validateInventory(c *v1alpha1.Cluster, specPath string, strict bool) *validateResult {
	path := v1alpha1.DefaultMetalInventory
	if m := c.Spec.Provider.Metal; m != nil && m.Inventory != "" {
		path = m.Inventory
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(specPath), path)
	}
	res := &validateResult{File: path}
	data, err := readlimit.ReadFile(path, readlimit.Inventory)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		res.Findings = []strictyaml.Finding{{Severity: strictyaml.SeverityWarning,
			Message: "no such file: the inventory of spec.provider.metal.inventory, and its machines' BMCs, are not checked"}}
		res.Valid, res.missing = !strict, true
		return res
	case err != nil:
		res.Findings = []strictyaml.Finding{{Severity: strictyaml.SeverityError, Message: strings.TrimPrefix(err.Error(), path+": ")}}
		return res
	}
	_, warnings, err := pxe.DecodeInventoryFindings(data, path)
	var serr *strictyaml.Error
	switch {
	case errors.As(err, &serr):
		res.Findings = serr.Findings
	case err != nil:
		res.Findings = []strictyaml.Finding{{Severity: strictyaml.SeverityError, Message: strings.TrimPrefix(err.Error(), path+": ")}}
	}
	res.Findings = append(res.Findings, warnings...)
	strictyaml.SortFindings(res.Findings)
	res.Valid = err == nil && !(strict && len(warnings) > 0)
	return res
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
every finding at once as FILE:LINE:COL: PATH: MESSAGE. For a metal cluster it checks the machine
inventory (spec.provider.metal.inventory) too, and warns of every machine whose BMC is reached
insecurely: Redfish over http:// or without TLS verification (insecure: true), or IPMI. Warnings do not
fail unless --strict is given. The exit code is 1 when the spec or the inventory is invalid.`,
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
			c, warnings, err := v1alpha1.DecodeWithWarnings(data, specPath)
			res := validateResult{File: specPath, Valid: err == nil && !(strict && len(warnings) > 0)}
			var verr *strictyaml.Error
			switch {
			case errors.As(err, &verr):
				res.Findings = verr.Findings
			case err != nil:
				return err
			}
			res.Findings = append(res.Findings, warnings...)
			if c != nil && c.Spec.Provider.Name == v1alpha1.ProviderMetal {
				res.Inventory = validateInventory(c, specPath, strict)
			}
			results := []*validateResult{&res}
			if res.Inventory != nil {
				results = append(results, res.Inventory)
			}
			if format != "text" {
				if err := printStructured(g.out, format, res); err != nil {
					return err
				}
			} else {
				for _, r := range results {
					for _, f := range r.Findings {
						fmt.Fprintln(g.out, f.Format(r.File))
					}
					if r.Valid && !r.missing {
						fmt.Fprintf(g.out, "%s: valid\n", r.File)
					}
				}
			}
			var errs []error
			for _, r := range results {
				if !r.Valid {
					errs = append(errs, fmt.Errorf("%s: invalid (%d finding(s))", r.File, len(r.Findings)))
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec to check")
	addFormatFlag(cmd, &format, formatText, formatJSON, formatYAML)
	cmd.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors")
	return cmd
}
