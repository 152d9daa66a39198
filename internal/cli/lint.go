package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/lint"
)

type lintResult struct {
	File     string         `json:"file"`
	OK       bool           `json:"ok"`
	Findings []lint.Finding `json:"findings"`
}

func newLint(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lint",
		Short: "Check configuration files",
	}
	cmd.AddCommand(newLintIgnition(g))
	return cmd
}

func newLintIgnition(g *globals) *cobra.Command {
	var role, target, specPath, format string
	cmd := &cobra.Command{
		Use:   "ignition FILE",
		Short: "Check an Ignition config: sources, secrets, size",
		Long: `ignition parses FILE with Ignition's own parser and validator (spec 3.0 to 3.5) and checks that:
  - every remote source is https with a verification.hash;
  - no SSH private key is in it, and a worker's config (--role worker) holds no private key,
    no EncryptionConfiguration and no bootstrap token Secrets;
  - with -f cluster.yaml, none of that cluster's secrets a machine of the role must not hold
    (CA keys, the service-account key, the encryption key, ...) is in it, plain or base64;
  - it fits the target (--target aws: 16 KiB of user-data; vsphere: 64 KiB of base64 guestinfo).
The exit code is 1 when there is a finding.`,
		Example: `  kiln lint ignition worker.ign --role worker --target aws
  kiln lint ignition cp0.ign --role control-plane -f cluster.yaml -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			switch role {
			case "", v1alpha1.RoleWorker, v1alpha1.RoleControlPlane:
			default:
				return fmt.Errorf("--role %q: unknown (want %s or %s)", role, v1alpha1.RoleControlPlane, v1alpha1.RoleWorker)
			}
			if _, ok := lint.Limits[target]; !ok && target != "" && target != "metal" && target != "qemu" {
				return fmt.Errorf("--target %q: unknown (want aws, vsphere, metal or qemu)", target)
			}
			raw, err := readlimit.ReadFile(args[0], readlimit.Config)
			if err != nil {
				return err
			}
			p := lint.Policy{Role: role, Channel: lint.Limits[target]}
			if specPath != "" {
				if role == "" {
					return errors.New("-f needs --role: which secrets a config may hold depends on the role")
				}
				_, b, err := g.loadCluster(specPath)
				if err != nil {
					return err
				}
				p.Forbidden = ignition.ForbiddenSecrets(role, b)
			}
			res := lintResult{File: args[0], OK: true}
			err = lint.Bytes(raw, p)
			var lerr *lint.Error
			switch {
			case errors.As(err, &lerr):
				res.OK = false
				res.Findings = lerr.Findings
			case err != nil:
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if format != "text" {
				if err := printStructured(g.out, format, res); err != nil {
					return err
				}
			} else {
				for _, f := range res.Findings {
					fmt.Fprintf(g.out, "%s: %s\n", args[0], f)
				}
				if res.OK {
					fmt.Fprintf(g.out, "%s: ok\n", args[0])
				}
			}
			if !res.OK {
				return fmt.Errorf("%s: %d finding(s)", args[0], len(res.Findings))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "role of the machine the config is for: control-plane or worker")
	f.StringVar(&target, "target", "", "delivery target whose size limit applies: aws or vsphere (metal and qemu have none)")
	f.StringVarP(&specPath, "file", "f", "", "cluster spec: also check against that cluster's secrets")
	completeFlag(cmd, "role", roles...)
	completeFlag(cmd, "target", ignitionTargets...)
	addFormatFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}
