package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/api/v1alpha1"

	"github.com/kiln-dev/kiln/bootstrap/cis"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/firewall"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/sshexec"
)

func newAudit(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show and check what a cluster's nodes allow",
	}
	cmd.AddCommand(newAuditNetwork(g), newAuditControlPlane(g))
	return cmd
}

func newAuditControlPlane(g *globals) *cobra.Command {
	var specPath, format string
	cmd := &cobra.Command{
		Use:   "controlplane",
		Short: "Check the rendered control-plane flags against CIS Kubernetes Benchmark items",
		Long: `controlplane renders the first control-plane node's Ignition config from the spec and the cluster's
secrets and checks the flags of its etcd, kube-apiserver, kube-controller-manager and kube-scheduler
units, and its encryption configuration, against checks modelled on the CIS Kubernetes Benchmark
(v1.9 numbering: 1.2 API server, 1.3 controller manager, 1.4 scheduler, 2 etcd): anonymous auth
off, Node and RBAC authorization without AlwaysAllow, NodeRestriction, TLS and client CA files,
etcd over mutual TLS with its own CA, secrets encrypted with a non-identity provider first, an audit
log, profiling off, service-account lookup and keys, kubelet client certificates, strong ciphers.
It prints one line per check and exits non-zero if any fails. Nothing is written to the state store.`,
		Example: `  kiln audit controlplane -f cluster.yaml
  kiln audit controlplane -f cluster.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			c, b, err := g.loadCluster(specPath)
			if err != nil {
				return err
			}
			// Rendering needs a bootstrap token the bundle knows; an unsaved one does when there is none.
			now := time.Now()
			tok, ok := b.ValidBootstrapToken(now, 0)
			if !ok {
				if tok, err = secrets.NewBootstrapToken(rand.Reader, now, time.Hour, "kiln audit"); err != nil {
					return err
				}
				b.BootstrapTokens = append(b.BootstrapTokens, tok)
			}
			r, err := ignition.New(ignition.Input{Cluster: c, Secrets: b, Token: tok})
			if err != nil {
				return err
			}
			node := secrets.ControlPlaneNodeNames(c)[0]
			raw, err := r.Render(ignition.Node{Name: node, Role: v1alpha1.RoleControlPlane})
			if err != nil {
				return err
			}
			cfg, _, err := v3_5.Parse(raw)
			if err != nil {
				return err
			}
			n, err := controlplane.Extract(cfg)
			if err != nil {
				return err
			}
			in := cis.Input{Files: map[string][]byte{}}
			for _, f := range n.Files {
				in.Files[f.Path] = f.Data
			}
			for _, u := range []struct {
				unit  string
				flags *[]string
			}{
				{controlplane.UnitEtcd, &in.Etcd},
				{controlplane.UnitAPIServer, &in.APIServer},
				{controlplane.UnitControllerManager, &in.ControllerManager},
				{controlplane.UnitScheduler, &in.Scheduler},
			} {
				if *u.flags, err = n.Flags(u.unit); err != nil {
					return err
				}
			}
			findings := cis.Check(in)
			if format != "text" {
				if err := printStructured(g.out, format, findings); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tCOMPONENT\tRESULT\tCHECK\tDETAIL")
				for _, f := range findings {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.ID, f.Component, f.Result, f.Check, f.Detail)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if n := cis.Failed(findings); n > 0 {
				return fmt.Errorf("control plane of cluster %s (node %s): %d of %d checks failed", c.Metadata.Name, node, n, len(findings))
			}
			fmt.Fprintf(g.errOut, "control plane of cluster %s (node %s): all %d checks passed\n", c.Metadata.Name, node, len(findings))
			return nil
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	addFormatFlag(cmd, &format, formatText, formatJSON, formatYAML)
	return cmd
}

// ruleView is one rule as printed.
type ruleView struct {
	Role string `json:"role"`
	// Pool is set on the rules a node pool adds (spec.nodePools[].ingress).
	Pool      string   `json:"pool,omitempty"`
	Direction string   `json:"direction"`
	Proto     string   `json:"proto"`
	Ports     string   `json:"ports,omitempty"`
	From      []string `json:"from,omitempty"`
	To        []string `json:"to,omitempty"`
	Why       string   `json:"why"`
}

func newAuditNetwork(g *globals) *cobra.Command {
	var (
		specPath, format                   string
		sshAddr, keyPath, user, knownHosts string
		role, pool                         string
		timeout                            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Print the firewall intent per role, or compare a running node's ruleset with it over SSH",
		Long: `network computes the firewall intent from the cluster spec and prints, per role, every rule:
direction, protocol, ports, the peers allowed and why. Inbound, everything not listed is dropped;
established connections and loopback are always allowed. Outbound is open unless
spec.network.egress.policy is restricted. Rules a node pool adds (spec.nodePools[].ingress) are listed
with their pool. On AWS the intent becomes security groups; on vSphere, bare metal and QEMU each node
loads it as an nftables ruleset (table inet kiln_filter) at boot.

With --ssh, network logs in to a running node (key authentication; the host key must be in
--known-hosts), runs 'sudo -n nft -j list ruleset' there, and compares the node's table inet
kiln_filter with the ruleset the intent compiles to for --role (and --pool): every rule missing or
extra, and a chain whose hook or policy differs. Rule order and comments are not compared; other
tables are listed but not compared (they can drop more, never accept what kiln's table drops). It
exits non-zero when the node differs from the intent.`,
		Example: `  kiln audit network -f cluster.yaml
  kiln audit network -f cluster.yaml -o json
  kiln audit network -f cluster.yaml --ssh 10.0.0.21 --role worker --pool workers`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			if sshAddr != "" {
				return auditNode(cmd.Context(), g, auditNodeOptions{
					specPath: specPath, format: format, addr: sshAddr, keyPath: keyPath, user: user,
					knownHosts: knownHosts, role: role, pool: pool, timeout: timeout,
				})
			}
			c, err := loadSpec(specPath)
			if err != nil {
				return err
			}
			intent, err := nodeIntent(c)
			if err != nil {
				return err
			}
			roles := make([]string, 0, len(intent.Roles))
			for r := range intent.Roles {
				roles = append(roles, r)
			}
			sort.Strings(roles)
			var views []ruleView
			view := func(role, pool string, r firewall.Rule) ruleView {
				v := ruleView{Role: role, Pool: pool, Direction: r.Direction.String(), Proto: string(r.Proto), Ports: r.Ports.String(), Why: r.Why}
				for _, p := range r.From {
					v.From = append(v.From, p.String())
				}
				for _, p := range r.To {
					v.To = append(v.To, p.String())
				}
				return v
			}
			restricted := false
			for _, role := range roles {
				for _, r := range intent.Roles[role] {
					views = append(views, view(role, "", r))
					restricted = restricted || r.Direction == firewall.Out
				}
			}
			for _, p := range c.Spec.NodePools {
				for _, r := range intent.Pools[p.Name] {
					views = append(views, view(v1alpha1.RoleWorker, p.Name, r))
				}
			}
			if format != "text" {
				return printStructured(g.out, format, views)
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tDIR\tPROTO\tPORTS\tFROM/TO\tWHY")
			for _, v := range views {
				ports := v.Ports
				if ports == "" {
					ports = "-"
				}
				role := v.Role
				if v.Pool != "" {
					role += " (pool " + v.Pool + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", role, v.Direction, v.Proto, ports, strings.Join(append(v.From, v.To...), ","), v.Why)
			}
			fmt.Fprintln(tw, "*\tin\t*\t*\t*\teverything else inbound is dropped")
			if restricted {
				fmt.Fprintln(tw, "*\tout\t*\t*\t*\teverything else outbound is dropped (spec.network.egress.policy: restricted)")
			} else {
				fmt.Fprintln(tw, "*\tout\t*\t*\t*\toutbound is open (spec.network.egress.policy)")
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	addFormatFlag(cmd, &format, formatText, formatJSON, formatYAML)
	f.StringVar(&sshAddr, "ssh", "", "compare the ruleset of the node at HOST[:PORT] (default port 22) with the intent")
	f.StringVarP(&keyPath, "identity", "i", "", "SSH private key (default: the cluster's generated key from the state store)")
	f.StringVar(&user, "user", "", "SSH user, who must be allowed 'sudo -n nft' (default spec.ssh.user)")
	f.StringVar(&knownHosts, "known-hosts", "", "known_hosts file holding the node's host key (default ~/.ssh/known_hosts)")
	f.StringVar(&role, "role", "", "the node's role, control-plane or worker (required with --ssh)")
	f.StringVar(&pool, "pool", "", "the node pool of a worker (default: the only pool)")
	f.DurationVar(&timeout, "timeout", sshexec.DefaultTimeout, "how long the SSH connection and command may take")
	completeFlag(cmd, "role", roles...)
	cmd.MarkFlagFilename("identity")
	cmd.MarkFlagFilename("known-hosts")
	return cmd
}

type auditNodeOptions struct {
	specPath, format, addr, keyPath, user, knownHosts, role, pool string
	timeout                                                       time.Duration
}

// nodeRulesetCommand lists a node's ruleset as JSON; sudo -n fails at once rather than ask for a
// password.
const nodeRulesetCommand = "sudo -n nft -j list ruleset"

// auditNode compares a node's ruleset, read over SSH, with the intent of its role and pool.
func auditNode(ctx context.Context, g *globals, o auditNodeOptions) error {
	c, err := loadSpec(o.specPath)
	if err != nil {
		return err
	}
	switch o.role {
	case v1alpha1.RoleControlPlane:
		if o.pool != "" {
			return fmt.Errorf("--pool %s: a control-plane node has no pool", o.pool)
		}
	case v1alpha1.RoleWorker:
		if o.pool == "" {
			if len(c.Spec.NodePools) != 1 {
				return fmt.Errorf("--pool is required: cluster %s has %d node pools", c.Metadata.Name, len(c.Spec.NodePools))
			}
			o.pool = c.Spec.NodePools[0].Name
		}
		if !slices.ContainsFunc(c.Spec.NodePools, func(p v1alpha1.NodePool) bool { return p.Name == o.pool }) {
			return fmt.Errorf("--pool %s: no such node pool in cluster %s", o.pool, c.Metadata.Name)
		}
	case "":
		return fmt.Errorf("--role is required with --ssh: %s or %s", v1alpha1.RoleControlPlane, v1alpha1.RoleWorker)
	default:
		return fmt.Errorf("--role %s: unknown (want %s or %s)", o.role, v1alpha1.RoleControlPlane, v1alpha1.RoleWorker)
	}
	intent, err := nodeIntent(c)
	if err != nil {
		return err
	}
	if o.user == "" {
		o.user = c.Spec.SSH.User
	}
	var keyPEM []byte
	if o.keyPath != "" {
		if keyPEM, err = readlimit.ReadFile(o.keyPath, readlimit.Key); err != nil {
			return fmt.Errorf("-i: %w", err)
		}
	} else {
		_, b, err := g.loadCluster(o.specPath)
		if err != nil {
			return err
		}
		if len(b.SSH.PrivateKeyPEM) == 0 {
			return fmt.Errorf("cluster %s uses your own SSH keys (spec.ssh.authorizedKeys): give yours with -i", c.Metadata.Name)
		}
		keyPEM = b.SSH.PrivateKeyPEM
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		// The error of a wrong passphrase or format never holds the key.
		return fmt.Errorf("SSH private key %s: %w (an encrypted key is not supported: decrypt a copy)", orDefault(o.keyPath, "of the cluster"), err)
	}
	if o.knownHosts == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("--known-hosts: %w", err)
		}
		o.knownHosts = filepath.Join(home, ".ssh", "known_hosts")
	}
	addr := o.addr
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "22")
	}
	client, err := sshexec.Dial(ctx, addr, sshexec.Config{User: o.user, Signer: signer, KnownHosts: o.knownHosts, Timeout: o.timeout})
	if errors.Is(err, sshexec.ErrKnownHostsFile) {
		return fmt.Errorf("--known-hosts: %w (add the node's host key after checking its fingerprint)", err)
	}
	if err != nil {
		return err
	}
	defer client.Close()
	live, err := client.Run(ctx, nodeRulesetCommand)
	if err != nil {
		return err
	}
	rules := intent.Node(o.role, o.pool)
	res, err := firewall.Compare(rules, live.Stdout)
	if err != nil {
		return fmt.Errorf("%s@%s: %w", o.user, addr, err)
	}
	what := o.role
	if o.pool != "" {
		what += " (pool " + o.pool + ")"
	}
	if o.format != "text" {
		if err := printStructured(g.out, o.format, res); err != nil {
			return err
		}
	} else {
		if len(res.Differences) > 0 {
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CHAIN\tDIFFERENCE\tRULE\tWHY")
			for _, d := range res.Differences {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", orDefault(d.Chain, "-"), d.Kind, d.Rule, d.Why)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if len(res.OtherTables) > 0 {
			fmt.Fprintf(g.out, "other tables, not compared: %s\n", strings.Join(res.OtherTables, ", "))
		}
	}
	if n := len(res.Differences); n > 0 {
		return fmt.Errorf("%s: the ruleset differs from the %s intent in %d places", addr, what, n)
	}
	fmt.Fprintf(g.errOut, "%s: table inet %s matches the %s intent (%d rules)\n", addr, firewall.Table, what, res.Rules)
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// nodeIntent is the firewall intent of cluster c's nodes as its provider's placement renders it: where
// the control-plane nodes make the API endpoint, their rules say so.
func nodeIntent(c *v1alpha1.Cluster) (firewall.Intent, error) {
	pl, err := placement(c)
	if err != nil {
		return firewall.Intent{}, err
	}
	return pl.Intent(c)
}
