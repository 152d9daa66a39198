// Package secrets generates and keeps one cluster's secrets: its three CAs (cluster, etcd, front
// proxy), the service-account signing key, the control-plane certificates, the admin certificate, the
// SSH key, the key that encrypts Secrets at rest, and short-lived bootstrap tokens.
//
// A cluster's secrets are generated once (Generate), saved once (Save refuses to replace them) and
// thereafter only loaded, with bootstrap tokens the one part that may be added to (Update), and the
// encryption key the one key that may be replaced, by a recorded rotation (BeginEncryptionRotation,
// AdvanceEncryptionRotation). What must name one node or live only hours is issued from the bundle's
// CAs each time a config is rendered and never stored: etcd members' certificates (EtcdMember) and the
// cluster init's (ClusterInit). Printing a
// Bundle with any fmt verb or logging it with slog never shows key material.
package secrets

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/pki"
)

// Validity of what Generate makes.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
)

// EncryptionKeySize is the length of the key for Secrets at rest: 32 bytes, what aescbc, aesgcm and
// secretbox all take.
const EncryptionKeySize = 32

// Spec defaults Generate applies to an undefaulted spec; the same as the v1alpha1 documentation.
const (
	defaultServiceCIDR   = "10.96.0.0/12"
	defaultClusterDomain = "cluster.local"
)

// Group of the API server's client certificate to the kubelets. It is not system:masters: RBAC binds it
// to what the API server needs from kubelets (system:kubelet-api-admin) and nothing more.
const APIServerKubeletClientGroup = "kiln:apiserver-kubelet-client"

// AdminGroup is the group of the admin client certificate; RBAC binds it to cluster-admin.
const AdminGroup = "kiln:cluster-admins" // bound to cluster-admin by kubecfg.BootstrapRBAC

// The cluster init's identities: a control-plane node applies its first-boot manifests as
// ClusterInitUser in ClusterInitGroup, which the RBAC that kubecfg.ClusterInitRBAC renders binds to
// exactly those objects; ClusterInitGrantUser, in system:masters, applies that RBAC before (see
// Bundle.ClusterInit).
const (
	ClusterInitUser      = "kiln:cluster-init"
	ClusterInitGroup     = "kiln:cluster-init"
	ClusterInitGrantUser = "kiln:cluster-init-grant"
)

// MaxClusterInitValidity caps the lifetime of the cluster init's certificates: the longest a
// bootstrap token lives (spec.security.bootstrapTokenTTL), the window a node has to come up.
const MaxClusterInitValidity = v1alpha1.MaxBootstrapTokenTTL

// mastersGroup is Kubernetes's superuser group, which RBAC cannot restrict.
const mastersGroup = "system:masters"

