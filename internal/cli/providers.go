package cli

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/access"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/onprem/metal"
	"github.com/kiln-dev/kiln/onprem/qemu"
	"github.com/kiln-dev/kiln/onprem/vsphere"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/addrpool"
	awsprovider "github.com/kiln-dev/kiln/provisioner/aws"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
)

// provider returns the provider the spec at specPath names, configured from its block of the spec.
func (g *globals) provider(ctx context.Context, c *v1alpha1.Cluster, specPath string) (provisioner.Provider, error) {
	if g.newProvider != nil {
		return g.newProvider(ctx, c)
	}
	switch name := c.Spec.Provider.Name; name {
	case v1alpha1.ProviderVSphere:
		return vsphereProvider(ctx, c, openingStore{g: g, mu: &g.state})
	case v1alpha1.ProviderAWS:
		return awsProvider(ctx, c)
	case v1alpha1.ProviderQEMU:
		// Machines live beside the state store; relative image paths are the spec file's neighbours.
		return qemu.New(qemu.FromSpec(c, filepath.Join(g.stateDir, "qemu"), filepath.Dir(specPath)))
	default:
		return nil, fmt.Errorf("spec.provider.name: provider %q cannot place machines in this build of kiln", name)
	}
}

// placement returns what the named provider does for the configs of its machines, as the provider
// declares it; rendering reads it and never asks which provider it is.
func placement(c *v1alpha1.Cluster) (ignition.Placement, error) {
	switch provider := c.Spec.Provider.Name; provider {
	case v1alpha1.ProviderAWS:
		return awsprovider.Placement(), nil
	case v1alpha1.ProviderVSphere:
		v := c.Spec.Provider.VSphere
		return vsphere.Placement(v != nil && v.ConfigServer != ""), nil
	case v1alpha1.ProviderQEMU:
		return qemu.Placement(), nil
	case v1alpha1.ProviderMetal:
		return metal.Placement(), nil
	default:
		return ignition.Placement{}, fmt.Errorf("provider %q: unknown (want %s)", provider, "aws, vsphere, metal or qemu")
	}
}

// addresses reserves, with the provider, the private address of node and of every control-plane node
// of cluster c, where the provider gives machines their addresses before their configs are rendered
// (provisioner.Addresser). It returns nothing where it does not, and an error if the placement says
// it must (the provider would be rendered configs without the addresses they need).
func addresses(ctx context.Context, p provisioner.Provider, pl ignition.Placement, c *v1alpha1.Cluster, node string) (map[string]netip.Addr, netip.Addr, error) {
	a, ok := p.(provisioner.Addresser)
	if !ok {
		if pl.NodeAddresses {
			return nil, netip.Addr{}, fmt.Errorf("provider %s: its nodes' configs need their addresses, but it cannot reserve them (no provisioner.Addresser)", c.Spec.Provider.Name)
		}
		return nil, netip.Addr{}, nil
	}
	cluster := c.Metadata.Name
	cp := map[string]netip.Addr{}
	for _, name := range secrets.ControlPlaneNodeNames(c) {
		addr, err := a.Reserve(ctx, cluster, name)
		if err != nil {
			return nil, netip.Addr{}, fmt.Errorf("reserve the address of %s: %w", name, err)
		}
		cp[name] = addr
	}
	addr, ok := cp[node]
	if !ok {
		var err error
		if addr, err = a.Reserve(ctx, cluster, node); err != nil {
			return nil, netip.Addr{}, fmt.Errorf("reserve the address of %s: %w", node, err)
		}
	}
	return cp, addr, nil
}

// endpointer is the capability of providers whose machines' ports are reached at addresses of their
// own (the local QEMU provider forwards SSH on loopback); "" for a port that cannot be reached.
type endpointer interface {
	Endpoint(m provisioner.Machine, port int) string
}

