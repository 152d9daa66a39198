package cli

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/atomicfile"
)

func newInit(g *globals) *cobra.Command {
	var (
		specPath string
		provider string
		keysPath string
		image    string
		workers  int
	)
	cmd := &cobra.Command{
		Use:   "init NAME",
		Short: "Start a cluster: write a starter spec and generate the cluster's secrets",
		Long: `init writes a starter cluster spec and generates, once, everything secret the cluster needs:
the cluster, etcd and front-proxy CAs, the service-account key pair, the API server, etcd and client
certificates, a unique ed25519 SSH key pair (unless --ssh-authorized-keys brings your own public keys),
and the 32-byte secrets-encryption key. They go into the state store, encrypted; no two clusters
share a CA or a key. init never overwrites a spec file or regenerates a cluster's secrets. It makes
no bootstrap token: tokens are short-lived and made when a machine's config is rendered, one per
machine by 'kiln apply'.`,
		Example: `  kiln init demo                      # writes cluster.yaml, secrets into the state store
  kiln init prod -f prod.yaml --ssh-authorized-keys ~/.ssh/id_ed25519.pub`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInit(g, args[0], specPath, provider, keysPath, image, workers)
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "where to write the starter spec (must not exist)")
	cmd.Flags().StringVar(&provider, "provider", v1alpha1.ProviderQEMU, "provider of the starter spec: qemu, metal, vsphere or aws")
	cmd.Flags().StringVar(&image, "image", "", "image every node boots (for qemu a qcow2 path); defaults to "+v1alpha1.StarterImage)
	cmd.Flags().IntVar(&workers, "workers", 2, "machines of the starter's node pool")
	cmd.Flags().StringVar(&keysPath, "ssh-authorized-keys", "", "use the public keys in this file instead of generating an SSH key pair")
	completeFlag(cmd, "provider", providers...)
	return cmd
}

func runInit(g *globals, name, specPath, provider, keysPath, image string, workers int) error {
	c := v1alpha1.Starter(name)
	for i := range c.Spec.NodePools {
		c.Spec.NodePools[i].Count = workers
	}
	if err := setStarterProvider(c, provider); err != nil {
		return err
	}
	if image != "" {
		c.Spec.ControlPlane.Image = image
		for i := range c.Spec.NodePools {
			c.Spec.NodePools[i].Image = image
		}
	}
	if keysPath != "" {
		data, err := readlimit.ReadFile(keysPath, readlimit.Key)
		if err != nil {
			return fmt.Errorf("--ssh-authorized-keys: %w", err)
		}
		var keys []string
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				keys = append(keys, l)
			}
		}
		c.Spec.SSH.Generate = false
		c.Spec.SSH.AuthorizedKeys = keys
	}
	spec, err := v1alpha1.Marshal(c)
	if err != nil {
		return err
	}
	// The starter must be valid as written; if it is not (a bad name, bad keys), say so before
	// anything is generated or written.
	c, err = v1alpha1.Decode(spec, specPath)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(specPath); err == nil {
		return fmt.Errorf("%s already exists; init does not overwrite a spec (choose another path with -f)", specPath)
	}
	st, err := g.openState()
	if err != nil {
		return err
	}
	defer st.Close()

	now := time.Now()
	b, err := secrets.Generate(c, rand.Reader, now)
	if err != nil {
		return err
	}

	// Spec first, exclusively; secrets second; the spec is removed again if the secrets cannot be kept.
	if err := atomicfile.Write(specPath, spec, 0o644, true); err != nil {
		return err
	}
	if err := secrets.Save(st, name, b); err != nil {
		os.Remove(specPath)
		if errors.Is(err, state.ErrExists) {
			return fmt.Errorf("cluster %q already has secrets in %s; kiln never regenerates a cluster's secrets", name, g.stateDir)
		}
		return err
	}
	fmt.Fprintf(g.out, "cluster %s initialised\n  spec:    %s\n  secrets: %s (encrypted)\n", name, specPath, stateFile(g.stateDir))
	if c.Spec.SSH.Generate {
		fmt.Fprintf(g.out, "  ssh:     a new ed25519 key pair; export the private key with 'kiln ssh-key -f %s --output-file FILE'\n", specPath)
	} else {
		fmt.Fprintf(g.out, "  ssh:     %d authorized key(s) of yours\n", len(c.Spec.SSH.AuthorizedKeys))
	}
	fmt.Fprintf(g.out, "next: kiln render ignition -f %s --role worker --pool %s --node %s-%s-0\n",
		specPath, firstPool(c), name, firstPool(c))
	return nil
}

