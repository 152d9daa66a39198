package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/bootstrap/firewall"
)

func newAudit(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show and check what a cluster's nodes allow",
	}
	cmd.AddCommand(newAuditNetwork(g))
	return cmd
}

// ruleView is one rule as printed.
type ruleView struct {
	Role  string   `json:"role"`
	Proto string   `json:"proto"`
	Ports string   `json:"ports,omitempty"`
	From  []string `json:"from"`
	Why   string   `json:"why"`
}

func newAuditNetwork(g *globals) *cobra.Command {
	var specPath, format string
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Print the firewall intent: per role, which ports are open to whom",
		Long: `network computes the firewall intent from the cluster spec and prints, per role, every inbound rule:
protocol, ports, the sources allowed and why. Everything not listed is dropped; established
connections and loopback are always allowed, egress is open. On AWS the intent becomes security
groups; on vSphere, bare metal and QEMU each node loads it as an nftables ruleset at boot.`,
		Example: `  kiln audit network -f cluster.yaml
  kiln audit network -f cluster.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			c, err := loadSpec(specPath)
			if err != nil {
				return err
			}
			intent, err := firewall.NewIntent(c)
			if err != nil {
				return err
			}
			roles := make([]string, 0, len(intent.Roles))
			for r := range intent.Roles {
				roles = append(roles, r)
			}
			sort.Strings(roles)
			var views []ruleView
			for _, role := range roles {
				for _, r := range intent.Roles[role] {
					v := ruleView{Role: role, Proto: string(r.Proto), Ports: r.Ports.String(), Why: r.Why}
					for _, p := range r.From {
						v.From = append(v.From, p.String())
					}
					views = append(views, v)
				}
			}
			if format != "text" {
				return printStructured(g.out, format, views)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tPROTO\tPORTS\tFROM\tWHY")
			for _, v := range views {
				ports := v.Ports
				if ports == "" {
					ports = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Role, v.Proto, ports, strings.Join(v.From, ","), v.Why)
			}
			fmt.Fprintln(tw, "*\t*\t*\t*\teverything else inbound is dropped")
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	cmd.Flags().StringVarP(&format, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}
