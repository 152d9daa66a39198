// Package v1alpha1 is the kiln cluster spec, apiVersion kiln.dev/v1alpha1: the types a user writes in
// cluster.yaml, their defaults and validation, and Decode and Marshal, which read and write a Cluster
// through api/strictyaml (every finding with its YAML path and line:column). It imports nothing of kiln
// outside api/.
package v1alpha1

import (
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api/window"
)

// GroupVersion is the apiVersion of this package's documents.
const GroupVersion = "kiln.dev/v1alpha1"

// KindCluster is the kind of a cluster spec document.
const KindCluster = "Cluster"

// Provider names.
const (
	ProviderAWS     = "aws"
	ProviderVSphere = "vsphere"
	ProviderMetal   = "metal"
	ProviderQEMU    = "qemu"
)

// Encryption providers for Secrets at rest.
const (
	EncryptionAESCBC    = "aescbc"
	EncryptionAESGCM    = "aesgcm"
	EncryptionSecretbox = "secretbox"
)

// Pod Security levels.
const (
	LevelPrivileged = "privileged"
	LevelBaseline   = "baseline"
	LevelRestricted = "restricted"
)

// Cluster is one kiln cluster: where its machines run, how they are networked, and the security choices
// that every node is rendered with.
type Cluster struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   Metadata    `json:"metadata"`
	Spec       ClusterSpec `json:"spec"`
}

// Metadata names the cluster.
type Metadata struct {
	// Name is a DNS label (lowercase letters, digits, '-', at most 40 characters); it prefixes every
	// machine name and tags every cloud resource.
	Name string `json:"name"`
}

// ClusterSpec is the desired state of the cluster.
type ClusterSpec struct {
	// KubernetesVersion of the node binaries baked into the image. Defaults to "v1.37.2".
	KubernetesVersion string       `json:"kubernetesVersion,omitempty"`
	Provider          Provider     `json:"provider"`
	Network           Network      `json:"network"`
	ControlPlane      ControlPlane `json:"controlPlane"`
	NodePools         []NodePool   `json:"nodePools,omitempty"`
	SSH               SSH          `json:"ssh"`
	Security          Security     `json:"security,omitempty"`
	Health            Health       `json:"health,omitempty"`
}

// Provider says where the machines run. Name is one of aws, vsphere, metal, qemu; only the block of
// that name may be set.
type Provider struct {
	Name    string           `json:"name"`
	AWS     *AWSProvider     `json:"aws,omitempty"`
	VSphere *VSphereProvider `json:"vsphere,omitempty"`
	Metal   *MetalProvider   `json:"metal,omitempty"`
	QEMU    *QEMUProvider    `json:"qemu,omitempty"`
}

// AWSProvider places nodes into private subnets of a VPC.
type AWSProvider struct {
	Region string `json:"region"`
	// VPCID of an existing VPC to use; empty creates one.
	VPCID string `json:"vpcID,omitempty"`
	// AvailabilityZones for the private subnets (at least two).
	AvailabilityZones []string `json:"availabilityZones,omitempty"`
	// InstanceType of every node. Defaults to "m6i.large".
	InstanceType string `json:"instanceType,omitempty"`
	// InstanceProfile optionally attached to the nodes.
	InstanceProfile string `json:"instanceProfile,omitempty"`
}

// VSphereProvider clones templates into a private port group.
type VSphereProvider struct {
	Server       string `json:"server"`
	Datacenter   string `json:"datacenter"`
	Cluster      string `json:"cluster,omitempty"`
	ResourcePool string `json:"resourcePool,omitempty"`
	Folder       string `json:"folder,omitempty"`
	Datastore    string `json:"datastore"`
	// Network is the private port group the NICs attach to.
	Network string `json:"network"`
	// LinkedClone clones from the template's snapshot instead of copying its disks.
	LinkedClone bool `json:"linkedClone,omitempty"`
	// ConfigServer is the IP:PORT of kiln's host on the private network, where kiln apply serves
	// each machine's config once (an enrollment ticket) and guestinfo carries only a stub. Unset,
	// guestinfo carries a machine's whole config, its keys included, until the node answered.
	ConfigServer string `json:"configServer,omitempty"`
}

