package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/rotate"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

func newRotate(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace a cluster's keys",
	}
	cmd.AddCommand(newRotateEncryptionKey(g), newRotateCerts(g))
	return cmd
}

func newRotateCerts(g *globals) *cobra.Command {
	var specPath, dir string
	var before, timeout time.Duration
	var all bool
	cmd := &cobra.Command{
		Use:   "certs -f cluster.yaml [--controlplane-dir DIR] [--renew-before 720h | --all]",
		Short: "Renew the cluster's leaf certificates before they expire, resumably",
		Long: `certs renews every leaf certificate of the cluster that expires within --renew-before (30 days by
default), or every one with --all: the API server's serving certificate, its client certificates to the kubelets, etcd and the
front proxy, etcd's serving and peer certificates, the controller manager's, the scheduler's and the
admin's. Each renewed certificate keeps its key, names and usages and is valid for a year; the CAs
are not renewed.

It goes in three steps: the state store gets the renewed certificates and a record of the renewal,
in one transaction; the control plane gets them; the record goes. If it stops in between (an error,
Ctrl-C, a crash), run it again: it finishes with the same certificates. Nothing due does nothing.

The control plane is that of a 'kiln controlplane run' on this machine (--controlplane-dir, or
NAME-control-plane when it holds one), else the cluster's running control-plane machines, reached
one at a time over SSH as the spec's admin user with the cluster's key and only their pinned host
keys (as 'kiln ssh'). Every certificate file and kubeconfig there that holds the key of a renewed
certificate gets the renewed one. kube-apiserver reloads its serving certificate without a restart,
so its clients never see it go away, and certs waits until it serves the renewed one; etcd takes its
renewed certificates at its next connection. The client certificates that kube-apiserver,
kube-controller-manager and kube-scheduler read when they start are used from their next restart;
the ones they hold stay valid until they expire. Nodes rendered from now on get the renewed ones.
See docs/security.md.`,
		Example: `  kiln rotate certs -f cluster.yaml                        # the cluster's control-plane machines
  kiln rotate certs -f cluster.yaml --all                  # renew every leaf certificate now
  kiln controlplane run -f cluster.yaml &
  kiln rotate certs -f cluster.yaml --controlplane-dir demo-control-plane`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if before <= 0 || before >= secrets.LeafValidity {
				return fmt.Errorf("--renew-before %v: must be positive and less than a renewed certificate's validity (%v)", before, secrets.LeafValidity)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c, t, err := g.rotateTarget(ctx, specPath, dir, controlplane.AdminKubeconfigFile)
			if err != nil {
				return err
			}
			defer t.close()
			servers := rotate.CertServers(controlplane.DirAPIServers{Dir: t.dir})
			if t.nodes != nil {
				servers = t.nodes
			}
			st, err := g.openState()
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := rotate.Certs(ctx, rotate.CertOptions{
				Cluster:     c.Metadata.Name,
				Store:       st,
				Servers:     servers,
				RenewBefore: before,
				All:         all,
				Rand:        rand.Reader,
				Progress:    g.errOut,
			})
			if err != nil {
				return fmt.Errorf("%w; run 'kiln rotate certs' again to finish", err)
			}
			if len(res.Renewed) == 0 {
				fmt.Fprintf(g.out, "cluster %s: no certificate expires within %v\n", c.Metadata.Name, before)
				return nil
			}
			fmt.Fprintf(g.out, "cluster %s: renewed %d certificates (%s), valid until %s\n", c.Metadata.Name, len(res.Renewed),
				strings.Join(res.Renewed, ", "), res.Expires.UTC().Format(time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	f.StringVar(&dir, "controlplane-dir", "", "directory of the running 'kiln controlplane run' (default NAME-control-plane if it holds one, else the control-plane machines)")
	f.DurationVar(&before, "renew-before", rotate.DefaultRenewBefore, "renew the certificates that expire within this")
	f.BoolVar(&all, "all", false, "renew every leaf certificate now, whenever it expires")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long it may take before it stops (run it again to finish)")
	return cmd
}

func newRotateEncryptionKey(g *globals) *cobra.Command {
	var specPath, kubeconfig, dir string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "encryption-key -f cluster.yaml --controlplane-dir DIR [--kubeconfig FILE]",
		Short: "Rotate the key that encrypts the cluster's Secrets at rest, resumably",
		Long: `encryption-key replaces the key with which kube-apiserver encrypts Secrets in etcd, by the procedure
Kubernetes documents, one step at a time, each recorded in the state store once it took effect:

  1. a new 32-byte key is made and recorded with the next key name (key1 -> key2 -> ...);
  2. every API server gets the new key second (it can read with it) and is restarted;
  3. every API server gets the new key first (it writes with it) and is restarted;
  4. every Secret is written back unchanged, so that etcd stores it under the new key;
  5. every API server gets the new key alone and is restarted; the state store keeps only the new key.

If it stops at any point (an error, Ctrl-C, a crash), run it again: it continues at the step that
did not finish, with the same new key; every step is safe to repeat. A control-plane node rendered
meanwhile gets the keys of the step reached. Nothing is printed of either key.

The API servers are those of a 'kiln controlplane run' on this machine (--controlplane-dir, or
NAME-control-plane when it holds one): rotate writes the encryption config in that directory and
the running controlplane restarts kube-apiserver with it. Otherwise they are the cluster's running
control-plane machines, reached one at a time over SSH as the spec's admin user with the cluster's
key and only their pinned host keys (as 'kiln ssh'): rotate writes the file on each, restarts its
kube-apiserver and waits for the API's /readyz before the next. The Secrets are rewritten with
--kubeconfig (default: DIR/admin.conf, or for machines a certificate of kiln's own valid for an
hour, through the provider as kiln apply reaches the API), which must be allowed to list and update
Secrets in every namespace. See docs/security.md.`,
		Example: `  kiln rotate encryption-key -f cluster.yaml                 # the cluster's control-plane machines
  kiln controlplane run -f cluster.yaml &                     # prints its admin kubeconfig
  kiln rotate encryption-key -f cluster.yaml --controlplane-dir demo-control-plane`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c, t, err := g.rotateTarget(ctx, specPath, dir, controlplane.EncryptionConfigAppliedFile)
			if err != nil {
				return err
			}
			defer t.close()
			servers := rotate.APIServers(controlplane.DirAPIServers{Dir: t.dir})
			var rc *rest.Config
			switch {
			case kubeconfig != "":
				rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
			case t.nodes != nil:
				rc, servers = t.nodes.rest, t.nodes
			default:
				rc, err = clientcmd.BuildConfigFromFlags("", filepath.Join(t.dir, controlplane.AdminKubeconfigFile))
			}
			if err != nil {
				return fmt.Errorf("--kubeconfig: %w", err)
			}
			client, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return fmt.Errorf("--kubeconfig: %w", err)
			}
			st, err := g.openState()
			if err != nil {
				return err
			}
			defer st.Close()
			started := time.Now()
			res, err := rotate.EncryptionKey(ctx, rotate.Options{
				Cluster:  c.Metadata.Name,
				Provider: c.Spec.Security.Encryption.Provider,
				Store:    st,
				Servers:  servers,
				Client:   client,
				Rand:     rand.Reader,
				Progress: g.errOut,
			})
			if err != nil {
				return fmt.Errorf("%w; run 'kiln rotate encryption-key' again to continue where it stopped", err)
			}
			fmt.Fprintf(g.out, "cluster %s: Secrets are encrypted with %s only (was %s); %d rewritten in %v\n",
				c.Metadata.Name, res.NewKeyName, res.OldKeyName, res.Rewritten, time.Since(started).Round(time.Second))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	f.StringVar(&dir, "controlplane-dir", "", "directory of the running 'kiln controlplane run' (default NAME-control-plane if it holds one, else the control-plane machines)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig with which to rewrite the Secrets (default DIR/admin.conf)")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "how long the whole rotation may take before it stops (run it again to continue)")
	return cmd
}

// rotateTarget is where a rotation reaches the control plane: dir, the directory of a running 'kiln
// controlplane run', or nodes, the cluster's control-plane machines.
type rotateTarget struct {
	dir   string
	nodes *nodeControlPlane
	tmp   string
}

func (t rotateTarget) close() {
	if t.tmp != "" {
		os.RemoveAll(t.tmp)
	}
}

// rotateTarget loads the spec and finds the control plane: the directory dir when given (it must
// hold marker, a file a running 'kiln controlplane run' keeps there), else NAME-control-plane when it
// holds marker, else the cluster's control-plane machines.
func (g *globals) rotateTarget(ctx context.Context, specPath, dir, marker string) (*v1alpha1.Cluster, rotateTarget, error) {
	c, b, err := g.loadCluster(specPath)
	if err != nil {
		return nil, rotateTarget{}, err
	}
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
			return nil, rotateTarget{}, fmt.Errorf("--controlplane-dir %s: no running 'kiln controlplane run' there: %w", dir, err)
		}
		return c, rotateTarget{dir: dir}, nil
	}
	d := c.Metadata.Name + "-control-plane"
	if _, err := os.Stat(filepath.Join(d, marker)); err == nil {
		return c, rotateTarget{dir: d}, nil
	}
	tmp, err := os.MkdirTemp("", "kiln-rotate-")
	if err != nil {
		return nil, rotateTarget{}, err
	}
	t := rotateTarget{tmp: tmp}
	if t.nodes, err = g.reachNodes(ctx, c, b, specPath, tmp); err != nil {
		t.close()
		return nil, rotateTarget{}, err
	}
	return c, t, nil
}
