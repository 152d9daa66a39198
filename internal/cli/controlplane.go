package cli

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
)

func newControlPlane(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "controlplane",
		Short: "Run a cluster's control plane on this machine",
	}
	cmd.AddCommand(newControlPlaneRun(g))
	return cmd
}

func newControlPlaneRun(g *globals) *cobra.Command {
	var (
		specPath, dir, binDir string
		apiPort               int
		timeout               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Start etcd and the Kubernetes control plane from the rendered files, on loopback, until interrupted",
		Long: `run renders the first control-plane node's Ignition config, writes its files under --dir as Ignition
would write them under / (certificates and keys, the encryption, admission and audit configs, the
kubeconfigs, kiln's manifests, the systemd units), and starts etcd, kube-apiserver,
kube-controller-manager and kube-scheduler with exactly the rendered flags, moved to loopback:
paths point under --dir, ports are free loopback ports, kube-apiserver binds 127.0.0.1 (and
advertises 192.0.2.1, which it only writes into the kubernetes Service).

When the API server is ready it applies kiln's namespaces, RBAC bindings and bootstrap tokens as the
node's kiln-cluster-init.service does (the RBAC of kiln:cluster-init with the grant's credential, then
the manifests as kiln:cluster-init, both issued at render for hours; both removed), writes an admin
kubeconfig (DIR/admin.conf, mode 0600) and prints its path. It runs until interrupted (Ctrl-C,
SIGTERM), then stops the components in reverse order; it fails if one of them exits on its own.
While it runs it restarts kube-apiserver when DIR/etc/kubernetes/encryption-config.yaml changes:
that is how 'kiln rotate encryption-key' reaches it.

The programs are looked up in --bin-dir, $KILN_BIN_DIR and $PATH: the Kubernetes ones come from
'hack/tools.sh kubernetes', which builds etcd too. Logs are in DIR/log.`,
		Example: `  kiln controlplane run -f cluster.yaml --bin-dir "$(dirname "$(hack/tools.sh kubernetes)")"
  kubectl --kubeconfig demo-control-plane/admin.conf get namespaces`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var dirs []string
			if binDir != "" {
				dirs = append(dirs, binDir)
			}
			bins, err := controlplane.FindBinaries(dirs...)
			if err != nil {
				return err
			}
			c, err := loadSpec(specPath)
			if err != nil {
				return err
			}
			st, err := g.openState()
			if err != nil {
				return err
			}
			b, tok, err := joinToken(st, c, time.Now())
			st.Close()
			if err != nil {
				return err
			}
			if dir == "" {
				dir = c.Metadata.Name + "-control-plane"
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			started := time.Now()
			cp, err := controlplane.Start(ctx, ignition.Input{Cluster: c, Secrets: b, Token: tok}, controlplane.Options{
				Dir:          dir,
				Binaries:     bins,
				APIPort:      apiPort,
				Progress:     g.errOut,
				ReadyTimeout: timeout,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "control plane of cluster %s ready in %v: %s\n", c.Metadata.Name, time.Since(started).Round(time.Millisecond), cp.APIURL)
			fmt.Fprintf(g.out, "admin kubeconfig: %s\n", cp.AdminKubeconfig)
			fmt.Fprintf(g.out, "press Ctrl-C to stop\n")
			werr := cp.Wait(ctx)
			fmt.Fprintf(g.errOut, "stopping the control plane\n")
			serr := cp.Stop()
			if werr != nil {
				return werr
			}
			if serr != nil {
				return serr
			}
			fmt.Fprintf(g.errOut, "stopped\n")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	f.StringVar(&dir, "dir", "", "directory for the node's files and the logs (default NAME-control-plane)")
	f.StringVar(&binDir, "bin-dir", "", "directory holding etcd, kube-apiserver, kube-controller-manager and kube-scheduler (then $KILN_BIN_DIR, then $PATH)")
	f.IntVar(&apiPort, "api-port", 0, "loopback port of kube-apiserver (default: a free port)")
	f.DurationVar(&timeout, "timeout", controlplane.DefaultReadyTimeout, "how long etcd and kube-apiserver may each take to become ready")
	return cmd
}