// Bundle is every secret of one cluster. It is stored whole in the state store; the renderers pick from
// it what each role needs, and issue from its CAs what is made per render (EtcdMember, ClusterInit).
// Admin never leaves the state store (no node gets it).
//
// A bundle stored by an earlier kiln also holds "clusterInit", a system:masters certificate valid for a
// year: it is ignored when loaded and dropped the next time the bundle is stored (Update).
type Bundle struct {
	ClusterCA    pki.KeyPair `json:"clusterCA"`
	EtcdCA       pki.KeyPair `json:"etcdCA"`
	FrontProxyCA pki.KeyPair `json:"frontProxyCA"`
	// ServiceAccount signs service-account tokens: PublicPEM and KeyPEM, no certificate.
	ServiceAccount pki.KeyPair `json:"serviceAccount"`

	// APIServer serves the API; its SANs name the load balancer, the API service and every
	// control-plane node.
	APIServer pki.KeyPair `json:"apiServer"`
	// APIServerKubeletClient is the API server's client certificate to kubelets.
	APIServerKubeletClient pki.KeyPair `json:"apiServerKubeletClient"`
	// APIServerEtcdClient is the API server's client certificate to etcd (etcd CA).
	APIServerEtcdClient pki.KeyPair `json:"apiServerEtcdClient"`
	// EtcdServer and EtcdPeer are etcd's serving and peer certificates (etcd CA), shared by the
	// control-plane nodes.
	EtcdServer pki.KeyPair `json:"etcdServer"`
	EtcdPeer   pki.KeyPair `json:"etcdPeer"`
	// FrontProxyClient is the aggregator's client certificate (front-proxy CA).
	FrontProxyClient  pki.KeyPair `json:"frontProxyClient"`
	ControllerManager pki.KeyPair `json:"controllerManager"`
	Scheduler         pki.KeyPair `json:"scheduler"`
	// Admin is the operator's client certificate, in AdminGroup, which RBAC binds to cluster-admin (so
	// it can be revoked, unlike system:masters). It stays in the state store.
	Admin pki.KeyPair `json:"admin"`

	SSH SSHKeys `json:"ssh"`
	// EncryptionKey encrypts Secrets at rest: EncryptionKeySize random bytes.
	EncryptionKey []byte `json:"encryptionKey"`
	// EncryptionKeyName is the name of EncryptionKey in the API servers' EncryptionConfiguration, which
	// prefixes what it encrypts in etcd; empty means DefaultEncryptionKeyName.
	EncryptionKeyName string `json:"encryptionKeyName,omitempty"`
	// EncryptionRotation is the rotation of the encryption key under way, if any.
	EncryptionRotation *EncryptionRotation `json:"encryptionRotation,omitempty"`
	// CertRenewal is the renewal of leaf certificates under way, if any.
	CertRenewal     *CertRenewal     `json:"certRenewal,omitempty"`
	BootstrapTokens []BootstrapToken `json:"bootstrapTokens,omitempty"`
}

// SSHKeys is who may log in to the nodes as the admin user.
type SSHKeys struct {
	// PrivateKeyPEM is the generated ed25519 key in OpenSSH format; empty when the user brings keys.
	PrivateKeyPEM []byte `json:"privateKeyPEM,omitempty"`
	// AuthorizedKeys are authorized_keys lines.
	AuthorizedKeys []string `json:"authorizedKeys"`
}

// ControlPlaneNodeNames are the names of the cluster's control-plane machines,
// "<cluster>-control-plane-<i>" for i from 0; spec.controlPlane.count defaults to 1. A negative count
// has no names.
func ControlPlaneNodeNames(c *v1alpha1.Cluster) []string {
	n := c.Spec.ControlPlane.Count
	if n == 0 {
		n = 1
	}
	names := make([]string, 0, max(n, 0))
	for i := range n {
		names = append(names, fmt.Sprintf("%s-control-plane-%d", c.Metadata.Name, i))
	}
	return names
}

