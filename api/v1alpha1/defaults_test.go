package v1alpha1

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSetDefaults(t *testing.T) {
	yes, no := true, false
	// filled is what SetDefaults makes of an otherwise empty cluster named demo on provider p.
	filled := func(p Provider) *Cluster {
		return &Cluster{
			Metadata: Metadata{Name: "demo"},
			Spec: ClusterSpec{
				KubernetesVersion: "v1.37.2",
				Provider:          p,
				Network: Network{
					NodeCIDR:       "10.0.0.0/16",
					PrivateSubnets: []string{"10.0.0.0/24"},
					PodCIDR:        "10.244.0.0/16",
					ServiceCIDR:    "10.96.0.0/12",
					ClusterDomain:  "cluster.local",
					APIEndpoint:    APIEndpoint{LoadBalancerName: "api.demo.kiln.internal", Port: 6443},
				},
				ControlPlane: ControlPlane{Count: 1},
				SSH:          SSH{User: "kiln"},
				Security: Security{
					PodSecurity:       PodSecurity{Defaults: PodSecurityLevels{Enforce: "baseline", Audit: "restricted", Warn: "restricted"}},
					Encryption:        Encryption{Provider: "secretbox"},
					Audit:             Audit{Enabled: &yes},
					BootstrapTokenTTL: Duration{time.Hour},
					EnrollmentTTL:     Duration{15 * time.Minute},
				},
				Health: Health{
					NodeStartupTimeout: Duration{10 * time.Minute},
					UnhealthyTimeout:   Duration{5 * time.Minute},
					MaxUnhealthy:       "40%",
				},
			},
		}
	}
	named := func(name string, p Provider) *Cluster {
		return &Cluster{Metadata: Metadata{Name: name}, Spec: ClusterSpec{Provider: p}}
	}
	tests := []struct {
		name string
		in   *Cluster
		want *Cluster
	}{
		{
			name: "qemu block created and filled",
			in:   named("demo", Provider{Name: ProviderQEMU}),
			want: func() *Cluster {
				c := filled(Provider{Name: ProviderQEMU, QEMU: &QEMUProvider{MemoryMiB: 2048, CPUs: 2, SSHPortBase: 2222, APIPortBase: 16443}})
				c.Spec.Network.APIEndpoint.Address = "10.0.0.5" // .5 of the first private subnet
				return c
			}(),
		},
		{
			name: "aws instance type",
			in:   named("demo", Provider{Name: ProviderAWS, AWS: &AWSProvider{Region: "eu-west-1"}}),
			want: filled(Provider{Name: ProviderAWS, AWS: &AWSProvider{Region: "eu-west-1", InstanceType: "m6i.large"}}),
		},
		{
			name: "metal inventory",
			in:   named("demo", Provider{Name: ProviderMetal}),
			want: filled(Provider{Name: ProviderMetal, Metal: &MetalProvider{Inventory: "machines.yaml"}}),
		},
		{
			name: "vsphere block created",
			in:   named("demo", Provider{Name: ProviderVSphere}),
			want: filled(Provider{Name: ProviderVSphere, VSphere: &VSphereProvider{}}),
		},
		{
			name: "unknown provider gets no block",
			in:   named("demo", Provider{Name: "gcp"}),
			want: filled(Provider{Name: "gcp"}),
		},
		{
			name: "pools get maxUnavailable and maxConcurrentReboots",
			in: func() *Cluster {
				c := named("demo", Provider{})
				c.Spec.NodePools = []NodePool{{Name: "a"}, {Name: "b", MaxUnavailable: 3, MaxConcurrentReboots: 2}}
				return c
			}(),
			want: func() *Cluster {
				c := filled(Provider{})
				c.Spec.NodePools = []NodePool{
					{Name: "a", MaxUnavailable: 1, MaxConcurrentReboots: 1},
					{Name: "b", MaxUnavailable: 3, MaxConcurrentReboots: 2},
				}
				return c
			}(),
		},
		{
			name: "maintenance windows get UTC, a zone given is kept",
			in: func() *Cluster {
				c := named("demo", Provider{})
				c.Spec.ControlPlane.MaintenanceWindow = &MaintenanceWindow{Schedule: "Sun 03:00-04:00"}
				c.Spec.NodePools = []NodePool{
					{Name: "a", MaintenanceWindow: &MaintenanceWindow{Schedule: "Mon-Fri 02:00-05:00"}},
					{Name: "b", MaintenanceWindow: &MaintenanceWindow{Schedule: "Sat 01:00-02:00", TimeZone: "Europe/Berlin"}},
				}
				return c
			}(),
			want: func() *Cluster {
				c := filled(Provider{})
				c.Spec.ControlPlane.MaintenanceWindow = &MaintenanceWindow{Schedule: "Sun 03:00-04:00", TimeZone: "UTC"}
				c.Spec.NodePools = []NodePool{
					{Name: "a", MaxUnavailable: 1, MaxConcurrentReboots: 1, MaintenanceWindow: &MaintenanceWindow{Schedule: "Mon-Fri 02:00-05:00", TimeZone: "UTC"}},
					{Name: "b", MaxUnavailable: 1, MaxConcurrentReboots: 1, MaintenanceWindow: &MaintenanceWindow{Schedule: "Sat 01:00-02:00", TimeZone: "Europe/Berlin"}},
				}
				return c
			}(),
		},
		{
			name: "set values are kept",
			in: func() *Cluster {
				c := filled(Provider{})
				c.Spec.Network.APIEndpoint.Port = 443
				c.Spec.Security.Audit.Enabled = &no
				c.Spec.Security.PodSecurity.Defaults.Enforce = "restricted"
				return c
			}(),
			want: func() *Cluster {
				c := filled(Provider{})
				c.Spec.Network.APIEndpoint.Port = 443
				c.Spec.Security.Audit.Enabled = &no
				c.Spec.Security.PodSecurity.Defaults.Enforce = "restricted"
				return c
			}(),
		},
		{
			name: "private subnet from a larger node CIDR",
			in: func() *Cluster {
				c := named("demo", Provider{})
				c.Spec.Network.NodeCIDR = "172.16.0.0/12"
				return c
			}(),
			want: func() *Cluster {
				c := filled(Provider{})
				c.Spec.Network.NodeCIDR = "172.16.0.0/12"
				c.Spec.Network.PrivateSubnets = []string{"172.16.0.0/24"}
				return c
			}(),
		},
		{
			name: "private subnet is a small node CIDR itself",
			in: func() *Cluster {
				c := named("demo", Provider{})
				c.Spec.Network.NodeCIDR = "192.168.1.64/26"
				return c
			}(),
			want: func() *Cluster {
				c := filled(Provider{})
				c.Spec.Network.NodeCIDR = "192.168.1.64/26"
				c.Spec.Network.PrivateSubnets = []string{"192.168.1.64/26"}
				return c
			}(),
		},
		{
			name: "IPv6 private subnet is a /64",
			in: func() *Cluster {
				c := named("demo", Provider{})
				c.Spec.Network.NodeCIDR = "fd00:10::/56"
				return c
			}(),
			want: func() *Cluster {
				c := filled(Provider{})
				c.Spec.Network.NodeCIDR = "fd00:10::/56"
				c.Spec.Network.PrivateSubnets = []string{"fd00:10::/64"}
				return c
			}(),
		},
		{
			name: "no private subnet from an invalid node CIDR",
			in: func() *Cluster {
				c := named("demo", Provider{})
				c.Spec.Network.NodeCIDR = "10.0.0.1/16"
				return c
			}(),
			want: func() *Cluster {
				c := filled(Provider{})
				c.Spec.Network.NodeCIDR = "10.0.0.1/16"
				c.Spec.Network.PrivateSubnets = nil
				return c
			}(),
		},
		{
			name: "no load balancer name from an invalid cluster name",
			in:   named("Demo", Provider{}),
			want: func() *Cluster {
				c := filled(Provider{})
				c.Metadata.Name = "Demo"
				c.Spec.Network.APIEndpoint.LoadBalancerName = ""
				return c
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			SetDefaults(tc.in)
			if diff := cmp.Diff(tc.want, tc.in); diff != "" {
				t.Errorf("SetDefaults (-want +got):\n%s", diff)
			}
		})
	}
}
