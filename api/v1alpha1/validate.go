package v1alpha1

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/api/validate/content"

	"github.com/kiln-dev/kiln/api/strictyaml"
	"github.com/kiln-dev/kiln/api/window"
)

// Limits checked by Validate.
const (
	// MaxClusterNameLength leaves room in a 63-character DNS label for the suffixes of machine names.
	MaxClusterNameLength = 40
	// MaxPrivateSubnets is more subnets than a cluster network needs (AWS allows 200 a VPC by default).
	MaxPrivateSubnets = 256
	// MaxControlPlaneCount is the largest etcd membership worth having.
	MaxControlPlaneCount = 7
	// MaxPoolCount is the most machines one node pool may ask for: more than one pool should hold
	// (a rollout of a bigger pool takes too long at maxUnavailable), and the planner keeps a record
	// per machine, so the bound keeps a typo like count: 9223372036854775807 from exhausting memory.
	MaxPoolCount = 1000
	// MaxClusterCount is the most machines a cluster may ask for, control plane and pools together:
	// Kubernetes is tested to 5,000 nodes a cluster.
	MaxClusterCount = 5000
	// MinRSAKeyBits is the smallest RSA key accepted for SSH.
	MinRSAKeyBits        = 3072
	MinBootstrapTokenTTL = time.Minute
	MaxBootstrapTokenTTL = 24 * time.Hour
	MinEnrollmentTTL     = time.Minute
	MaxEnrollmentTTL     = 24 * time.Hour
	maxLinuxUserLength   = 32
	// maxLabelKeyNameLength is the limit of the name part of a label key (apimachinery's, unexported).
	maxLabelKeyNameLength = 63
	// maxIngressReasonLength leaves room in a 128-byte nftables comment for kiln's prefix.
	maxIngressReasonLength = 96
)

// providerNames lists the provider names, in the order messages give them.
var providerNames = []string{ProviderAWS, ProviderVSphere, ProviderMetal, ProviderQEMU}

var (
	linuxUser         = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
	kubernetesVersion = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)
	awsRegion         = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	awsVPCID          = regexp.MustCompile(`^vpc-[0-9a-f]{8}([0-9a-f]{9})?$`)
	awsInstanceType   = regexp.MustCompile(`^[a-z0-9-]+\.[a-z0-9-]+$`)
	maxUnhealthyForm  = regexp.MustCompile(`^([0-9]+)(%?)$`)
)

// Validate checks the values of c, which SetDefaults has usually filled first, and returns every
// finding with its path. The findings have no line and column; Decode adds them.
func Validate(c *Cluster) []strictyaml.Finding {
	var fs []strictyaml.Finding
	for _, is := range validate(c) {
		fs = append(fs, is.Finding())
	}
	return fs
}

// validate returns the findings about c in the order of its fields.
func validate(c *Cluster) []strictyaml.Issue {
	v := &validator{}
	v.cluster(c)
	return v.issues
}

type validator struct {
	issues []strictyaml.Issue
}

