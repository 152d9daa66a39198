package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/health"
)

// nodeView is one machine as 'kiln get nodes' shows it.
type nodeView struct {
	Name    string            `json:"name"`
	Role    string            `json:"role"`
	Pool    string            `json:"pool"`
	State   provisioner.State `json:"state"`
	Health  string            `json:"health"`
	Reason  string            `json:"reason"`
	Image   string            `json:"image"`
	Address string            `json:"address,omitempty"`
	// SSH is where the machine's SSH port is reached from here, when the provider forwards it.
	SSH     string    `json:"ssh,omitempty"`
	Created time.Time `json:"created"`
}

func newGetNodes(g *globals) *cobra.Command {
	var specPath, format string
	cmd := &cobra.Command{
		Use:     "nodes -f cluster.yaml",
		Aliases: []string{"node"},
		Short:   "List the cluster's machines as the provider has them, and their health",
		Long: `nodes lists every machine the provider has for the cluster, in one call to the provider, with
its state and its health as 'kiln apply' last judged it: ready (it answered: its Node is Ready, or
its SSH server proved its pinned host keys), starting (up to spec.health.nodeStartupTimeout),
failing (probes failing for less than spec.health.unhealthyTimeout), unhealthy (to be replaced) or
unheard (running, but kiln could hear nothing of it: no SSH it can check, and the cluster's API not
read; see kiln apply). -o wide adds the image, address and the reason of the verdict; json
and yaml print everything.`,
		Example: `  kiln get nodes -f cluster.yaml
  kiln get nodes -f cluster.yaml -o wide`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch format {
			case "text", "wide", "json", "yaml":
			default:
				return fmt.Errorf("-o %s: unknown output format (want text, wide, json or yaml)", format)
			}
			c, err := loadSpec(specPath)
			if err != nil {
				return err
			}
			p, ms, err := g.machines(cmd.Context(), c, specPath)
			if err != nil {
				return err
			}
			mem, err := stateMemory{g: g, cluster: c.Metadata.Name}.Load(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			hp := health.PolicyFromSpec(c.Spec.Health)
			ep, _ := p.(endpointer)
			views := make([]nodeView, 0, len(ms))
			for _, m := range ms {
				v := health.Judge(m, mem.Observations[m.Name], now, hp)
				nv := nodeView{Name: m.Name, Role: m.Role, Pool: m.Pool, State: m.State,
					Health: verdictWord(v), Reason: v.Reason, Image: m.Image, Address: m.Address, Created: m.Created}
				if ep != nil {
					nv.SSH = ep.Endpoint(m, converge.DefaultSSHPort)
				}
				views = append(views, nv)
			}
			slices.SortFunc(views, func(a, b nodeView) int { return strings.Compare(a.Name, b.Name) })
			switch format {
			case "json", "yaml":
				return printStructured(g.out, format, views)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			head := "NAME\tROLE\tPOOL\tSTATE\tHEALTH\tAGE"
			if format == "wide" {
				head += "\tADDRESS\tSSH\tIMAGE\tREASON"
			}
			fmt.Fprintln(tw, head)
			for _, v := range views {
				age := "-"
				if !v.Created.IsZero() {
					age = now.Sub(v.Created).Round(time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s", v.Name, v.Role, v.Pool, v.State, v.Health, age)
				if format == "wide" {
					fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s", dash(v.Address), dash(v.SSH), v.Image, v.Reason)
				}
				fmt.Fprintln(tw)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	addFormatFlag(cmd, &format, formatText, formatWide, formatJSON, formatYAML)
	return cmd
}

func verdictWord(v health.Verdict) string {
	switch {
	case !v.Healthy:
		return "unhealthy"
	case v.Ready:
		return "ready"
	case strings.HasPrefix(v.Reason, "starting"):
		return "starting"
	case strings.HasPrefix(v.Reason, "unheard"):
		return "unheard"
	}
	return "failing"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// machines is cluster c's provider and the machines it lists (one List call).
func (g *globals) machines(ctx context.Context, c *v1alpha1.Cluster, specPath string) (provisioner.Provider, []provisioner.Machine, error) {
	p, err := g.provider(ctx, c, specPath)
	if err != nil {
		return nil, nil, err
	}
	ms, err := p.List(ctx, c.Metadata.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("list machines of %s: %w", c.Metadata.Name, err)
	}
	return p, ms, nil
}