// Generate makes every secret of cluster c, reading all randomness from rand (crypto/rand.Reader in
// production) and counting validity from now. It makes no bootstrap token: tokens are short-lived and
// made when nodes are about to join (NewBootstrapToken, Bundle.AddBootstrapToken), so none sits unused.
func Generate(c *v1alpha1.Cluster, rand io.Reader, now time.Time) (*Bundle, error) {
	name := c.Metadata.Name
	if name == "" {
		return nil, errors.New("secrets: generate: metadata.name is empty")
	}
	if rand == nil {
		return nil, fmt.Errorf("secrets: generate %s: nil random source", name)
	}
	if c.Spec.ControlPlane.Count < 0 {
		return nil, fmt.Errorf("secrets: generate %s: spec.controlPlane.count: %d is negative", name, c.Spec.ControlPlane.Count)
	}
	apiDNS, apiIPs, err := apiServerSANs(c)
	if err != nil {
		return nil, fmt.Errorf("secrets: generate %s: %w", name, err)
	}
	nodes := ControlPlaneNodeNames(c)
	loopback := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	etcdDNS := append([]string{"localhost"}, nodes...)

	g := generator{rand: rand, now: now}
	b := &Bundle{}
	g.ca(&b.ClusterCA, fmt.Sprintf("kiln %s cluster CA", name))
	g.ca(&b.EtcdCA, fmt.Sprintf("kiln %s etcd CA", name))
	g.ca(&b.FrontProxyCA, fmt.Sprintf("kiln %s front-proxy CA", name))
	g.keyPair(&b.ServiceAccount)

	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	g.leaf(&b.APIServer, &b.ClusterCA, pki.CertRequest{CommonName: "kube-apiserver", DNSNames: apiDNS, IPs: apiIPs, Usages: server})
	g.leaf(&b.APIServerKubeletClient, &b.ClusterCA, pki.CertRequest{CommonName: "kube-apiserver-kubelet-client",
		Organization: []string{APIServerKubeletClientGroup}, Usages: client})
	g.leaf(&b.APIServerEtcdClient, &b.EtcdCA, pki.CertRequest{CommonName: "kube-apiserver-etcd-client", Usages: client})
	// etcd uses its serving certificate as a client too (its gRPC gateway), and peers are both.
	g.leaf(&b.EtcdServer, &b.EtcdCA, pki.CertRequest{CommonName: "kube-etcd", DNSNames: etcdDNS, IPs: loopback, Usages: both})
	g.leaf(&b.EtcdPeer, &b.EtcdCA, pki.CertRequest{CommonName: "kube-etcd-peer", DNSNames: etcdDNS, IPs: loopback, Usages: both})
	g.leaf(&b.FrontProxyClient, &b.FrontProxyCA, pki.CertRequest{CommonName: "front-proxy-client", Usages: client})
	g.leaf(&b.ControllerManager, &b.ClusterCA, pki.CertRequest{CommonName: "system:kube-controller-manager", Usages: client})
	g.leaf(&b.Scheduler, &b.ClusterCA, pki.CertRequest{CommonName: "system:kube-scheduler", Usages: client})
	g.leaf(&b.Admin, &b.ClusterCA, pki.CertRequest{CommonName: "kiln-admin", Organization: []string{AdminGroup}, Usages: client})
	if g.err != nil {
		return nil, fmt.Errorf("secrets: generate %s: %w", name, g.err)
	}

	if b.SSH, err = sshKeys(c, rand); err != nil {
		return nil, fmt.Errorf("secrets: generate %s: %w", name, err)
	}
	b.EncryptionKey = make([]byte, EncryptionKeySize)
	if _, err := io.ReadFull(rand, b.EncryptionKey); err != nil {
		return nil, fmt.Errorf("secrets: generate %s: encryption key: %w", name, err)
	}
	return b, nil
}