// MetalProvider boots machines from an inventory over PXE.
type MetalProvider struct {
	// Inventory is the path of machines.yaml. Defaults to "machines.yaml".
	Inventory string `json:"inventory,omitempty"`
	// BootServerURL is where machines fetch their iPXE script and Ignition.
	BootServerURL string `json:"bootServerURL,omitempty"`
}

// QEMUProvider runs every node as a local qemu-system-x86_64 process.
type QEMUProvider struct {
	// MemoryMiB per VM. Defaults to 2048.
	MemoryMiB int `json:"memoryMiB,omitempty"`
	// CPUs per VM. Defaults to 2.
	CPUs int `json:"cpus,omitempty"`
	// SSHPortBase is the first loopback port forwarded to a node's SSH. Defaults to 2222.
	SSHPortBase int `json:"sshPortBase,omitempty"`
	// APIPortBase is the first loopback port forwarded to a control-plane node's API endpoint port
	// (haproxy, spec.network.apiEndpoint.port): kiln reaches the cluster's API from this host there.
	// Each control-plane node gets the lowest free port from here. Defaults to 16443.
	APIPortBase int `json:"apiPortBase,omitempty"`
	// WorkersWithControlPlane creates a new cluster's workers together with its control plane. By
	// default kiln apply creates them once the control plane's Node is Ready: under TCG on a host of a
	// few cores, workers booting beside a new control plane starve its API server, and they cannot
	// join before it answers anyway. Set it on a host with cores to spare.
	WorkersWithControlPlane bool `json:"workersWithControlPlane,omitempty"`
}

// Network describes the cluster's private network.
type Network struct {
	// NodeCIDR holds every node address. Defaults to "10.0.0.0/16".
	NodeCIDR string `json:"nodeCIDR,omitempty"`
	// PrivateSubnets are subnets of NodeCIDR for the nodes. Defaults to NodeCIDR's first /24.
	PrivateSubnets []string `json:"privateSubnets,omitempty"`
	// PodCIDR for pod addresses; must not overlap NodeCIDR or ServiceCIDR. Defaults to "10.244.0.0/16".
	PodCIDR string `json:"podCIDR,omitempty"`
	// ServiceCIDR for service addresses; its first address is the API service IP. Defaults to "10.96.0.0/12".
	ServiceCIDR string `json:"serviceCIDR,omitempty"`
	// ClusterDomain for services. Defaults to "cluster.local".
	ClusterDomain string      `json:"clusterDomain,omitempty"`
	APIEndpoint   APIEndpoint `json:"apiEndpoint,omitempty"`
	// AdminCIDRs may reach SSH (port 22) on the nodes and, where the API endpoint is made on the
	// control-plane nodes (qemu, vsphere, metal), the endpoint's port on them; nothing else is
	// reachable from outside. (On aws the load balancer admits them.)
	AdminCIDRs []string `json:"adminCIDRs,omitempty"`
	// Egress says where the nodes themselves may open connections to. Empty means open.
	Egress Egress `json:"egress,omitempty"`
}

// Egress policies.
const (
	EgressOpen       = "open"
	EgressRestricted = "restricted"
)

// Egress limits the connections that nodes open (the kubelet, containerd, the system; pods are
// routed, not limited here). It is enforced by each node's own firewall, where one is installed
// (every provider but aws).
type Egress struct {
	// Policy is open (nothing outbound is filtered) or restricted: nodes reach only the node, pod and
	// service networks, the API load balancer's address, and AllowedCIDRs. Empty means open.
	Policy string `json:"policy,omitempty"`
	// AllowedCIDRs are the destinations a restricted policy adds: the NAT gateway or egress proxy,
	// DNS resolvers, NTP servers, the image registry or its mirror.
	AllowedCIDRs []string `json:"allowedCIDRs,omitempty"`
}

