package v1alpha1

import (
	"net/netip"
	"time"
)

// Defaults documented on the fields.
const (
	DefaultKubernetesVersion    = "v1.37.2"
	DefaultNodeCIDR             = "10.0.0.0/16"
	DefaultPodCIDR              = "10.244.0.0/16"
	DefaultServiceCIDR          = "10.96.0.0/12"
	DefaultClusterDomain        = "cluster.local"
	DefaultAPIPort              = 6443
	DefaultControlPlaneCount    = 1
	DefaultMaxUnavailable       = 1
	DefaultMaxConcurrentReboots = 1
	DefaultTimeZone             = "UTC"
	DefaultSSHUser              = "kiln"
	DefaultEncryption           = EncryptionSecretbox
	DefaultBootstrapTokenTTL    = time.Hour
	DefaultEnrollmentTTL        = 15 * time.Minute
	DefaultNodeStartupTimeout   = 10 * time.Minute
	DefaultUnhealthyTimeout     = 5 * time.Minute
	DefaultMaxUnhealthy         = "40%"
	DefaultQEMUMemoryMiB        = 2048
	DefaultQEMUCPUs             = 2
	DefaultQEMUSSHPortBase      = 2222
	DefaultQEMUAPIPortBase      = 16443
	DefaultAWSInstanceType      = "m6i.large"
	DefaultMetalInventory       = "machines.yaml"
)

// APIServerPortBehindVIP is the port kube-apiserver listens on where the API endpoint is made on the
// control-plane nodes (qemu, vsphere, metal): haproxy holds spec.network.apiEndpoint.port on every
// address of those nodes and forwards it to the kube-apiservers on this port.
const APIServerPortBehindVIP = 6444

// QEMUEndpointHost is the host number, in the first private subnet, of the default API endpoint
// address on qemu: below qemuFirstMachineHost, where the QEMU provider starts giving machines theirs.
const (
	QEMUEndpointHost     = 5
	qemuFirstMachineHost = 10
)

// LoadBalancerName is the default DNS name of the API load balancer of the cluster called name.
func LoadBalancerName(name string) string { return "api." + name + ".kiln.internal" }

// SetDefaults fills every empty field that has a default, as documented on the field. A zero value
// counts as empty. The block of Provider.Name is created if it is missing, so that after SetDefaults
// the block of a known provider is never nil. Values it cannot derive a default from (an invalid
// NodeCIDR for PrivateSubnets, an invalid name for the load balancer) are left for Validate to report.
func SetDefaults(c *Cluster) {
	s := &c.Spec
	setString(&s.KubernetesVersion, DefaultKubernetesVersion)

	switch s.Provider.Name {
	case ProviderAWS:
		if s.Provider.AWS == nil {
			s.Provider.AWS = &AWSProvider{}
		}
	case ProviderVSphere:
		if s.Provider.VSphere == nil {
			s.Provider.VSphere = &VSphereProvider{}
		}
	case ProviderMetal:
		if s.Provider.Metal == nil {
			s.Provider.Metal = &MetalProvider{}
		}
	case ProviderQEMU:
		if s.Provider.QEMU == nil {
			s.Provider.QEMU = &QEMUProvider{}
		}
	}
	if p := s.Provider.AWS; p != nil {
		setString(&p.InstanceType, DefaultAWSInstanceType)
	}
	if p := s.Provider.Metal; p != nil {
		setString(&p.Inventory, DefaultMetalInventory)
	}
	if p := s.Provider.QEMU; p != nil {
		setInt(&p.MemoryMiB, DefaultQEMUMemoryMiB)
		setInt(&p.CPUs, DefaultQEMUCPUs)
		setInt(&p.SSHPortBase, DefaultQEMUSSHPortBase)
		setInt(&p.APIPortBase, DefaultQEMUAPIPortBase)
	}

	n := &s.Network
	setString(&n.NodeCIDR, DefaultNodeCIDR)
	if len(n.PrivateSubnets) == 0 {
		if sub, ok := firstSubnet(n.NodeCIDR); ok {
			n.PrivateSubnets = []string{sub.String()}
		}
	}
	setString(&n.PodCIDR, DefaultPodCIDR)
	setString(&n.ServiceCIDR, DefaultServiceCIDR)
	setString(&n.ClusterDomain, DefaultClusterDomain)
	if n.APIEndpoint.LoadBalancerName == "" && isDNSLabel(c.Metadata.Name) {
		n.APIEndpoint.LoadBalancerName = LoadBalancerName(c.Metadata.Name)
	}
	setInt(&n.APIEndpoint.Port, DefaultAPIPort)
	if s.Provider.Name == ProviderQEMU && n.APIEndpoint.Address == "" && len(n.PrivateSubnets) > 0 {
		if a, ok := hostAddress(n.PrivateSubnets[0], QEMUEndpointHost); ok {
			n.APIEndpoint.Address = a.String()
		}
	}

	setInt(&s.ControlPlane.Count, DefaultControlPlaneCount)
	setWindow(s.ControlPlane.MaintenanceWindow)
	for i := range s.NodePools {
		p := &s.NodePools[i]
		setInt(&p.MaxUnavailable, DefaultMaxUnavailable)
		setInt(&p.MaxConcurrentReboots, DefaultMaxConcurrentReboots)
		setWindow(p.MaintenanceWindow)
	}

	setString(&s.SSH.User, DefaultSSHUser)

	ps := &s.Security.PodSecurity.Defaults
	setString(&ps.Enforce, LevelBaseline)
	setString(&ps.Audit, LevelRestricted)
	setString(&ps.Warn, LevelRestricted)
	setString(&s.Security.Encryption.Provider, DefaultEncryption)
	if s.Security.Audit.Enabled == nil {
		enabled := true
		s.Security.Audit.Enabled = &enabled
	}
	setDuration(&s.Security.BootstrapTokenTTL, DefaultBootstrapTokenTTL)
	setDuration(&s.Security.EnrollmentTTL, DefaultEnrollmentTTL)

	setDuration(&s.Health.NodeStartupTimeout, DefaultNodeStartupTimeout)
	setDuration(&s.Health.UnhealthyTimeout, DefaultUnhealthyTimeout)
	setString(&s.Health.MaxUnhealthy, DefaultMaxUnhealthy)
}

// firstSubnet is the first /24 (IPv4) or /64 (IPv6) of cidr, or cidr itself if it is smaller.
func firstSubnet(cidr string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || p != p.Masked() {
		return netip.Prefix{}, false
	}
	bits := 24
	if p.Addr().Is6() {
		bits = 64
	}
	if p.Bits() >= bits {
		return p, true
	}
	return netip.PrefixFrom(p.Addr(), bits), true
}

// hostAddress is the address n hosts into the network cidr (n = 5: 10.0.0.5 of 10.0.0.0/24), if
// cidr is a network with no host bits set that holds it and is not its last address.
func hostAddress(cidr string, n int) (netip.Addr, bool) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || p != p.Masked() {
		return netip.Addr{}, false
	}
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	if !p.Contains(a) || !p.Contains(a.Next()) {
		return netip.Addr{}, false
	}
	return a, true
}

func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func setInt(i *int, def int) {
	if *i == 0 {
		*i = def
	}
}

func setWindow(m *MaintenanceWindow) {
	if m != nil {
		setString(&m.TimeZone, DefaultTimeZone)
	}
}

func setDuration(d *Duration, def time.Duration) {
	if d.Duration == 0 {
		d.Duration = def
	}
}
