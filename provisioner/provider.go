package provisioner

import (
	"context"
	"net/netip"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/bootstrap/firewall"
)

// ControlPlanePool is the pool name of control-plane machines, so that their names are
// "<cluster>-control-plane-<i>" like those of bootstrap/secrets.ControlPlaneNodeNames.
const ControlPlanePool = "control-plane"

// State is the lifecycle state of a machine as its provider reports it.
type State string

// Machine states.
const (
	// StatePending: created, not yet running (cloning, booting, powering on).
	StatePending State = "pending"
	// StateRunning: powered on. Whether the node works is for provisioner/health to judge.
	StateRunning State = "running"
	// StateStopped: powered off.
	StateStopped State = "stopped"
	// StateError: the provider reports the machine as failed.
	StateError State = "error"
	// StateGone: the provider still lists the machine but it no longer exists (a terminated instance).
	StateGone State = "gone"
)

// MachineSpec is a machine to create.
type MachineSpec struct {
	Cluster string
	// Name is unique in the provider; see MachineName.
	Name string
	// Role is v1alpha1.RoleControlPlane or v1alpha1.RoleWorker.
	Role string
	// Pool is the node pool, ControlPlanePool for the control plane.
	Pool string
	// Image the machine boots from (provider-specific: a qcow2 path, an AMI, a template name).
	Image string
	// Ignition is the rendered first-boot config.
	Ignition []byte
}

// Machine is a machine as its provider lists it.
type Machine struct {
	Name    string
	Cluster string
	Role    string
	Pool    string
	Image   string
	State   State
	// Created is when the provider created the machine.
	Created time.Time
	// Address is the machine's private address, empty until it has one.
	Address string
}

// Provider creates, deletes and lists the machines of clusters. Implementations are safe for
// concurrent use and stop work when ctx is cancelled.
type Provider interface {
	// Create creates the machine unless one of that name exists, and returns it either way, so that
	// calling it twice, or again after a crash, makes one machine. Providers that take an idempotency
	// token use ClientToken(spec.Cluster, spec.Name).
	Create(ctx context.Context, spec MachineSpec) (Machine, error)
	// Delete deletes the machine of that name. A machine that does not exist is not an error.
	Delete(ctx context.Context, name string) error
	// List returns every machine of the cluster, and only those, in one call to the backend (or a
	// number of calls that does not grow with the number of machines).
	List(ctx context.Context, cluster string) ([]Machine, error)
}

// Endpoint is the address clients reach the Kubernetes API at.
type Endpoint struct {
	// Name is the DNS name of the load balancer.
	Name string
	// Address is its IP address, empty if not known.
	Address string
	Port    int
}

// NetworkSpec is the private network a cluster's machines live in.
type NetworkSpec struct {
	Cluster string
	// NodeCIDR holds every node address.
	NodeCIDR string
	// Subnets are the private subnets of NodeCIDR for the nodes.
	Subnets []string
	// APIEndpoint is the load balancer in front of the API servers.
	APIEndpoint Endpoint
	// Firewall is the inbound firewall of each role, enforced as the provider can (security groups,
	// or left to the nftables ruleset Ignition installs).
	Firewall firewall.Intent
}

// Network is a cluster's network as it exists.
type Network struct {
	Cluster string
	// ID is the provider's identifier of the network (a VPC ID, a port group).
	ID          string
	Subnets     []string
	APIEndpoint Endpoint
}

// NetworkProvider is the capability of providers that make the cluster's network themselves; others
// (bare metal) leave it to the user. Find it by type assertion on a Provider.
type NetworkProvider interface {
	// EnsureNetwork makes the network, API endpoint and firewall match spec, creating what is missing,
	// and returns the network. Calling it again changes nothing that already matches.
	EnsureNetwork(ctx context.Context, spec NetworkSpec) (Network, error)
}

// Stopper is the capability of providers that can power a machine off and keep it, for a failed
// machine kept for forensics (reconcile.Policy.KeepFailed). Find it by type assertion on a Provider;
// without it a failed machine is deleted.
type Stopper interface {
	// Stop powers the machine of that name off and keeps it and its disks. A machine that is already
	// stopped, or does not exist, is not an error.
	Stop(ctx context.Context, name string) error
}