// APIEndpoint is the load balancer in front of the API servers, the only way in to the API. On aws it
// is a network load balancer; on qemu, vsphere and metal it is made on the control-plane nodes
// themselves: keepalived holds Address (VRRP) on one of them at a time, and haproxy on each forwards
// Port to the kube-apiservers, which listen on APIServerPortBehindVIP.
type APIEndpoint struct {
	// LoadBalancerName is the DNS name clients use. Defaults to "api.<cluster>.kiln.internal".
	LoadBalancerName string `json:"loadBalancerName,omitempty"`
	// Address is the endpoint's IP address, which the API server certificate names and the nodes
	// dial. Required on qemu, vsphere and metal: the virtual address on the control-plane nodes, an
	// unused address of a private subnet (not its network or broadcast address). On qemu it defaults
	// to the .5 address of the first private subnet and must lie below .10 of it, where QEMU starts
	// giving machines their addresses. Must be empty on aws, where the load balancer's DNS name is the
	// endpoint and AWS chooses its addresses.
	Address string `json:"address,omitempty"`
	// Port of the API. Defaults to 6443.
	Port int `json:"port,omitempty"`
}

// ControlPlane runs etcd and the Kubernetes control-plane components.
type ControlPlane struct {
	// Count of control-plane machines: odd, 1 to 7. Defaults to 1.
	Count int `json:"count,omitempty"`
	// Image the machines boot from (provider-specific: a qcow2 path, an AMI, a template name).
	Image string `json:"image"`
	// MaintenanceWindow limits when a control-plane node may reboot for updates; unset, any time.
	// Control-plane nodes always reboot one at a time.
	MaintenanceWindow *MaintenanceWindow `json:"maintenanceWindow,omitempty"`
}

// NodePool is a group of identical worker machines.
type NodePool struct {
	// Name is a DNS label, unique among the pools.
	Name string `json:"name"`
	// Count of machines, 0 or more.
	Count int `json:"count"`
	// Image the machines boot from.
	Image  string            `json:"image"`
	Labels map[string]string `json:"labels,omitempty"`
	Taints []Taint           `json:"taints,omitempty"`
	// MaxUnavailable nodes during an image rollout. Defaults to 1.
	MaxUnavailable int `json:"maxUnavailable,omitempty"`
	// MaxConcurrentReboots is how many of the pool's nodes may reboot for updates at once, each
	// holding one of the pool's reboot locks: from 1 to Count (1 while Count is 0). Defaults to 1.
	MaxConcurrentReboots int `json:"maxConcurrentReboots,omitempty"`
	// MaintenanceWindow limits when the pool's nodes may reboot for updates; unset, any time.
	MaintenanceWindow *MaintenanceWindow `json:"maintenanceWindow,omitempty"`
	// Ingress opens inbound ports on the pool's nodes beyond kiln's firewall intent, e.g. a NodePort
	// range for an outside load balancer. Each entry is reported by validation as a warning (an
	// error with kiln validate --strict), so that opening a node is always a visible choice.
	Ingress []IngressRule `json:"ingress,omitempty"`
}

// IngressRule accepts inbound connections to a port or port range from some networks.
type IngressRule struct {
	// Protocol is tcp or udp.
	Protocol string `json:"protocol"`
	// Port is the first (or only) port, 1 to 65535.
	Port int `json:"port"`
	// EndPort, if set, makes the rule cover Port to EndPort inclusive (as in a NetworkPolicy).
	EndPort int `json:"endPort,omitempty"`
	// FromCIDRs are the source networks; 0.0.0.0/0 or ::/0 means anywhere.
	FromCIDRs []string `json:"fromCIDRs"`
	// Reason says what the rule is for; it becomes the firewall rule's comment.
	Reason string `json:"reason,omitempty"`
}

// MaintenanceWindow is when nodes may take the reboot lock, in the schedule syntax of api/window:
// DAYS HH:MM-HH:MM in a time zone. A node that needs a reboot waits outside it; a node that cannot
// reach the cluster's API reboots only at its own staggered minute inside it.
type MaintenanceWindow struct {
	// Schedule is DAYS HH:MM-HH:MM: days as Mon, Mon-Fri, Sat,Sun, Fri-Mon or * for every day; an
	// end earlier than the start crosses midnight and belongs to the start day ("Fri 22:00-02:00").
	Schedule string `json:"schedule"`
	// TimeZone is the IANA time zone of the schedule's wall-clock times. Defaults to "UTC".
	TimeZone string `json:"timeZone,omitempty"`
}

