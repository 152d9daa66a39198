package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/rotate"
)

func newRotate(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace a cluster's keys",
	}
	cmd.AddCommand(newRotateEncryptionKey(g))
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

The API servers are those of a 'kiln controlplane run' on this machine (--controlplane-dir, default
NAME-control-plane): rotate writes the encryption config in that directory and the running
controlplane restarts kube-apiserver with it. Control-plane nodes on VMs are not reached yet (see
docs/security.md). The Secrets are rewritten with --kubeconfig (default: DIR/admin.conf), which must
be allowed to list and update Secrets in every namespace.`,
		Example: `  kiln controlplane run -f cluster.yaml &     # prints its admin kubeconfig
  kiln rotate encryption-key -f cluster.yaml --controlplane-dir demo-control-plane`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadSpec(specPath)
			if err != nil {
				return err
			}
			if dir == "" {
				dir = c.Metadata.Name + "-control-plane"
			}
			if _, err := os.Stat(filepath.Join(dir, controlplane.EncryptionConfigAppliedFile)); err != nil {
				return fmt.Errorf("--controlplane-dir %s: no running 'kiln controlplane run' there: %w", dir, err)
			}
			if kubeconfig == "" {
				kubeconfig = filepath.Join(dir, controlplane.AdminKubeconfigFile)
			}
			rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
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
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			started := time.Now()
			res, err := rotate.EncryptionKey(ctx, rotate.Options{
				Cluster:  c.Metadata.Name,
				Provider: c.Spec.Security.Encryption.Provider,
				Store:    st,
				Servers:  controlplane.DirAPIServers{Dir: dir},
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
	f.StringVar(&dir, "controlplane-dir", "", "directory of the running 'kiln controlplane run' (default NAME-control-plane)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig with which to rewrite the Secrets (default DIR/admin.conf)")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "how long the whole rotation may take before it stops (run it again to continue)")
	return cmd
}
