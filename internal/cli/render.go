package cli

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/state/atomicfile"
)

func newRender(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Render node configuration",
	}
	cmd.AddCommand(newRenderIgnition(g))
	return cmd
}

func newRenderIgnition(g *globals) *cobra.Command {
	var (
		specPath, role, node, pool, format, outFile, target string
	)
	cmd := &cobra.Command{
		Use:   "ignition",
		Short: "Render one node's Ignition config from the cluster spec and its secrets",
		Long: `ignition renders the Ignition (spec 3.5.0) config a node boots with: the admin user and the
cluster's SSH key, key-only sshd, the cluster CA, containerd and the kubelet joining by TLS bootstrap
with a bootstrap token; control-plane nodes also get etcd, the API server, controller manager and
scheduler with the cluster's security settings (private-CA TLS, no anonymous access, Node and RBAC
authorization, Pod Security admission, Secrets encrypted at rest, audit logging).

Where the provider gives nodes their private addresses before they exist (qemu, vsphere), the config
names the node's and the control plane's: render reserves them with the provider, as apply does, and
the machine apply makes of that name gets the same address (on vsphere, the reservation is kept in
the state store until the machine is deleted).

Every config is validated with Ignition's own validator and linted: no remote source without https
and a verification hash, no secret on a machine that must not hold it (a worker holds no private key
at all), and a size that fits the target. The output holds a bootstrap token: --output-file writes
it 0600. (-o FILE, which earlier releases took, still works for one release, with a notice.)

The token is one shared by the configs rendered outside 'kiln apply' (this command, the Packer data
source, 'kiln pxe serve'), minted when none has half its lifetime (spec.security.bootstrapTokenTTL)
left. render does not apply it to the cluster: it reaches the cluster only in the first-boot
manifests of a control-plane node rendered while it is valid, so a worker rendered here joins a
cluster that is already running only if you apply the token yourself. 'kiln apply' gives each machine
it creates a token of its own, applies it to the cluster before the machine is created, and deletes
it once the machine's Node has joined.`,
		Example: `  kiln render ignition -f cluster.yaml --role control-plane --node demo-control-plane-0 --output-file cp0.ign
  kiln render ignition -f cluster.yaml --role worker --pool workers --node demo-workers-0 --output-file w0.ign`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := resolveOutputFile(g.errOut, &format, outFile, formatJSON)
			if err != nil {
				return err
			}
			c, err := loadSpec(specPath)
			if err != nil {
				return err
			}
			if role == v1alpha1.RoleWorker && pool == "" {
				if len(c.Spec.NodePools) != 1 {
					return fmt.Errorf("--pool is required: cluster %s has %d node pools", c.Metadata.Name, len(c.Spec.NodePools))
				}
				pool = c.Spec.NodePools[0].Name
			}
			st, err := g.openState()
			if err != nil {
				return err
			}
			b, tok, err := joinToken(st, c, time.Now())
			// Closed before the provider reserves addresses, which it may keep in the store too.
			if cerr := st.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			tc := c
			if target != "" && target != c.Spec.Provider.Name {
				// Another target's placement: the spec as if its provider were that one.
				other := *c
				other.Spec.Provider = v1alpha1.Provider{Name: target}
				tc = &other
			}
			pl, err := placement(tc)
			if err != nil {
				return fmt.Errorf("--target: %w", err)
			}
			in := ignition.Input{Cluster: c, Secrets: b, Token: tok, Placement: pl}
			var addr netip.Addr
			if pl.NodeAddresses {
				// The provider gives the address; it keeps it for the machine apply makes.
				p, err := g.provider(cmd.Context(), c, specPath)
				if err != nil {
					return err
				}
				if in.ControlPlaneAddresses, addr, err = addresses(cmd.Context(), p, pl, c, node); err != nil {
					return err
				}
			}
			r, err := ignition.New(in)
			if err != nil {
				return err
			}
			cfg, err := r.Render(ignition.Node{Name: node, Role: role, Pool: pool, Address: addr})
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = g.out.Write(append(cfg, '\n'))
				return err
			}
			if err := atomicfile.Write(out, append(cfg, '\n'), 0o600, false); err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "wrote %s (%d bytes, %s node %s)\n", out, len(cfg)+1, role, node)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	f.StringVar(&role, "role", "", "node role: control-plane or worker")
	f.StringVar(&node, "node", "", "node name (a DNS label), e.g. demo-workers-0")
	f.StringVar(&pool, "pool", "", "node pool of a worker (default: the only pool)")
	addFormatFlag(cmd, &format, formatJSON) // an Ignition config is JSON
	addOutputFileFlag(cmd, &outFile, "file to write (mode 0600); default standard output")
	f.StringVar(&target, "target", "", "render for this provider's placement (its firewall and delivery channel with its size limit): aws, vsphere, metal, qemu (default: the spec's provider)")
	completeFlag(cmd, "role", roles...)
	completeFlag(cmd, "target", ignitionTargets...)
	cmd.MarkFlagRequired("role")
	cmd.MarkFlagRequired("node")
	return cmd
}

// joinToken returns the cluster's secrets and a bootstrap token with at least half its lifetime
// left (secrets.JoinToken).
func joinToken(st secrets.TokenStore, c *v1alpha1.Cluster, now time.Time) (*secrets.Bundle, secrets.BootstrapToken, error) {
	return secrets.JoinToken(st, c, now, "kiln node join")
}