func (v *validator) errorf(path, format string, args ...any) {
	v.issues = append(v.issues, strictyaml.Issue{Path: path, Severity: strictyaml.SeverityError, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(path, format string, args ...any) {
	v.issues = append(v.issues, strictyaml.Issue{Path: path, Severity: strictyaml.SeverityWarning, Message: fmt.Sprintf(format, args...)})
}

// errorAfter reports a problem that follows from the values at deps as much as from the one at path.
func (v *validator) errorAfter(deps []string, path, format string, args ...any) {
	v.issues = append(v.issues, strictyaml.Issue{Path: path, Severity: strictyaml.SeverityError, Message: fmt.Sprintf(format, args...), Deps: deps})
}

// keyErrorf reports a problem with the key of a map entry, pointing at the key.
func (v *validator) keyErrorf(path, format string, args ...any) {
	v.issues = append(v.issues, strictyaml.Issue{Path: path, Severity: strictyaml.SeverityError, Message: fmt.Sprintf(format, args...), AtKey: true})
}

// required reports path missing if s is empty and says whether it is set.
func (v *validator) required(path, s string) bool {
	if s == "" {
		v.errorf(path, "required")
		return false
	}
	return true
}

func (v *validator) cluster(c *Cluster) {
	switch c.APIVersion {
	case GroupVersion:
	case "":
		v.errorf("apiVersion", "required, want %q", GroupVersion)
	default:
		v.errorf("apiVersion", "unsupported apiVersion %s, want %q", quote(c.APIVersion), GroupVersion)
	}
	switch c.Kind {
	case KindCluster:
	case "":
		v.errorf("kind", "required, want %q", KindCluster)
	default:
		v.errorf("kind", "unsupported kind %s, want %q", quote(c.Kind), KindCluster)
	}
	if v.required("metadata.name", c.Metadata.Name) {
		v.dnsLabel("metadata.name", c.Metadata.Name, MaxClusterNameLength)
	}

	s := &c.Spec
	if v.required("spec.kubernetesVersion", s.KubernetesVersion) && !kubernetesVersion.MatchString(s.KubernetesVersion) {
		v.errorf("spec.kubernetesVersion", "%s is not a Kubernetes version (want e.g. %s)", quote(s.KubernetesVersion), DefaultKubernetesVersion)
	}
	v.provider("spec.provider", &s.Provider, nodeCount(s), s.ControlPlane.Count)
	v.network("spec.network", &s.Network, s.Provider.Name)
	if s.Provider.Name == ProviderAWS && s.Network.Egress.Policy == EgressRestricted {
		v.warnf("spec.network.egress.policy", "not enforced on aws: nodes there have no node firewall, and the security groups leave egress to the NAT gateway")
	}
	v.controlPlane("spec.controlPlane", &s.ControlPlane)
	v.nodePools("spec.nodePools", s.NodePools)
	if n := nodeCount(s); n > MaxClusterCount && s.ControlPlane.Count <= MaxControlPlaneCount && poolsWithinLimit(s.NodePools) {
		v.errorf("spec.nodePools", "the cluster asks for %d machines (control plane and pools), more than the limit of %d: Kubernetes is tested to %d nodes a cluster; split the workload across clusters",
			n, MaxClusterCount, MaxClusterCount)
	}
	v.ssh("spec.ssh", &s.SSH)
	v.security("spec.security", &s.Security)
	v.health("spec.health", &s.Health)
}

// poolsWithinLimit reports whether every pool's count is within MaxPoolCount, so the cluster total
// is only reported when no pool's own finding already explains it.
func poolsWithinLimit(pools []NodePool) bool {
	for _, p := range pools {
		if p.Count > MaxPoolCount {
			return false
		}
	}
	return true
}

// nodeCount is the number of machines the spec asks for. It saturates rather than overflows: a
// count past the limits is reported by nodePools, and the sum must not wrap to a small number.
func nodeCount(s *ClusterSpec) int {
	n := max(s.ControlPlane.Count, 0)
	for _, p := range s.NodePools {
		c := max(p.Count, 0)
		if c > math.MaxInt-n {
			return math.MaxInt
		}
		n += c
	}
	return n
}

func (v *validator) provider(path string, p *Provider, nodes, controlPlane int) {
	blocks := []struct {
		name string
		set  bool
	}{
		{ProviderAWS, p.AWS != nil},
		{ProviderVSphere, p.VSphere != nil},
		{ProviderMetal, p.Metal != nil},
		{ProviderQEMU, p.QEMU != nil},
	}
	namePath := path + ".name"
	switch {
	case p.Name == "":
		v.errorf(namePath, "required, one of %s", strings.Join(providerNames, ", "))
		return
	case !slices.Contains(providerNames, p.Name):
		v.errorf(namePath, "unknown provider %s, want one of %s", quote(p.Name), strings.Join(providerNames, ", "))
		return
	}
	for _, b := range blocks {
		if b.set && b.name != p.Name {
			v.keyErrorf(strictyaml.FieldPath(path, b.name), "set, but provider.name is %q: only the %s block may be set", p.Name, p.Name)
		}
	}
	switch p.Name {
	case ProviderAWS:
		v.aws(strictyaml.FieldPath(path, ProviderAWS), deref(p.AWS))
	case ProviderVSphere:
		v.vsphere(strictyaml.FieldPath(path, ProviderVSphere), deref(p.VSphere))
	case ProviderMetal:
		v.metal(strictyaml.FieldPath(path, ProviderMetal), deref(p.Metal))
	case ProviderQEMU:
		v.qemu(strictyaml.FieldPath(path, ProviderQEMU), deref(p.QEMU), nodes, controlPlane)
	}
}

// deref returns *p, or the zero value if p is nil.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

func (v *validator) aws(path string, a AWSProvider) {
	regionOK := false
	if v.required(path+".region", a.Region) {
		if regionOK = awsRegion.MatchString(a.Region); !regionOK {
			v.errorf(path+".region", "%s is not an AWS region name (want e.g. eu-west-1)", quote(a.Region))
		}
	}
	if a.VPCID != "" && !awsVPCID.MatchString(a.VPCID) {
		v.errorf(path+".vpcID", "%s is not a VPC ID (want vpc- and 8 or 17 hex digits)", quote(a.VPCID))
	}
	if n := len(a.AvailabilityZones); n == 1 {
		v.errorf(path+".availabilityZones", "need at least 2 availability zones, got 1: nodes in one zone fail together")
	}
	seen := map[string]int{}
	for i, z := range a.AvailabilityZones {
		p := strictyaml.IndexPath(path+".availabilityZones", i)
		switch first, dup := seen[z]; {
		case z == "":
			v.errorf(p, "required")
		case dup:
			v.errorf(p, "duplicate availability zone %s, also at %s", quote(z), strictyaml.IndexPath(path+".availabilityZones", first))
		case regionOK && !strings.HasPrefix(z, a.Region):
			v.errorAfter([]string{path + ".region"}, p, "availability zone %s is not in region %q", quote(z), a.Region)
		}
		if _, dup := seen[z]; !dup {
			seen[z] = i
		}
	}
	if v.required(path+".instanceType", a.InstanceType) && !awsInstanceType.MatchString(a.InstanceType) {
		v.errorf(path+".instanceType", "%s is not an instance type (want e.g. %s)", quote(a.InstanceType), DefaultAWSInstanceType)
	}
}

func (v *validator) vsphere(path string, p VSphereProvider) {
	v.required(path+".server", p.Server)
	v.required(path+".datacenter", p.Datacenter)
	v.required(path+".datastore", p.Datastore)
	v.required(path+".network", p.Network)
	if p.ConfigServer == "" {
		v.warnf(path+".configServer", "unset: guestinfo carries each machine's whole config, its keys included, until the node answered; set it to kiln's IP:PORT on the private network to serve each config once")
	} else if ap, err := netip.ParseAddrPort(p.ConfigServer); err != nil || ap.Port() == 0 || !ap.Addr().Is4() {
		v.errorf(path+".configServer", "%s is not an IPv4 address and port (IP:PORT) of kiln's host on the private network", quote(p.ConfigServer))
	}
}

func (v *validator) metal(path string, p MetalProvider) {
	v.required(path+".inventory", p.Inventory)
	if p.BootServerURL != "" {
		u, err := url.Parse(p.BootServerURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf(path+".bootServerURL", "%s is not an http or https URL", quote(p.BootServerURL))
		}
	}
}

func (v *validator) qemu(path string, p QEMUProvider, nodes, controlPlane int) {
	v.positive(path+".memoryMiB", p.MemoryMiB)
	v.positive(path+".cpus", p.CPUs)
	sshOK := false
	switch {
	case p.SSHPortBase < 1 || p.SSHPortBase > 65535:
		v.errorf(path+".sshPortBase", "must be a port from 1 to 65535, got %d", p.SSHPortBase)
	case p.SSHPortBase+max(nodes, 1)-1 > 65535:
		v.errorf(path+".sshPortBase", "%d nodes need ports %d to %d, beyond 65535", nodes, p.SSHPortBase, p.SSHPortBase+nodes-1)
	default:
		sshOK = true
	}
	cps := max(controlPlane, 1)
	switch sshLast, apiLast := p.SSHPortBase+max(nodes, 1)-1, p.APIPortBase+cps-1; {
	case p.APIPortBase < 1 || p.APIPortBase > 65535:
		v.errorf(path+".apiPortBase", "must be a port from 1 to 65535, got %d", p.APIPortBase)
	case apiLast > 65535:
		v.errorf(path+".apiPortBase", "%d control-plane nodes need ports %d to %d, beyond 65535", cps, p.APIPortBase, apiLast)
	case sshOK && p.APIPortBase <= sshLast && p.SSHPortBase <= apiLast:
		v.errorAfter([]string{path + ".sshPortBase"}, path+".apiPortBase", "the API %s and the SSH %s (sshPortBase) overlap",
			ports(p.APIPortBase, apiLast), ports(p.SSHPortBase, sshLast))
	}
}

// ports writes the port range first to last: "port 22" or "ports 2222 to 2224".
func ports(first, last int) string {
	if first == last {
		return fmt.Sprintf("port %d", first)
	}
	return fmt.Sprintf("ports %d to %d", first, last)
}

func (v *validator) positive(path string, n int) {
	if n <= 0 {
		v.errorf(path, "must be positive, got %d", n)
	}
}

func (v *validator) network(path string, n *Network, provider string) {
	node, nodeOK := v.cidr(path+".nodeCIDR", n.NodeCIDR)
	if len(n.PrivateSubnets) > MaxPrivateSubnets {
		v.errorf(path+".privateSubnets", "%d subnets, at most %d", len(n.PrivateSubnets), MaxPrivateSubnets)
	}
	subs := make([]netip.Prefix, 0, min(len(n.PrivateSubnets), MaxPrivateSubnets))
	for i, s := range n.PrivateSubnets[:min(len(n.PrivateSubnets), MaxPrivateSubnets)] {
		p := strictyaml.IndexPath(path+".privateSubnets", i)
		sub, ok := v.cidr(p, s)
		subs = append(subs, sub) // the zero Prefix if not ok; it overlaps nothing
		if !ok {
			continue
		}
		if nodeOK && !(node.Bits() <= sub.Bits() && node.Contains(sub.Addr())) {
			v.errorAfter([]string{path + ".nodeCIDR"}, p, "%s is not inside %s.nodeCIDR %s", sub, path, node)
			continue
		}
		for j, other := range subs[:i] {
			if other.IsValid() && other.Overlaps(sub) {
				v.errorf(p, "%s overlaps %s (%s)", sub, strictyaml.IndexPath(path+".privateSubnets", j), other)
				break
			}
		}
	}
	pod, podOK := v.cidr(path+".podCIDR", n.PodCIDR)
	svc, svcOK := v.cidr(path+".serviceCIDR", n.ServiceCIDR)
	type named struct {
		path string
		p    netip.Prefix
		ok   bool
	}
	ranges := []named{{path + ".nodeCIDR", node, nodeOK}, {path + ".podCIDR", pod, podOK}, {path + ".serviceCIDR", svc, svcOK}}
	var first *named // the first valid range sets the IP family
	for i, a := range ranges {
		if !a.ok {
			continue
		}
		if first == nil {
			first = &ranges[i]
		} else if a.p.Addr().Is4() != first.p.Addr().Is4() {
			v.errorAfter([]string{first.path}, a.path, "%s is %s but %s is %s: a single-stack cluster uses one IP family", a.p, family(a.p), first.path, family(first.p))
			continue
		}
		for _, b := range ranges[:i] {
			if b.ok && a.p.Overlaps(b.p) {
				v.issues = append(v.issues, strictyaml.Issue{
					Path:     a.path,
					Severity: strictyaml.SeverityError,
					Message:  fmt.Sprintf("%s overlaps %s (%s)", a.p, b.path, b.p),
					Alt: &strictyaml.Issue{
						Path:     b.path,
						Severity: strictyaml.SeverityError,
						Message:  fmt.Sprintf("%s overlaps %s (%s)", b.p, a.path, a.p),
					},
					Deps: []string{b.path},
				})
			}
		}
	}
	if v.required(path+".clusterDomain", n.ClusterDomain) {
		v.dnsSubdomain(path+".clusterDomain", n.ClusterDomain)
	}

	v.apiEndpoint(path, &n.APIEndpoint, provider, subs)

	for i, s := range n.AdminCIDRs {
		p := strictyaml.IndexPath(path+".adminCIDRs", i)
		if c, ok := v.cidr(p, s); ok && c.Bits() == 0 {
			v.warnf(p, "%s lets the whole internet reach SSH on the nodes", c)
		}
	}
	v.egress(path+".egress", &n.Egress)
}

// apiEndpoint checks spec.network.apiEndpoint; subs are the private subnets, the zero Prefix for
// those that are not valid. What the address must be depends on the provider: on qemu, vsphere and
// metal it is the virtual address keepalived holds on the control-plane nodes' link, so it is
// required and sits in a private subnet; on aws the load balancer's name is the endpoint.
func (v *validator) apiEndpoint(path string, ep *APIEndpoint, provider string, subs []netip.Prefix) {
	path += ".apiEndpoint"
	if ep.LoadBalancerName != "" {
		v.dnsSubdomain(path+".loadBalancerName", ep.LoadBalancerName)
	}
	vip := provider == ProviderQEMU || provider == ProviderVSphere || provider == ProviderMetal
	ap := path + ".address"
	a := ep.Address
	var ip netip.Addr
	if a != "" {
		var err error
		ip, err = netip.ParseAddr(a)
		switch {
		case err != nil:
			v.errorf(ap, "%s is not an IP address", quote(a))
		case ip.Zone() != "":
			v.errorf(ap, "%s has a zone; want an address without one", quote(a))
		case ip.IsUnspecified():
			v.errorf(ap, "%s is the unspecified address", ip)
		}
		if err != nil || ip.Zone() != "" || ip.IsUnspecified() {
			ip = netip.Addr{}
		}
	}
	switch {
	case provider == ProviderAWS && a != "":
		v.errorf(ap, "must be empty on aws: the network load balancer's DNS name is the endpoint (loadBalancerName), and AWS chooses its addresses")
	case vip && a == "" && provider == ProviderQEMU && (len(subs) == 0 || !subs[0].IsValid()):
		// SetDefaults derives it from the first private subnet, whose problem is reported already.
	case vip && a == "":
		v.errorf(ap, "required on %s: the virtual address of the API endpoint, which keepalived holds on one control-plane node at a time; an unused address of a private subnet (spec.network.privateSubnets)", provider)
	case vip && ip.IsValid():
		ip = ip.Unmap()
		deps := []string{strings.TrimSuffix(path, ".apiEndpoint") + ".privateSubnets"}
		in := -1
		for i, sub := range subs {
			if sub.IsValid() && sub.Contains(ip) {
				in = i
				break
			}
		}
		if in < 0 {
			var valid []string
			for _, sub := range subs {
				if sub.IsValid() {
					valid = append(valid, sub.String())
				}
			}
			if len(valid) > 0 {
				v.errorAfter(deps, ap, "%s is in none of spec.network.privateSubnets (%s): keepalived holds it on the control-plane nodes' link", ip, strings.Join(valid, ", "))
			}
			break
		}
		sub := subs[in]
		subPath := strictyaml.IndexPath(deps[0], in)
		last := lastAddress(sub)
		switch {
		case ip == sub.Addr():
			v.errorAfter(deps, ap, "%s is the network address of %s (%s)", ip, subPath, sub)
		case ip.Is4() && sub.Bits() < 31 && ip == last:
			v.errorAfter(deps, ap, "%s is the broadcast address of %s (%s)", ip, subPath, sub)
		case provider == ProviderQEMU && in != 0:
			v.errorAfter(deps, ap, "%s is in %s (%s), but qemu places every node in spec.network.privateSubnets[0] (%s): the endpoint must be there too", ip, subPath, sub, subs[0])
		case provider == ProviderQEMU && !ip.Less(nthAddress(sub, qemuFirstMachineHost)):
			v.errorAfter(deps, ap, "%s is among the addresses qemu gives machines (from %s up); take one below it (the default is %s)",
				ip, nthAddress(sub, qemuFirstMachineHost), nthAddress(sub, QEMUEndpointHost))
		}
	}
	if p := ep.Port; p < 1 || p > 65535 {
		v.errorf(path+".port", "must be a port from 1 to 65535, got %d", p)
	} else if vip && p == APIServerPortBehindVIP {
		v.errorf(path+".port", "%d is where kube-apiserver listens behind haproxy on the control-plane nodes (on %s); choose another port, e.g. %d", p, provider, DefaultAPIPort)
	}
}

// nthAddress is the address n after the network address of p.
func nthAddress(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// lastAddress is the last address of p.
func lastAddress(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		bit := i * 8
		switch {
		case bit >= p.Bits():
			b[i] = 0xff
		case bit+8 > p.Bits():
			b[i] |= 0xff >> (p.Bits() - bit)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (v *validator) egress(path string, e *Egress) {
	switch e.Policy {
	case "", EgressOpen:
		if len(e.AllowedCIDRs) > 0 {
			v.warnf(path+".allowedCIDRs", "ignored: the egress policy is open (set policy: restricted to limit egress to these)")
		}
	case EgressRestricted:
	default:
		v.errorf(path+".policy", "unknown egress policy %s, want %s or %s", quote(e.Policy), EgressOpen, EgressRestricted)
	}
	for i, s := range e.AllowedCIDRs {
		p := strictyaml.IndexPath(path+".allowedCIDRs", i)
		if c, ok := v.cidr(p, s); ok && c.Bits() == 0 && e.Policy == EgressRestricted {
			v.warnf(p, "%s allows every destination: restricted egress is then as open as open", c)
		}
	}
}

// ingress checks a pool's extra inbound rules; each is a warning, since it opens the nodes beyond
// kiln's firewall intent.
func (v *validator) ingress(path string, rules []IngressRule) {
	for i, r := range rules {
		rp := strictyaml.IndexPath(path, i)
		ok := true
		switch r.Protocol {
		case "tcp", "udp":
		case "":
			v.errorf(rp+".protocol", "required, tcp or udp")
			ok = false
		default:
			v.errorf(rp+".protocol", "unknown protocol %s, want tcp or udp", quote(r.Protocol))
			ok = false
		}
		if r.Port < 1 || r.Port > 65535 {
			v.errorf(rp+".port", "must be a port from 1 to 65535, got %d", r.Port)
			ok = false
		}
		if r.EndPort != 0 && (r.EndPort < r.Port || r.EndPort > 65535) {
			v.errorf(rp+".endPort", "must be from port (%d) to 65535, got %d", r.Port, r.EndPort)
			ok = false
		}
		if len(r.FromCIDRs) == 0 {
			v.errorf(rp+".fromCIDRs", "required: the networks that may connect (0.0.0.0/0 for anywhere)")
			ok = false
		}
		anywhere := false
		for j, s := range r.FromCIDRs {
			c, cok := v.cidr(strictyaml.IndexPath(rp+".fromCIDRs", j), s)
			ok = ok && cok
			anywhere = anywhere || (cok && c.Bits() == 0)
		}
		if len(r.Reason) > maxIngressReasonLength || strings.ContainsAny(r.Reason, "\"\\") || strings.ContainsFunc(r.Reason, unicode.IsControl) {
			v.errorf(rp+".reason", "at most %d characters, without quotes, backslashes or control characters (it becomes a firewall comment)", maxIngressReasonLength)
			ok = false
		}
		if !ok {
			continue
		}
		ports := strconv.Itoa(r.Port)
		if r.EndPort > r.Port {
			ports += "-" + strconv.Itoa(r.EndPort)
		}
		from := "from " + strings.Join(r.FromCIDRs, ", ")
		if anywhere {
			from = "from anywhere"
		}
		v.warnf(rp, "opens %s %s on the pool's nodes %s, beyond kiln's firewall intent", r.Protocol, ports, from)
	}
}

// family names the IP family of p.
func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// cidr checks that s is a network in CIDR notation (IPv4 or IPv6) with no host bits set.
func (v *validator) cidr(path, s string) (netip.Prefix, bool) {
	if !v.required(path, s) {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Zone() == "" {
			v.errorf(path, "%s is an address, not a CIDR (for this address alone write %s/%d)", quote(s), a, a.BitLen())
		} else {
			v.errorf(path, "%s is not a CIDR (want e.g. 10.0.0.0/16 or fd00::/64)", quote(s))
		}
		return netip.Prefix{}, false
	}
	if m := p.Masked(); m != p {
		v.errorf(path, "%s has host bits set: the network is %s", quote(s), m)
		return netip.Prefix{}, false
	}
	return p, true
}

func (v *validator) controlPlane(path string, cp *ControlPlane) {
	switch n := cp.Count; {
	case n < 1 || n > MaxControlPlaneCount:
		v.errorf(path+".count", "must be an odd number from 1 to %d, got %d", MaxControlPlaneCount, n)
	case n%2 == 0:
		tolerated := (n - 1) / 2
		v.errorf(path+".count", "must be odd: etcd needs a majority of its members for quorum, so %d members tolerate %s, no more than %d; use %d or %d",
			n, plural(tolerated, "failure"), n-1, n-1, n+1)
	}
	v.required(path+".image", cp.Image)
	v.maintenanceWindow(path+".maintenanceWindow", cp.MaintenanceWindow)
}

// maintenanceWindow checks a maintenance window with window.Parse, each problem at its field.
func (v *validator) maintenanceWindow(path string, m *MaintenanceWindow) {
	if m == nil {
		return
	}
	v.required(path+".schedule", m.Schedule)
	_, err := window.Parse(m.Schedule, m.TimeZone)
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, err := range errs {
		if e, ok := errors.AsType[*window.Error](err); ok {
			v.errorf(path+"."+e.Field, "%s: %s", quote(e.Value), e.Reason)
		}
	}
}

// maxConcurrentReboots checks a pool's maxConcurrentReboots against its count.
func (v *validator) maxConcurrentReboots(pool string, p NodePool) {
	path, countPath := pool+".maxConcurrentReboots", []string{pool + ".count"}
	switch n := p.MaxConcurrentReboots; {
	case n < 1:
		v.errorf(path, "must be at least 1, got %d", n)
	case p.Count > 0 && n > p.Count:
		v.errorAfter(countPath, path, "must be at most the pool's count, %d, got %d: a pool cannot reboot more nodes than it has", p.Count, n)
	case p.Count <= 0 && n > 1:
		v.errorAfter(countPath, path, "must be 1 while the pool's count is %d, got %d", p.Count, n)
	}
}

func (v *validator) nodePools(path string, pools []NodePool) {
	names := map[string]int{}
	for i, p := range pools {
		pp := strictyaml.IndexPath(path, i)
		if v.required(pp+".name", p.Name) {
			v.dnsLabel(pp+".name", p.Name, content.DNS1123LabelMaxLength)
			if first, dup := names[p.Name]; dup {
				v.errorf(pp+".name", "duplicate pool name %s, also at %s", quote(p.Name), strictyaml.IndexPath(path, first))
			} else {
				names[p.Name] = i
			}
		}
		switch {
		case p.Count < 0:
			v.errorf(pp+".count", "must be 0 or more, got %d", p.Count)
		case p.Count > MaxPoolCount:
			v.errorf(pp+".count", "must be at most %d, got %d: a pool that large rolls out too slowly and the planner keeps a record per machine; split it into several pools",
				MaxPoolCount, p.Count)
		}
		v.required(pp+".image", p.Image)
		if p.MaxUnavailable < 0 {
			v.errorf(pp+".maxUnavailable", "must be 0 or more, got %d", p.MaxUnavailable)
		}
		v.maxConcurrentReboots(pp, p)
		v.maintenanceWindow(pp+".maintenanceWindow", p.MaintenanceWindow)
		v.ingress(pp+".ingress", p.Ingress)
		for _, k := range sortedKeys(p.Labels) {
			lp := strictyaml.KeyPath(pp+".labels", k)
			if msg := qualifiedNameProblem(k); msg != "" {
				v.keyErrorf(lp, "label key %s", msg)
			}
			if msg := labelValueProblem(p.Labels[k]); msg != "" {
				v.errorf(lp, "label value %s", msg)
			}
		}
		type keyEffect struct{ key, effect string }
		taints := map[keyEffect]int{}
		for j, t := range p.Taints {
			tp := strictyaml.IndexPath(pp+".taints", j)
			if v.required(tp+".key", t.Key) {
				if msg := qualifiedNameProblem(t.Key); msg != "" {
					v.errorf(tp+".key", "taint key %s", msg)
				}
			}
			if msg := labelValueProblem(t.Value); msg != "" {
				v.errorf(tp+".value", "taint value %s", msg)
			}
			switch t.Effect {
			case "NoSchedule", "PreferNoSchedule", "NoExecute":
				ke := keyEffect{t.Key, t.Effect}
				if first, dup := taints[ke]; dup {
					v.errorf(tp, "duplicate taint %s:%s, also at %s", t.Key, t.Effect, strictyaml.IndexPath(pp+".taints", first))
				} else {
					taints[ke] = j
				}
			case "":
				v.errorf(tp+".effect", "required, one of NoSchedule, PreferNoSchedule, NoExecute")
			default:
				v.errorf(tp+".effect", "unknown effect %s, want one of NoSchedule, PreferNoSchedule, NoExecute", quote(t.Effect))
			}
		}
	}
}

func (v *validator) ssh(path string, s *SSH) {
	switch {
	case s.User == "":
		v.errorf(path+".user", "required")
	case s.User == "root":
		v.errorf(path+".user", "must not be root: the admin user is an unprivileged account that uses sudo")
	case len(s.User) > maxLinuxUserLength || !linuxUser.MatchString(s.User):
		v.errorf(path+".user", "%s is not a Linux user name (a lowercase letter or '_', then lowercase letters, digits, '_' or '-', at most %d characters)", quote(s.User), maxLinuxUserLength)
	}
	deps := []string{path + ".generate", path + ".authorizedKeys"}
	switch {
	case s.Generate && len(s.AuthorizedKeys) > 0:
		v.errorAfter(deps, path, "set either generate: true or authorizedKeys, not both")
	case !s.Generate && len(s.AuthorizedKeys) == 0:
		v.errorAfter(deps, path, "set generate: true or give authorizedKeys")
	}
	for i, k := range s.AuthorizedKeys {
		if msg := authorizedKeyProblem(k); msg != "" {
			v.errorf(strictyaml.IndexPath(path+".authorizedKeys", i), "%s", msg)
		}
	}
}

// authorizedKeyProblem says what is wrong with an authorized_keys entry, or "" if it is one key of an
// accepted type and size.
func authorizedKeyProblem(k string) string {
	if strings.TrimSpace(k) == "" {
		return "empty key"
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k))
	if err != nil {
		if fields := strings.Fields(k); len(fields) > 0 && slices.Contains(fields, ssh.InsecureKeyAlgoDSA) {
			return "DSA keys are insecure and OpenSSH no longer accepts them; use ed25519"
		}
		return fmt.Sprintf("not a public key in authorized_keys format: %v", err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		if _, _, _, _, err := ssh.ParseAuthorizedKey(rest); err == nil {
			return "more than one key: give each key its own entry"
		}
	}
	switch t := pub.Type(); t {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256:
		return ""
	case ssh.KeyAlgoRSA:
		ck, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return "cannot read the RSA key size"
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return "cannot read the RSA key size"
		}
		if bits := rk.N.BitLen(); bits < MinRSAKeyBits {
			return fmt.Sprintf("RSA key of %d bits is too short, need at least %d (or use ed25519)", bits, MinRSAKeyBits)
		}
		return ""
	case ssh.InsecureKeyAlgoDSA:
		return "DSA keys are insecure and OpenSSH no longer accepts them; use ed25519"
	default:
		if _, ok := pub.(*ssh.Certificate); ok {
			return fmt.Sprintf("%s is a certificate, not a public key; give the plain public key", t)
		}
		return fmt.Sprintf("key type %s is not accepted; use ed25519, ecdsa or RSA of at least %d bits", t, MinRSAKeyBits)
	}
}

func (v *validator) security(path string, s *Security) {
	ps := path + ".podSecurity"
	v.levels(ps+".defaults", s.PodSecurity.Defaults, true)
	if s.PodSecurity.Defaults.Enforce == LevelPrivileged {
		v.warnf(ps+".defaults.enforce", "privileged lets any pod run in namespaces without their own level")
	}
	for _, ns := range sortedKeys(s.PodSecurity.Namespaces) {
		np := strictyaml.KeyPath(ps+".namespaces", ns)
		if len(content.IsDNS1123Label(ns)) > 0 {
			v.keyErrorf(np, "%s is not a namespace name (a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most %d characters)", quote(ns), content.DNS1123LabelMaxLength)
		}
		l := s.PodSecurity.Namespaces[ns]
		if l == (PodSecurityLevels{}) {
			v.warnf(np, "no level set, the namespace gets the defaults")
		}
		v.levels(np, l, false)
	}

	ep := path + ".encryption.provider"
	switch p := s.Encryption.Provider; p {
	case EncryptionSecretbox:
	case EncryptionAESGCM:
		v.warnf(ep, "aesgcm keys must be rotated before about 200000 writes; secretbox needs no rotation")
	case EncryptionAESCBC:
		v.warnf(ep, "aescbc is open to padding oracle attacks; secretbox or aesgcm are recommended")
	case "":
		v.errorf(ep, "required, one of aescbc, aesgcm, secretbox")
	case "identity":
		v.errorf(ep, "identity would store Secrets unencrypted; use secretbox, aesgcm or aescbc")
	default:
		v.errorf(ep, "unknown provider %s, want one of aescbc, aesgcm, secretbox", quote(p))
	}

	if s.Audit.Enabled != nil && !*s.Audit.Enabled {
		v.warnf(path+".audit.enabled", "the API server keeps no audit log")
	}

	if ttl := s.BootstrapTokenTTL.Duration; ttl < MinBootstrapTokenTTL || ttl > MaxBootstrapTokenTTL {
		v.errorf(path+".bootstrapTokenTTL", "must be from %s to %s, got %s", formatDuration(MinBootstrapTokenTTL), formatDuration(MaxBootstrapTokenTTL), formatDuration(ttl))
	}
	if ttl := s.EnrollmentTTL.Duration; ttl < MinEnrollmentTTL || ttl > MaxEnrollmentTTL {
		v.errorf(path+".enrollmentTTL", "must be from %s to %s, got %s", formatDuration(MinEnrollmentTTL), formatDuration(MaxEnrollmentTTL), formatDuration(ttl))
	}
}

// levels checks the Pod Security levels of one namespace, or of the defaults if all are required.
func (v *validator) levels(path string, l PodSecurityLevels, required bool) {
	for _, m := range []struct{ mode, level string }{{"enforce", l.Enforce}, {"audit", l.Audit}, {"warn", l.Warn}} {
		p := path + "." + m.mode
		switch m.level {
		case LevelPrivileged, LevelBaseline, LevelRestricted:
		case "":
			if required {
				v.errorf(p, "required, one of privileged, baseline, restricted")
			}
		default:
			v.errorf(p, "unknown level %s, want one of privileged, baseline, restricted", quote(m.level))
		}
	}
}

func (v *validator) health(path string, h *Health) {
	for _, t := range []struct {
		name string
		d    Duration
	}{{"nodeStartupTimeout", h.NodeStartupTimeout}, {"unhealthyTimeout", h.UnhealthyTimeout}} {
		if t.d.Duration <= 0 {
			v.errorf(path+"."+t.name, "must be positive, got %s", formatDuration(t.d.Duration))
		}
	}
	mp := path + ".maxUnhealthy"
	n, percent, err := parseMaxUnhealthy(h.MaxUnhealthy)
	switch {
	case h.MaxUnhealthy == "":
		v.errorf(mp, "required, a percentage like %q or a count of nodes", DefaultMaxUnhealthy)
	case err != nil:
		v.errorf(mp, "%v", err)
	case n == 0:
		v.warnf(mp, "%s stops all remediation as soon as one node is unhealthy", h.MaxUnhealthy)
	case percent && n == 100:
		v.warnf(mp, "100%% never stops remediation, even when a partition makes every node look unhealthy")
	}
}

// parseMaxUnhealthy reads "N%" (N from 0 to 100) or a count "N" (N 0 or more).
func parseMaxUnhealthy(s string) (n int, percent bool, err error) {
	m := maxUnhealthyForm.FindStringSubmatch(s)
	if m == nil {
		return 0, false, fmt.Errorf("%s is neither a percentage like %q nor a count of nodes", quote(s), DefaultMaxUnhealthy)
	}
	percent = m[2] == "%"
	n, err = strconv.Atoi(m[1])
	if err != nil || (percent && n > 100) {
		if percent {
			return 0, false, fmt.Errorf("%s is not a percentage from 0%% to 100%%", quote(s))
		}
		return 0, false, fmt.Errorf("%s is too large a count", quote(s))
	}
	return n, percent, nil
}

// MaxUnhealthyCount is how many of total nodes may be unhealthy while nodes are still replaced: the
// percentage of total rounded down, but at least 1 for a percentage above 0 (one failed node of a
// small group is no sign of a partition: 40% of 2 nodes allows 1), or the count. Above it,
// remediation stops. An empty MaxUnhealthy means the default, 40%; a value that does not parse
// (Validate rejects it) gives 0, which stops remediation as soon as a node is unhealthy.
func (h Health) MaxUnhealthyCount(total int) int {
	s := h.MaxUnhealthy
	if s == "" {
		s = DefaultMaxUnhealthy
	}
	n, percent, err := parseMaxUnhealthy(s)
	if err != nil || total <= 0 {
		return 0
	}
	if percent {
		if n > 0 {
			return max(1, total*n/100)
		}
		return 0
	}
	return n
}

// The checks of names, label keys and values below are apimachinery's (package content, the one its
// util/validation now forwards to), so that kiln accepts what the API server accepts. kiln keeps its own
// messages, which say what is wrong in the user's terms and which part of a key it is, and one rule of
// its own: every label of a DNS name, including a label key's prefix, has at most 63 characters, as DNS
// requires; apimachinery limits only the whole name, to 253.

// dnsLabel checks that s is a DNS label of at most max characters (max is at most 63). A label that is
// both malformed and too long is reported malformed.
func (v *validator) dnsLabel(path, s string, max int) {
	if !isDNSLabelForm(s) {
		v.errorf(path, "%s is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)", quote(s))
		return
	}
	if len(s) > max {
		v.errorf(path, "%s is %d characters long, at most %d", quote(s), len(s), max)
	}
}

// isDNSLabelForm reports whether s has the form of a DNS label, whatever its length: apimachinery
// reports a label that is too long and one that is malformed as two problems.
func isDNSLabelForm(s string) bool {
	errs := content.IsDNS1123Label(s)
	return len(errs) == 0 || (len(errs) == 1 && len(s) > content.DNS1123LabelMaxLength)
}

// dnsSubdomain checks that s is a lowercase DNS name.
func (v *validator) dnsSubdomain(path, s string) {
	if msg := dnsSubdomainProblem(s); msg != "" {
		v.errorf(path, "%s %s", quote(s), msg)
	}
}

func dnsSubdomainProblem(s string) string {
	if len(s) > content.DNS1123SubdomainMaxLength {
		return fmt.Sprintf("is longer than %d characters", content.DNS1123SubdomainMaxLength)
	}
	longLabel := slices.ContainsFunc(strings.Split(s, "."), func(l string) bool { return len(l) > content.DNS1123LabelMaxLength })
	if len(content.IsDNS1123Subdomain(s)) > 0 || longLabel {
		return "is not a DNS name (labels of lowercase letters, digits and '-', separated by '.')"
	}
	return ""
}

func isDNSLabel(s string) bool {
	return len(content.IsDNS1123Label(s)) == 0 && len(s) <= MaxClusterNameLength
}

// qualifiedNameProblem says what is wrong with a Kubernetes label or taint key ("[prefix/]name"), or "".
func qualifiedNameProblem(k string) string {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if len(content.IsLabelKey(k)) == 0 && (!hasPrefix || dnsSubdomainProblem(prefix) == "") {
		return ""
	}
	switch {
	case hasPrefix && prefix == "":
		return fmt.Sprintf("%s has an empty prefix before '/'", quote(k))
	case hasPrefix && dnsSubdomainProblem(prefix) != "":
		return fmt.Sprintf("%s has a prefix that is not a DNS name (lowercase, e.g. example.com/)", quote(k))
	case name == "":
		return fmt.Sprintf("%s has an empty name", quote(k))
	case len(name) > maxLabelKeyNameLength:
		return fmt.Sprintf("%s has a name longer than %d characters", quote(k), maxLabelKeyNameLength)
	}
	return fmt.Sprintf("%s is not a qualified name ([prefix/]name: letters, digits, '-', '_' and '.', starting and ending with a letter or digit)", quote(k))
}

// labelValueProblem says what is wrong with a Kubernetes label value, or "".
func labelValueProblem(s string) string {
	switch {
	case len(content.IsLabelValue(s)) == 0:
		return ""
	case len(s) > content.LabelValueMaxLength:
		return fmt.Sprintf("%s is longer than %d characters", quote(s), content.LabelValueMaxLength)
	}
	return fmt.Sprintf("%s may only hold letters, digits, '-', '_' and '.', starting and ending with a letter or digit", quote(s))
}

// quote quotes a value from the spec for a message, shortened if it is long.
func quote(s string) string { return strictyaml.Quote(s) }

// formatDuration writes d without zero units: 1h rather than 1h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// plural writes n and a noun, adding "s" unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