// Window is the parsed maintenance window, the zero window.Window (always open) if m is nil. The
// error is window.Parse's; a spec that Decode accepted has none.
func (m *MaintenanceWindow) Window() (window.Window, error) {
	if m == nil {
		return window.Window{}, nil
	}
	return window.Parse(m.Schedule, m.TimeZone)
}

// Window is the maintenance window of the control plane's reboots; see MaintenanceWindow.Window.
func (cp *ControlPlane) Window() (window.Window, error) { return cp.MaintenanceWindow.Window() }

// Window is the maintenance window of the pool's reboots; see MaintenanceWindow.Window.
func (p *NodePool) Window() (window.Window, error) { return p.MaintenanceWindow.Window() }

// Taint is a Kubernetes node taint.
type Taint struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	// Effect is NoSchedule, PreferNoSchedule or NoExecute.
	Effect string `json:"effect"`
}

// SSH says which key may log in as the admin user. Exactly one of Generate and AuthorizedKeys.
type SSH struct {
	// User is the admin user created on every node. Defaults to "kiln".
	User string `json:"user,omitempty"`
	// Generate a unique ed25519 key pair for this cluster, kept in the state store.
	Generate bool `json:"generate,omitempty"`
	// AuthorizedKeys are the user's own public keys, in authorized_keys format.
	AuthorizedKeys []string `json:"authorizedKeys,omitempty"`
}

// Security holds the cluster's security choices.
type Security struct {
	PodSecurity PodSecurity `json:"podSecurity,omitempty"`
	Encryption  Encryption  `json:"encryption,omitempty"`
	Audit       Audit       `json:"audit,omitempty"`
	// BootstrapTokenTTL is how long a node-join token lives. Defaults to 1h; at most 24h.
	BootstrapTokenTTL Duration `json:"bootstrapTokenTTL,omitempty"`
	// EnrollmentTTL is how long a machine's one-time config URL works after the machine is created:
	// its enrollment ticket (QEMU, vSphere, metal) or its presigned S3 URL (AWS). Defaults to 15m;
	// from 1m to 24h.
	EnrollmentTTL Duration `json:"enrollmentTTL,omitempty"`
}

// PodSecurity sets the Pod Security admission levels: cluster defaults and per-namespace labels.
type PodSecurity struct {
	// Defaults apply to namespaces without labels. Defaults to enforce baseline, audit and warn restricted.
	Defaults PodSecurityLevels `json:"defaults,omitempty"`
	// Namespaces get these levels as pod-security.kubernetes.io labels.
	Namespaces map[string]PodSecurityLevels `json:"namespaces,omitempty"`
}

// PodSecurityLevels is a level (privileged, baseline, restricted) per mode.
type PodSecurityLevels struct {
	Enforce string `json:"enforce,omitempty"`
	Audit   string `json:"audit,omitempty"`
	Warn    string `json:"warn,omitempty"`
}

// Encryption of Secrets at rest.
type Encryption struct {
	// Provider is aescbc, aesgcm or secretbox. Defaults to "secretbox".
	Provider string `json:"provider,omitempty"`
}

// Audit logging of the API server.
type Audit struct {
	// Enabled writes an audit log. Defaults to true.
	Enabled *bool `json:"enabled,omitempty"`
}

// Health says when a node counts as failed and how much may be replaced at once.
type Health struct {
	// NodeStartupTimeout is how long a new node may take to come up. Defaults to 10m.
	NodeStartupTimeout Duration `json:"nodeStartupTimeout,omitempty"`
	// UnhealthyTimeout is how long probes may fail before the node is replaced. Defaults to 5m.
	UnhealthyTimeout Duration `json:"unhealthyTimeout,omitempty"`
	// MaxUnhealthy: above this share of unhealthy nodes nothing is replaced. A percentage of the nodes
	// ("40%") or a count of nodes (3, quoted or not); see MaxUnhealthyCount. Defaults to "40%".
	MaxUnhealthy string `json:"maxUnhealthy,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("90s", "10m", "1h").
type Duration struct {
	time.Duration
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// MarshalYAML writes the duration as a spec does, without zero units: 1h rather than 1h0m0s.
func (d Duration) MarshalYAML() (any, error) { return formatDuration(d.Duration), nil }

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. 90s, 10m, 1h): %q", b)
	}
	d.Duration = v
	return nil
}
