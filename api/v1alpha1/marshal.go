package v1alpha1

import (
	"fmt"

	"github.com/kiln-dev/kiln/api/strictyaml"
)

// Marshal writes c as YAML that Decode reads back: the json tag names as keys (camelCase), in the
// order the fields are declared, empty optional fields left out, two-space indentation, durations as
// Go duration strings without zero units ("1h"). See strictyaml.Marshal.
func Marshal(c *Cluster) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("marshal: nil cluster")
	}
	return strictyaml.Marshal(c)
}

// StarterImage is the image a starter spec boots from: the QEMU image that `kiln bake` writes.
const StarterImage = "kiln-debian-12.qcow2"

// Starter returns the spec `kiln init NAME` writes: a cluster on local QEMU VMs with one control plane
// and a pool "workers" of two, a generated SSH key, SSH reachable from this machine only, and Pod
// Security that lets kube-system run privileged pods while default enforces restricted. Defaults are
// filled in, so that the file shows every setting there is to change.
func Starter(name string) *Cluster {
	c := &Cluster{
		APIVersion: GroupVersion,
		Kind:       KindCluster,
		Metadata:   Metadata{Name: name},
		Spec: ClusterSpec{
			Provider: Provider{Name: ProviderQEMU, QEMU: &QEMUProvider{}},
			Network: Network{
				AdminCIDRs: []string{"127.0.0.1/32"},
			},
			ControlPlane: ControlPlane{Count: 1, Image: StarterImage},
			NodePools: []NodePool{
				{Name: "workers", Count: 2, Image: StarterImage},
			},
			SSH: SSH{Generate: true},
			Security: Security{
				PodSecurity: PodSecurity{
					Namespaces: map[string]PodSecurityLevels{
						"kube-system": {Enforce: LevelPrivileged},
						"default":     {Enforce: LevelRestricted},
					},
				},
			},
		},
	}
	SetDefaults(c)
	return c
}