// EtcdMember issues the serving and peer certificates of one etcd member: the control-plane node
// name, at its private address addr. They name the node, localhost, the address and loopback, so that
// peers and clients that dial https://ADDR:2379 or :2380 verify them, and so that etcd, which accepts
// a peer's client certificate only if it names the address the peer connects from, accepts the
// member. The bundle's shared EtcdServer and EtcdPeer name every control-plane node but no address:
// they serve where addresses are not known before rendering. Keys and serial numbers are read from
// rand; the certificates are valid from now for LeafValidity. b keeps nothing of them.
func (b *Bundle) EtcdMember(rand io.Reader, now time.Time, name string, addr netip.Addr) (server, peer pki.KeyPair, err error) {
	if !addr.IsValid() || addr.Zone() != "" || addr.IsUnspecified() {
		return pki.KeyPair{}, pki.KeyPair{}, fmt.Errorf("secrets: etcd member %s: %q is not an address", name, addr)
	}
	if rand == nil {
		return pki.KeyPair{}, pki.KeyPair{}, fmt.Errorf("secrets: etcd member %s: nil random source", name)
	}
	ips := []net.IP{net.IP(addr.Unmap().AsSlice()), net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	g := generator{rand: rand, now: now}
	g.leaf(&server, &b.EtcdCA, pki.CertRequest{CommonName: "kube-etcd", DNSNames: []string{"localhost", name}, IPs: ips, Usages: both})
	g.leaf(&peer, &b.EtcdCA, pki.CertRequest{CommonName: "kube-etcd-peer", DNSNames: []string{"localhost", name}, IPs: ips, Usages: both})
	if g.err != nil {
		return pki.KeyPair{}, pki.KeyPair{}, fmt.Errorf("secrets: etcd member %s: %w", name, g.err)
	}
	return server, peer, nil
}

// RebootAgentPrefix starts the user name of a node's reboot agent: kiln:reboot-agent:<node>.
const RebootAgentPrefix = "kiln:reboot-agent:"

// RebootAgent issues the client certificate of node's reboot agent (kiln-node reboot): user
// RebootAgentPrefix+node in group group (rebootlock.Group of the node's pool), which RBAC lets get
// and update that pool's reboot Leases and nothing else. It is the one private key a worker's config
// holds: the config's bootstrap token already makes a node of any name, while this key only holds
// its pool's reboot lock, in its own name (kubecfg.RebootLock's admission policy). Valid for
// LeafValidity; a node lives shorter than that in an immutable fleet (a new image replaces it).
func (b *Bundle) RebootAgent(rand io.Reader, now time.Time, node, group string) (pki.KeyPair, error) {
	if rand == nil {
		return pki.KeyPair{}, fmt.Errorf("secrets: reboot agent of %s: nil random source", node)
	}
	var kp pki.KeyPair
	g := generator{rand: rand, now: now}
	g.leaf(&kp, &b.ClusterCA, pki.CertRequest{CommonName: RebootAgentPrefix + node, Organization: []string{group},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if g.err != nil {
		return pki.KeyPair{}, fmt.Errorf("secrets: reboot agent of %s: %w", node, g.err)
	}
	return kp, nil
}

// ClusterInit issues the client certificates with which a control-plane node's first boot applies
// its manifests, valid from now for validity (TokenTTL: the window a node rendered now has to come
// up in, as its bootstrap token does), at most MaxClusterInitValidity:
//
//   - apply, for ClusterInitUser in ClusterInitGroup, which applies the manifests, bound by RBAC to
//     exactly those objects (kubecfg.ClusterInitRBAC);
//   - grant, for ClusterInitGrantUser in system:masters, which applies that RBAC and nothing else.
//     Kubernetes authorizes nothing outside system:masters before the first RBAC object exists.
//
// Both go to control-plane nodes only, which delete them once the cluster init ran. Keys and serial
// numbers are read from rand; b keeps nothing of them.
func (b *Bundle) ClusterInit(rand io.Reader, now time.Time, validity time.Duration) (apply, grant pki.KeyPair, err error) {
	switch {
	case validity <= 0:
		return pki.KeyPair{}, pki.KeyPair{}, fmt.Errorf("secrets: cluster init credentials: validity %v is not positive", validity)
	case validity > MaxClusterInitValidity:
		return pki.KeyPair{}, pki.KeyPair{}, fmt.Errorf("secrets: cluster init credentials: valid for %v, more than %v", validity, MaxClusterInitValidity)
	case rand == nil:
		return pki.KeyPair{}, pki.KeyPair{}, errors.New("secrets: cluster init credentials: nil random source")
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	g := generator{rand: rand, now: now, validity: validity}
	g.leaf(&apply, &b.ClusterCA, pki.CertRequest{CommonName: ClusterInitUser, Organization: []string{ClusterInitGroup}, Usages: client})
	g.leaf(&grant, &b.ClusterCA, pki.CertRequest{CommonName: ClusterInitGrantUser, Organization: []string{mastersGroup}, Usages: client})
	if g.err != nil {
		return pki.KeyPair{}, pki.KeyPair{}, fmt.Errorf("secrets: cluster init credentials: %w", g.err)
	}
	return apply, grant, nil
}

// generator keeps the first error, so Generate reads as the list of what it makes.
type generator struct {
	rand io.Reader
	now  time.Time
	// validity of leaf certificates; LeafValidity if zero.
	validity time.Duration
	err      error
}

func (g *generator) ca(dst *pki.KeyPair, cn string) {
	if g.err != nil {
		return
	}
	kp, err := pki.NewCA(g.rand, cn, g.now, CAValidity)
	if err != nil {
		g.err = err
		return
	}
	*dst = *kp
}

func (g *generator) keyPair(dst *pki.KeyPair) {
	if g.err != nil {
		return
	}
	kp, err := pki.NewKeyPair(g.rand)
	if err != nil {
		g.err = err
		return
	}
	*dst = *kp
}

func (g *generator) leaf(dst, ca *pki.KeyPair, req pki.CertRequest) {
	if g.err != nil {
		return
	}
	req.Validity = LeafValidity
	if g.validity != 0 {
		req.Validity = g.validity
	}
	kp, err := ca.Issue(g.rand, req, g.now)
	if err != nil {
		g.err = err
		return
	}
	*dst = *kp
}

// apiServerSANs are the names and addresses clients reach the API server by: the load balancer, the
// kubernetes service (its DNS names and the first address of the service CIDR), loopback, and each
// control-plane node.
func apiServerSANs(c *v1alpha1.Cluster) ([]string, []net.IP, error) {
	ep := c.Spec.Network.APIEndpoint
	lb := ep.LoadBalancerName
	if lb == "" {
		lb = fmt.Sprintf("api.%s.kiln.internal", c.Metadata.Name)
	}
	domain := c.Spec.Network.ClusterDomain
	if domain == "" {
		domain = defaultClusterDomain
	}
	cidr := c.Spec.Network.ServiceCIDR
	if cidr == "" {
		cidr = defaultServiceCIDR
	}
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, nil, fmt.Errorf("spec.network.serviceCIDR: %w", err)
	}
	serviceIP := prefix.Masked().Addr().Next()
	if !serviceIP.IsValid() || !prefix.Contains(serviceIP) {
		return nil, nil, fmt.Errorf("spec.network.serviceCIDR: %s has no address for the API service", cidr)
	}

	dns := []string{lb, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + domain, "localhost"}
	dns = append(dns, ControlPlaneNodeNames(c)...)

	var ips []net.IP
	if ep.Address != "" {
		addr, err := netip.ParseAddr(ep.Address)
		if err != nil {
			return nil, nil, fmt.Errorf("spec.network.apiEndpoint.address: %q is not an IP address", ep.Address)
		}
		ips = append(ips, net.IP(addr.Unmap().AsSlice()))
	}
	ips = append(ips, net.IP(serviceIP.Unmap().AsSlice()), net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback)
	return dedupe(dns, func(s string) string { return strings.ToLower(s) }),
		dedupe(ips, func(ip net.IP) string { return ip.String() }), nil
}

func dedupe[T any](in []T, key func(T) string) []T {
	seen := make(map[string]bool, len(in))
	out := in[:0:0]
	for _, v := range in {
		if k := key(v); !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}

// sshKeys makes the cluster's ed25519 key (spec.ssh.generate) or takes the user's public keys.
func sshKeys(c *v1alpha1.Cluster, rand io.Reader) (SSHKeys, error) {
	spec := c.Spec.SSH
	switch {
	case spec.Generate && len(spec.AuthorizedKeys) > 0:
		return SSHKeys{}, errors.New("spec.ssh: generate and authorizedKeys are both set; set one")
	case !spec.Generate && len(spec.AuthorizedKeys) == 0:
		return SSHKeys{}, errors.New("spec.ssh: neither generate nor authorizedKeys is set; no one could log in")
	case !spec.Generate:
		keys := make([]string, len(spec.AuthorizedKeys))
		for i, k := range spec.AuthorizedKeys {
			k = strings.TrimSpace(k)
			if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
				return SSHKeys{}, fmt.Errorf("spec.ssh.authorizedKeys[%d]: %w", i, err)
			} else if len(rest) > 0 {
				return SSHKeys{}, fmt.Errorf("spec.ssh.authorizedKeys[%d]: more than one key in one entry", i)
			}
			keys[i] = k
		}
		return SSHKeys{AuthorizedKeys: keys}, nil
	}

	// ed25519.GenerateKey ignores its reader since Go 1.26; the seed is read here so that rand is the
	// one source of randomness.
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return SSHKeys{}, fmt.Errorf("ssh key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	comment := "kiln@" + c.Metadata.Name
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return SSHKeys{}, fmt.Errorf("ssh key: %w", err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return SSHKeys{}, fmt.Errorf("ssh key: %w", err)
	}
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n") + " " + comment
	return SSHKeys{PrivateKeyPEM: pem.EncodeToMemory(block), AuthorizedKeys: []string{line}}, nil
}

// Verify checks the bundle at now: every CA is a CA, every certificate chains to the CA it belongs to
// and is valid, every private key matches, and the encryption key has its size. It reports every
// finding at once.
func (b *Bundle) Verify(now time.Time) error {
	var errs []error
	for _, ca := range b.cas() {
		cert, _, err := ca.kp.Parse()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ca.name, err))
			continue
		}
		if !cert.IsCA {
			errs = append(errs, fmt.Errorf("%s: %w", ca.name, pki.ErrNotCA))
			continue
		}
		if err := ca.kp.VerifyAt(ca.kp, now); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ca.name, err))
		}
	}
	for _, l := range b.leaves() {
		if err := l.kp.VerifyAt(l.ca, now); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.name, err))
		}
	}
	if err := b.ServiceAccount.VerifyAt(nil, now); err != nil {
		errs = append(errs, fmt.Errorf("serviceAccount: %w", err))
	}
	if len(b.EncryptionKey) != EncryptionKeySize {
		errs = append(errs, fmt.Errorf("encryptionKey: %d bytes, want %d", len(b.EncryptionKey), EncryptionKeySize))
	}
	if r := b.EncryptionRotation; r != nil {
		if err := checkRotation(r); err != nil {
			errs = append(errs, fmt.Errorf("encryptionRotation: %w", err))
		}
		if r.OldKeyName != b.CurrentEncryptionKeyName() {
			errs = append(errs, fmt.Errorf("encryptionRotation: %w: oldKeyName %q is not the key's name %q", ErrRotationRecord, r.OldKeyName, b.CurrentEncryptionKeyName()))
		}
	}
	if len(b.SSH.AuthorizedKeys) == 0 {
		errs = append(errs, errors.New("ssh: no authorized key"))
	}
	if len(b.SSH.PrivateKeyPEM) > 0 {
		if err := b.SSH.check(); err != nil {
			errs = append(errs, fmt.Errorf("ssh: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("secrets: verify: %w", err)
	}
	return nil
}

// check makes sure the private key's public half is the first authorized key.
func (k SSHKeys) check() error {
	signer, err := ssh.ParsePrivateKey(k.PrivateKeyPEM)
	if err != nil {
		return fmt.Errorf("private key: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.AuthorizedKeys[0]))
	if err != nil {
		return fmt.Errorf("authorizedKeys[0]: %w", err)
	}
	if string(pub.Marshal()) != string(signer.PublicKey().Marshal()) {
		return errors.New("private key does not match authorizedKeys[0]")
	}
	return nil
}

type namedPair struct {
	name string
	kp   *pki.KeyPair
	ca   *pki.KeyPair
}

func (b *Bundle) cas() []namedPair {
	return []namedPair{
		{name: "clusterCA", kp: &b.ClusterCA},
		{name: "etcdCA", kp: &b.EtcdCA},
		{name: "frontProxyCA", kp: &b.FrontProxyCA},
	}
}

func (b *Bundle) leaves() []namedPair {
	return []namedPair{
		{name: "apiServer", kp: &b.APIServer, ca: &b.ClusterCA},
		{name: "apiServerKubeletClient", kp: &b.APIServerKubeletClient, ca: &b.ClusterCA},
		{name: "apiServerEtcdClient", kp: &b.APIServerEtcdClient, ca: &b.EtcdCA},
		{name: "etcdServer", kp: &b.EtcdServer, ca: &b.EtcdCA},
		{name: "etcdPeer", kp: &b.EtcdPeer, ca: &b.EtcdCA},
		{name: "frontProxyClient", kp: &b.FrontProxyClient, ca: &b.FrontProxyCA},
		{name: "controllerManager", kp: &b.ControllerManager, ca: &b.ClusterCA},
		{name: "scheduler", kp: &b.Scheduler, ca: &b.ClusterCA},
		{name: "admin", kp: &b.Admin, ca: &b.ClusterCA},
	}
}