// prober returns how apply probes the machines of provider p: their SSH server, at the address the
// provider forwards it to, must prove the host keys the machine reported and kiln pinned (hostKeysOf,
// which pins a machine's first report). Machines of other providers sit in private networks kiln
// need not reach and report no host keys to it: they are heard of through their Nodes alone (nil),
// and unheardHint says what to configure for that.
func (g *globals) prober(c *v1alpha1.Cluster, p provisioner.Provider) converge.Prober {
	ep, ok := p.(endpointer)
	if !ok {
		return nil
	}
	return converge.TCPProber{Endpoint: ep.Endpoint, Log: g.log,
		HostKeys: func(ctx context.Context, m provisioner.Machine) ([]ssh.PublicKey, error) {
			mks, err := g.hostKeysOf(ctx, c, p, []provisioner.Machine{m}, 0)
			if err != nil {
				return nil, err
			}
			if mk := mks[0]; mk.pinned {
				g.log.Info("pinned the host keys the machine reported", "machine", m.Name, "keys", strings.Join(hostkeys.Fingerprints(mk.keys), ", "))
			}
			return mks[0].keys, mks[0].err
		}}
}

// unheardHint is what apply tells the user to configure when it can hear nothing of cluster c's
// machines: no SSH it can check, and the cluster's API not read.
func unheardHint(c *v1alpha1.Cluster, kubeconfig string) string {
	if kubeconfig != "" {
		return fmt.Sprintf("The API does not answer at the server of --kubeconfig %s: make it reachable from this host, "+
			"or give a kubeconfig that reaches it (kiln kubeconfig --server, through a tunnel of your own)", kubeconfig)
	}
	server, _ := access.Endpoint(c)
	return fmt.Sprintf("Provider %s reports no SSH host keys for kiln to check its machines' SSH against, so only their Nodes can say they are up: "+
		"make the cluster's API endpoint %s reachable from this host (kiln then reads the Nodes with a certificate of its own), "+
		"or give apply --kubeconfig FILE with a kubeconfig that reaches it (kiln kubeconfig --server, through a tunnel of your own)",
		c.Spec.Provider.Name, server)
}

// Environment variables of the vSphere provider: the spec holds no credentials.
const (
	envVSphereUser       = "KILN_VSPHERE_USERNAME"
	envVSpherePassword   = "KILN_VSPHERE_PASSWORD"
	envVSphereThumbprint = "KILN_VSPHERE_THUMBPRINT"
	envVSphereCAFile     = "KILN_VSPHERE_CA_FILE"
	envVSphereInsecure   = "KILN_VSPHERE_INSECURE"
)

// vsphereProvider logs in to the vCenter of the spec with the credentials of the environment; it keeps
// its machines' address reservations in st.
func vsphereProvider(ctx context.Context, c *v1alpha1.Cluster, st addrpool.Store) (provisioner.Provider, error) {
	if c.Spec.Provider.VSphere == nil {
		return nil, fmt.Errorf("spec.provider.vsphere: required for provider vsphere")
	}
	addrs, err := vsphere.AddressesFor(c, st)
	if err != nil {
		return nil, err
	}
	cfg := vsphere.Config{
		VSphereProvider: *c.Spec.Provider.VSphere,
		Username:        os.Getenv(envVSphereUser),
		Password:        os.Getenv(envVSpherePassword),
		Thumbprint:      os.Getenv(envVSphereThumbprint),
		CAFile:          os.Getenv(envVSphereCAFile),
		Insecure:        os.Getenv(envVSphereInsecure) == "true",
	}
	if cfg.Username == "" || cfg.Password == "" {
		return nil, fmt.Errorf("provider vsphere: set %s and %s to log in to %s", envVSphereUser, envVSpherePassword, cfg.Server)
	}
	return vsphere.New(ctx, cfg, addrs)
}

// Environment variables of the AWS provider, besides the SDK's own (AWS_PROFILE, AWS_REGION,
// AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, AWS_CA_BUNDLE, ...).
const (
	envAWSBucket      = "KILN_AWS_BUCKET"
	envAWSS3PathStyle = "KILN_AWS_S3_PATH_STYLE"
)

// awsProvider configures the AWS provider from the spec and the SDK's usual configuration chain.
func awsProvider(ctx context.Context, c *v1alpha1.Cluster) (provisioner.Provider, error) {
	o, err := awsprovider.OptionsFor(c)
	if err != nil {
		return nil, err
	}
	o.Bucket = os.Getenv(envAWSBucket)
	if o.Bucket == "" {
		return nil, fmt.Errorf("provider aws: set %s to the S3 bucket that carries the machines' configs until they joined (kiln does not create it)", envAWSBucket)
	}
	o.S3PathStyle = os.Getenv(envAWSS3PathStyle) == "true"
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(o.Region))
	if err != nil {
		return nil, fmt.Errorf("provider aws: load AWS configuration: %w", err)
	}
	return awsprovider.New(cfg, o)
}