// qemuHostCIDR is the host as QEMU user-mode networking shows it to a guest.
const qemuHostCIDR = "10.0.2.2/32"

func firstPool(c *v1alpha1.Cluster) string {
	if len(c.Spec.NodePools) == 0 {
		return "workers"
	}
	return c.Spec.NodePools[0].Name
}

// setStarterProvider switches the starter spec to a provider, with the block it needs as
// placeholders the user fills in.
func setStarterProvider(c *v1alpha1.Cluster, provider string) error {
	p := &c.Spec.Provider
	*p = v1alpha1.Provider{Name: provider}
	switch provider {
	case v1alpha1.ProviderQEMU:
		p.QEMU = &v1alpha1.QEMUProvider{}
		// QEMU's user networking forwards SSH from 127.0.0.1 on the host; the guest sees it come from
		// the host's address on that network, 10.0.2.2, and its firewall must let that through.
		c.Spec.Network.AdminCIDRs = []string{qemuHostCIDR}
	case v1alpha1.ProviderMetal:
		p.Metal = &v1alpha1.MetalProvider{Inventory: "machines.yaml"}
		// The starter's endpoint address, .5 of the first private subnet (the qemu default), stands for
		// an unused address of the machines' subnet, which keepalived will hold.
	case v1alpha1.ProviderVSphere:
		p.VSphere = &v1alpha1.VSphereProvider{Server: "vcenter.example.internal", Datacenter: "dc1",
			Datastore: "datastore1", Network: "kiln-private"}
		// As for metal: an unused address of the port group's subnet.
	case v1alpha1.ProviderAWS:
		p.AWS = &v1alpha1.AWSProvider{Region: "eu-central-1", AvailabilityZones: []string{"eu-central-1a", "eu-central-1b"}}
		// The NLB's DNS name is the endpoint; AWS chooses its addresses.
		c.Spec.Network.APIEndpoint.Address = ""
	default:
		return fmt.Errorf("--provider %q: unknown (want qemu, metal, vsphere or aws)", provider)
	}
	return nil
}

func newSSHKey(g *globals) *cobra.Command {
	var specPath, deprecatedOut, outPath string
	cmd := &cobra.Command{
		Use:     "ssh-key --output-file FILE",
		Short:   "Export the cluster's generated SSH private key to a file (mode 0600)",
		Example: `  kiln ssh-key -f cluster.yaml --output-file ~/.ssh/kiln-demo`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("output") {
				var err error
				if outPath, err = resolveOutputFile(g.errOut, &deprecatedOut, outPath); err != nil {
					return err
				}
			}
			if outPath == "" {
				return errors.New("--output-file is required: the file to write the private key to")
			}
			c, b, err := g.loadCluster(specPath)
			if err != nil {
				return err
			}
			if len(b.SSH.PrivateKeyPEM) == 0 {
				return fmt.Errorf("cluster %s uses your own SSH keys (spec.ssh.authorizedKeys); kiln holds no private key for it", c.Metadata.Name)
			}
			if err := atomicfile.Write(outPath, b.SSH.PrivateKeyPEM, 0o600, true); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "wrote %s (0600); ssh -i %s %s@NODE\n", outPath, outPath, c.Spec.SSH.User)
			return nil
		},
	}
	cmd.Flags().StringVarP(&specPath, "file", "f", "cluster.yaml", "cluster spec")
	addOutputFileFlag(cmd, &outPath, "file to write the private key to (must not exist)")
	// -o FILE of earlier releases, for one more release; ssh-key has no output formats.
	cmd.Flags().StringVarP(&deprecatedOut, "output", "o", "", "deprecated: use --output-file")
	cmd.Flags().MarkHidden("output")
	return cmd
}