// NetworkDeleter is the capability of network providers that also delete what EnsureNetwork made.
type NetworkDeleter interface {
	// DeleteNetwork deletes the cluster's network, API endpoint and firewall, in dependency order,
	// once no machine uses them. What does not exist is not an error.
	DeleteNetwork(ctx context.Context, cluster string) error
}

// Joiner is the capability of providers that hold first-boot material a machine no longer needs once
// it is up (a bootstrap object in S3, Ignition in guestinfo), or that attach a machine to something
// only then (a load balancer). The executor calls Joined once the machine has answered (its
// Kubernetes Node is Ready, or, while the cluster's Nodes cannot be read, its SSH server proved its
// pinned host key), never because it is powered on or running, and again on a later pass until it
// succeeds.
type Joiner interface {
	Joined(ctx context.Context, name string) error
}

// Addresser is the capability of providers that give a machine its private address before it is
// created, so that the address can be rendered into the machine's config (etcd's and the API server's
// advertise addresses, the endpoint's backends). Reserving the same name again returns the same
// address; Delete releases it. Find it by type assertion on a Provider.
type Addresser interface {
	Reserve(ctx context.Context, cluster, name string) (netip.Addr, error)
}

// APIReacher is the capability of providers whose cluster API endpoint is reached from kiln's host at
// an address of their own (the local QEMU provider forwards a loopback port to the control plane's
// API endpoint). Without it, kiln dials the spec's endpoint (network.apiEndpoint) directly.
type APIReacher interface {
	// APIAddress returns the host:port at which kiln's host reaches the cluster's API endpoint, and
	// ErrNotReachable (wrapped) while no control-plane machine forwards it.
	APIAddress(ctx context.Context, cluster string) (string, error)
}

// HostKeyReporter is the capability of providers that carry a machine's own report of its SSH host
// public keys over a channel the platform binds to that machine (the local QEMU provider: the VM's
// serial console, which only that VM writes and only root on the host reads). Every node writes the
// report at each boot (kiln-ssh-hostkeys-report.service); kiln pins the first keys it reads
// (provisioner/hostkeys) and accepts no others. Find it by type assertion on a Provider.
type HostKeyReporter interface {
	// HostKeys returns the keys of the machine's latest complete report. It wraps ErrNoHostKeys while
	// there is none (the node has not booted that far), and, for a report it cannot read as public
	// keys, names where in the channel the bad line is (never quoting it).
	HostKeys(ctx context.Context, name string) ([]ssh.PublicKey, error)
}

// StagedBoot is the capability of providers whose clusters come up in stages: the control plane,
// then the workers (reconcile.Policy.ControlPlaneFirst). The local QEMU provider's machines are
// emulated on kiln's own host, and workers booting beside a new control plane starve its API server.
// Find it by type assertion on a Provider.
type StagedBoot interface {
	// ControlPlaneFirst reports whether the workers wait until every control-plane machine's Node is
	// Ready.
	ControlPlaneFirst() bool
}

// ConfigServing is the capability of providers whose machines fetch their real config, once, from
// kiln's config server (bootstrap/enroll) and are created with a stub: the cluster CA, the machine's
// name, the config's URL and hash, and a one-time token. Find it with ServesConfigs; without it a
// machine is created with its whole config.
type ConfigServing interface {
	// ConfigServer says where kiln serves the cluster's configs on its own host and where the
	// cluster's machines reach them. It returns the same for a cluster every time, so that machines
	// created by one kiln process reach the server of the next.
	ConfigServer(ctx context.Context, cluster string) (ConfigServer, error)
}

// ServesConfigs returns p's ConfigServing when its machines fetch their configs from kiln's config
// server. A provider that does only when its spec says so (vSphere: provider.vsphere.configServer)
// says which with a Serves method.
func ServesConfigs(p Provider) (ConfigServing, bool) {
	cs, ok := p.(ConfigServing)
	if s, optional := p.(interface{ Serves() bool }); ok && optional {
		return cs, s.Serves()
	}
	return cs, ok
}

// ConfigServer is where the machines of a cluster fetch their configs.
type ConfigServer struct {
	// Listen is the TCP address kiln listens on, on its own host.
	Listen string
	// URL is the https URL, scheme and host, at which the machines reach it.
	URL string
	// Names are what the server's certificate names: URL's host.
	Names []string
}
