package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/bootstrap/clusterapply"
)

func newCluster(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Act on a running cluster",
	}
	cmd.AddCommand(newClusterSecure(g))
	return cmd
}

func newClusterSecure(g *globals) *cobra.Command {
	var specPath, kubeconfig, format string
	cmd := &cobra.Command{
		Use:   "secure",
		Short: "Apply the spec's namespace Pod Security labels and kiln's RBAC bindings to a running cluster",
		Long: `secure applies, with server-side apply (field manager "kiln"), the objects kiln renders for a
cluster's security: one Namespace per entry of spec.security.podSecurity.namespaces with its
pod-security.kubernetes.io labels, and the ClusterRoleBindings of kubelet TLS bootstrap and of kiln's
admin group. It is idempotent and prints, per object, whether it was created, configured (it had
drifted, e.g. a label removed) or unchanged. A new control-plane node applies the same objects once
when it starts; secure brings a running cluster back to them.

The cluster is the one of --kubeconfig (default: $KUBECONFIG, then ~/.kube/config), e.g. the
admin.conf that 'kiln controlplane run' prints.`,
		Example: `  kiln cluster secure -f cluster.yaml --kubeconfig demo-control-plane/admin.conf`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			c, err := loadSpec(specPath)
			if err != nil {
				return err
			}
			manifests, err := clusterapply.SecureManifests(c)
			if err != nil {
				return err
			}
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			changes, err := clusterapply.Apply(cmd.Context(), rc, manifests...)
			if format != "text" {
				if perr := printStructured(g.out, format, changes); perr != nil {
					return perr
				}
			} else {
				tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KIND\tNAME\tCHANGE")
				for _, ch := range changes {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", ch.Kind, ch.Name, ch.Action)
				}
				if ferr := tw.Flush(); ferr != nil {
					return ferr
				}
			}
			if err != nil {
				return err
			}
			n := 0
			for _, ch := range changes {
				if ch.Action != clusterapply.Unchanged {
					n++
				}
			}
			fmt.Fprintf(g.errOut, "cluster %s: %d of %d objects changed\n", c.Metadata.Name, n, len(changes))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG, then ~/.kube/config)")
	addFormatFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}
