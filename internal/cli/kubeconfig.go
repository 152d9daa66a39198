package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/access"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/state/atomicfile"
)

type kubeconfigOptions struct {
	specPath string
	user     string
	groups   []string
	ttl      time.Duration
	admin    bool
	outFile  string
	server   string
}

func newKubeconfig(g *globals) *cobra.Command {
	o := kubeconfigOptions{}
	cmd := &cobra.Command{
		Use:   "kubeconfig -f cluster.yaml [--user U] [--groups G,...] [--ttl D] [--output-file F]",
		Short: "Issue a kubeconfig with a short-lived client certificate for the cluster's API",
		Long: `kubeconfig writes a kubeconfig for the cluster's API endpoint whose credential is a client
certificate issued now from the cluster CA in the state store, for --user (default kiln:<your login>)
in --groups, valid for --ttl (default 1h, at most 24h). Its key is made for it and kept nowhere but in
the kubeconfig: there is no revoking a client certificate in Kubernetes, so it is short-lived and
what it may do is what RBAC binds to its user and groups. Issue a new one when it expires.

  - An unbound user authenticates and may do nothing (403); bind it, or its groups, with RBAC.
  - --groups kiln:cluster-admins is cluster-admin through kiln's RBAC binding, which can be removed.
  - --admin adds system:masters, which bypasses RBAC altogether: for when RBAC itself is broken. It
    is given only with that flag, with a warning; system:masters in --groups is refused, and so is
    any other system: user or group, which Kubernetes keeps for its own components.

The server is --server if given; else, on a provider that forwards the API endpoint to this host
(the local QEMU provider), that address; else the spec's endpoint,
https://<network.apiEndpoint.loadBalancerName>:<port>. The kubeconfig trusts the cluster CA alone;
when the server is an IP address or a forwarded port on loopback, it checks the API server's
certificate against the load balancer's name (tls-server-name), so that TLS verification stays on.

It is written with mode 0600 to --output-file (replacing a file there), or to standard output.`,
		Example: `  # An hour as yourself, in a group that RBAC binds for you
  kiln kubeconfig -f cluster.yaml --groups kiln:developers --output-file demo.conf
  kubectl --kubeconfig demo.conf get pods -A

  # Cluster-admin through kiln's RBAC binding, for half an hour
  kiln kubeconfig -f cluster.yaml --user kiln:ops-alice --groups kiln:cluster-admins --ttl 30m --output-file admin.conf

  # Break glass: system:masters for 15 minutes (prints a warning)
  kiln kubeconfig -f cluster.yaml --admin --ttl 15m --output-file masters.conf

  # Through a tunnel of your own; TLS is still checked against the API endpoint's name
  ssh -L 16443:10.0.0.10:6443 bastion &
  kiln kubeconfig -f cluster.yaml --server https://127.0.0.1:16443 --output-file tunnel.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKubeconfig(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.specPath, "file", "f", "cluster.yaml", "cluster spec")
	f.StringVar(&o.user, "user", "", "user name, the certificate's common name (default kiln:<your login>)")
	f.StringSliceVar(&o.groups, "groups", nil, "groups, the certificate's organizations (comma-separated or repeated)")
	f.DurationVar(&o.ttl, "ttl", access.DefaultTTL, fmt.Sprintf("how long the certificate is valid, at most %s", formatTTL(access.MaxTTL)))
	f.BoolVar(&o.admin, "admin", false, "add system:masters, which bypasses RBAC (prints a warning)")
	addOutputFileFlag(cmd, &o.outFile, "file to write (mode 0600); default standard output")
	f.StringVar(&o.server, "server", "", "API server URL to write (default: the provider's forwarded address, else the spec's endpoint)")
	return cmd
}

func runKubeconfig(ctx context.Context, g *globals, o kubeconfigOptions) error {
	c, b, err := g.loadCluster(o.specPath)
	if err != nil {
		return err
	}
	if o.user == "" {
		if o.user, err = defaultUser(); err != nil {
			return err
		}
	}
	if o.ttl <= 0 {
		return fmt.Errorf("--ttl %s: not positive", o.ttl)
	}
	if o.ttl > access.MaxTTL {
		return fmt.Errorf("--ttl %s: at most %s; a kubeconfig from kiln is short-lived: issue a new one when it expires", formatTTL(o.ttl), formatTTL(access.MaxTTL))
	}
	specServer, _ := access.Endpoint(c)
	req := access.Request{Cluster: c.Metadata.Name, Server: specServer, User: o.user, Groups: o.groups, TTL: o.ttl, Admin: o.admin}
	// Refuse what is refused before asking the provider anything.
	if err := req.Check(); err != nil {
		return err
	}
	if o.server != "" {
		if _, err := access.TLSServerName(o.server, ""); err != nil {
			return fmt.Errorf("--server: %w", err)
		}
	}
	var p provisioner.Provider
	if o.server == "" {
		if p, err = g.provider(ctx, c, o.specPath); err != nil {
			fmt.Fprintf(g.errOut, "kiln: warning: provider %s: %v; the kubeconfig names the spec's endpoint %s (choose another with --server)\n",
				c.Spec.Provider.Name, err, specServer)
			p = nil
		}
	}
	server, tlsName, err := apiEndpoint(ctx, c, p, o.server)
	if errors.Is(err, provisioner.ErrNotReachable) {
		return fmt.Errorf("%w; create its control plane with 'kiln apply -f %s', or name a server with --server", err, o.specPath)
	}
	if err != nil {
		return err
	}
	req.Server, req.TLSServerName = server, tlsName
	cred, err := access.Issue(&b.ClusterCA, rand.Reader, time.Now(), req)
	if err != nil {
		return err
	}
	if o.admin {
		fmt.Fprintf(g.errOut, "kiln: warning: --admin: this kubeconfig is in %s, which bypasses RBAC and cannot be revoked; "+
			"it is valid for %s, until %s. Keep it for as long as you need it and no longer\n",
			access.MastersGroup, formatTTL(o.ttl), cred.NotAfter.Format(time.RFC3339))
	}
	what := fmt.Sprintf("%s in [%s] for %s, valid for %s until %s", cred.User, strings.Join(cred.Groups, ", "), server,
		formatTTL(o.ttl), cred.NotAfter.Format(time.RFC3339))
	if o.outFile == "" || o.outFile == "-" {
		if _, err := g.out.Write(cred.Kubeconfig); err != nil {
			return err
		}
		fmt.Fprintf(g.errOut, "kubeconfig of %s\n", what)
		return nil
	}
	if err := atomicfile.Write(o.outFile, cred.Kubeconfig, 0o600, false); err != nil {
		return err
	}
	fmt.Fprintf(g.errOut, "wrote %s: %s\n", o.outFile, what)
	return nil
}

// apiEndpoint returns the URL at which this host reaches cluster c's API, and the name to check the
// API server's certificate against ("" for the URL's own host): server if it is given; else, when p
// forwards the endpoint to this host (provisioner.APIReacher), that address, or an error wrapping
// provisioner.ErrNotReachable while nothing forwards it; else the spec's endpoint. p may be nil.
func apiEndpoint(ctx context.Context, c *v1alpha1.Cluster, p provisioner.Provider, server string) (string, string, error) {
	specServer, lb := access.Endpoint(c)
	if server == "" {
		server = specServer
		if r, ok := p.(provisioner.APIReacher); ok {
			addr, err := r.APIAddress(ctx, c.Metadata.Name)
			if err != nil {
				return "", "", fmt.Errorf("the API of cluster %s: %w", c.Metadata.Name, err)
			}
			server = "https://" + addr
		}
	}
	name, err := access.TLSServerName(server, lb)
	if err != nil {
		return "", "", err
	}
	return server, name, nil
}

// defaultUser is kiln:<login name>.
func defaultUser() (string, error) {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		return "", errors.New("cannot tell who you are (no user name, no $USER): name the user with --user")
	}
	return "kiln:" + name, nil
}

// formatTTL writes d as 1h, 30m, 1h30m or 90s rather than Go's 1h0m0s.
func formatTTL(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
