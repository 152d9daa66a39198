package ignition

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/firewall"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/lint"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/butane"
	"github.com/kiln-dev/kiln/nodeagent/podnet"
	"github.com/kiln-dev/kiln/nodeagent/reboot"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// Paths on the node.
const (
	pkiDir              = kubecfg.DefaultPKIDir
	bootstrapKubeconfig = "/etc/kubernetes/bootstrap-kubelet.conf"
	kubeletKubeconfig   = "/etc/kubernetes/kubelet.conf"
	kubeletConfig       = "/var/lib/kubelet/config.yaml"
	encryptionConfig    = kubecfg.DefaultEncryptionConfigFile
	admissionConfig     = kubecfg.DefaultAdmissionConfigFile
	auditPolicy         = kubecfg.DefaultAuditPolicyFile
	auditLog            = kubecfg.DefaultAuditLogPath
	manifestsDir        = kubecfg.DefaultClusterInitManifestsDir
)

// templateData is what the Butane templates see.
type templateData struct {
	Cluster, Role, Pool string
	User                string
	AuthorizedKeys      string
	// NodeEnv is /etc/kiln/node.env, with the node's name and address as placeholders.
	NodeEnv             string
	BinDir              string
	CACert              string
	BootstrapKubeconfig string
	KubeletConfig       string
	KubeletFlags        []string
	// ContainerdConfig is /etc/containerd/config.toml (containerd 2.x, kiln's pinned sandbox image).
	ContainerdConfig string
	// FirewallRuleset and FirewallUnit enforce the firewall intent on the node itself, where no cloud
	// firewall does (every provider but aws).
	FirewallRuleset string
	FirewallUnit    string
	// PodNetworkUnit is kiln-podnet.service (kiln-node podnet: the CNI config and the routes to the
	// other nodes' pods); KubeProxyConfig is kube-proxy's --config file.
	PodNetworkUnit  string
	KubeProxyConfig string
	// RebootService and RebootTimer run kiln-node reboot every minute: the reboots that updates
	// need, one node of the pool at a time.
	RebootService, RebootTimer string
	// RebootAgentCert and RebootAgentKey are the agent's credential (per-node placeholders), written
	// to RebootAgentCertFile and RebootAgentKeyFile.
	RebootAgentCert, RebootAgentKey         string
	RebootAgentCertFile, RebootAgentKeyFile string

	// Control plane only.
	ClusterInit       clusterInitData
	ControlPlaneFiles []nodeFile
	EtcdFlags         []string
	ControlPlaneUnits []controlPlaneUnit
	// Endpoint is set where the control-plane nodes make the API endpoint (EndpointVIP).
	Endpoint *endpointData
}

// endpointData is what the control-plane nodes of an EndpointVIP placement run for the API endpoint.
type endpointData struct {
	HAProxyConfig, KeepalivedConfig    string
	InterfaceScript, InterfaceFilePath string
}

// clusterInitData is where kiln-cluster-init.service finds what it applies, and with what.
type clusterInitData struct {
	// RBAC is applied first, with GrantKubeconfig; then Manifests, with Kubeconfig.
	RBAC, GrantKubeconfig string
	Manifests, Kubeconfig string
}

type nodeFile struct {
	Path     string
	Mode     int
	Contents string
}

type controlPlaneUnit struct {
	Name, Description, After string
	Flags                    []string
}

func (r *Renderer) templateData(role, pool string) (*templateData, error) {
	c, b := r.in.Cluster, r.in.Secrets
	spec := c.Spec
	d := &templateData{
		Cluster:        c.Metadata.Name,
		Role:           role,
		Pool:           pool,
		User:           spec.SSH.User,
		AuthorizedKeys: strings.Join(trimAll(b.SSH.AuthorizedKeys), "\n") + "\n",
		BinDir:         r.in.BinDir,
		CACert:         string(b.ClusterCA.CertPEM),
		NodeEnv: fmt.Sprintf("KILN_CLUSTER=%s\nKILN_ROLE=%s\nKILN_POOL=%s\nKILN_NODE=%s\nKILN_NODE_ADDRESS=%s\n",
			c.Metadata.Name, role, pool, butane.NodeNamePlaceholder, butane.NodeAddressPlaceholder),
	}
	if len(b.SSH.AuthorizedKeys) == 0 {
		return nil, fmt.Errorf("ignition: cluster %s has no SSH authorized key", c.Metadata.Name)
	}
	server := r.nodeServer()
	if role == v1alpha1.RoleControlPlane {
		server = r.localServer()
	}
	bk, err := kubecfg.Kubeconfig(kubecfg.KubeconfigInput{
		ClusterName: c.Metadata.Name, Server: server, CAPEM: b.ClusterCA.CertPEM,
		User: "kubelet-bootstrap", Token: r.in.Token.String(),
	})
	if err != nil {
		return nil, fmt.Errorf("ignition: bootstrap kubeconfig: %w", err)
	}
	d.BootstrapKubeconfig = string(bk)
	kc, err := kubecfg.KubeletConfig(kubecfg.KubeletInput{
		ClientCAFile:  pkiDir + "/ca.crt",
		ServiceCIDR:   spec.Network.ServiceCIDR,
		ClusterDomain: spec.Network.ClusterDomain,
	})
	if err != nil {
		return nil, fmt.Errorf("ignition: kubelet config: %w", err)
	}
	d.KubeletConfig = string(kc)
	d.ContainerdConfig = string(kubecfg.ContainerdConfig())
	podCIDR, err := netip.ParsePrefix(spec.Network.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("ignition: spec.network.podCIDR: %w", err)
	}
	if d.PodNetworkUnit, err = podnet.Unit(podCIDR); err != nil {
		return nil, fmt.Errorf("ignition: pod network: %w", err)
	}
	kp, err := kubecfg.KubeProxyConfig(kubecfg.KubeProxyInput{Kubeconfig: kubeletKubeconfig, ClusterCIDR: podCIDR})
	if err != nil {
		return nil, fmt.Errorf("ignition: %w", err)
	}
	d.KubeProxyConfig = string(kp)
	labels := map[string]string{"kiln.dev/cluster": c.Metadata.Name, "kiln.dev/role": role}
	var taints []string
	if role == v1alpha1.RoleControlPlane {
		taints = append(taints, "node-role.kubernetes.io/control-plane:NoSchedule")
	} else {
		p := r.pool(pool)
		labels["kiln.dev/pool"] = pool
		for k, v := range p.Labels {
			labels[k] = v
		}
		for _, t := range p.Taints {
			taints = append(taints, t.Key+"="+t.Value+":"+t.Effect)
		}
	}
	d.KubeletFlags = []string{
		"--bootstrap-kubeconfig=" + bootstrapKubeconfig,
		"--kubeconfig=" + kubeletKubeconfig,
		"--config=" + kubeletConfig,
		"--node-labels=" + joinLabels(labels),
	}
	if r.in.Placement.NodeAddresses {
		// The node's private address, not that of whichever interface has the default route (on QEMU
		// the same 10.0.2.15 on every node).
		d.KubeletFlags = append(d.KubeletFlags, "--node-ip="+butane.NodeAddressPlaceholder)
	}
	if len(taints) > 0 {
		d.KubeletFlags = append(d.KubeletFlags, "--register-with-taints="+strings.Join(taints, ","))
	}
	if !r.in.Placement.ExternalFirewall {
		intent, err := r.in.Placement.Intent(c)
		if err != nil {
			return nil, fmt.Errorf("ignition: %w", err)
		}
		rs, err := firewall.Nftables(intent.Node(role, pool), role)
		if err != nil {
			return nil, fmt.Errorf("ignition: %w", err)
		}
		d.FirewallRuleset, d.FirewallUnit = string(rs), firewall.Unit()
	}
	if d.RebootService, d.RebootTimer, err = r.rebootUnits(role, pool); err != nil {
		return nil, err
	}
	d.RebootAgentCert, d.RebootAgentKey = rebootAgentCertPlaceholder, rebootAgentKeyPlaceholder
	d.RebootAgentCertFile, d.RebootAgentKeyFile = reboot.DefaultLockCert, reboot.DefaultLockKey
	if role == v1alpha1.RoleControlPlane {
		if err := r.controlPlaneData(d); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// rebootUnits are the units of the reboot coordinator for a node of role in pool: its pool's lock
// (the control plane's for a control-plane node) and maintenance window.
func (r *Renderer) rebootUnits(role, pool string) (service, timer string, err error) {
	in := reboot.UnitInput{Node: butane.NodeNamePlaceholder, Pool: pool, Slots: 1, Kubeconfig: kubeletKubeconfig,
		LockCert: reboot.DefaultLockCert, LockKey: reboot.DefaultLockKey}
	mw := r.in.Cluster.Spec.ControlPlane.MaintenanceWindow
	if role == v1alpha1.RoleControlPlane {
		in.Pool = rebootlock.ControlPlanePool
	} else {
		p := r.pool(pool)
		in.Slots, mw = max(p.MaxConcurrentReboots, 1), p.MaintenanceWindow
	}
	if mw != nil {
		in.Schedule, in.TimeZone = mw.Schedule, mw.TimeZone
	}
	service, timer, err = reboot.Units(in)
	if err != nil {
		return "", "", fmt.Errorf("ignition: %w", err)
	}
	return service, timer, nil
}

// externalServer is the API endpoint by its name: the service-account issuer.
func (r *Renderer) externalServer() string {
	ep := r.in.Cluster.Spec.Network.APIEndpoint
	return fmt.Sprintf("https://%s:%d", ep.LoadBalancerName, ep.Port)
}

// nodeServer is the API endpoint as workers dial it: at its address where the spec gives one (the
// API server certificate names it, and no node needs to resolve the load balancer's name), else by
// its name (the NLB's, which AWS's DNS resolves).
func (r *Renderer) nodeServer() string {
	ep := r.in.Cluster.Spec.Network.APIEndpoint
	if a, err := netip.ParseAddr(ep.Address); err == nil {
		return "https://" + net.JoinHostPort(a.String(), strconv.Itoa(ep.Port))
	}
	return r.externalServer()
}

// localServer is the node's own kube-apiserver, which a control-plane node's components and kubelet
// reach without the endpoint (its address may be on another node, or not yet up).
func (r *Renderer) localServer() string {
	return fmt.Sprintf("https://127.0.0.1:%d", r.apiServerPort())
}

func (r *Renderer) controlPlaneData(d *templateData) error {
	c, b := r.in.Cluster, r.in.Secrets
	spec := c.Spec
	add := func(path string, mode int, contents []byte) {
		d.ControlPlaneFiles = append(d.ControlPlaneFiles, nodeFile{Path: path, Mode: mode, Contents: string(contents)})
	}
	// Certificates and keys. The etcd and front-proxy CA keys stay in the state store: every
	// certificate the control plane needs is issued in advance. The cluster CA key is here because
	// the controller manager signs the kubelets' CSRs with it.
	add(pkiDir+"/ca.key", 0o600, b.ClusterCA.KeyPEM)
	etcdServer, etcdPeer := b.EtcdServer, b.EtcdPeer
	if r.memberCerts() {
		// Each node's own, naming its address, issued when its config is rendered (nodeValues).
		etcdServer = pki.KeyPair{CertPEM: []byte(etcdServerCertPlaceholder), KeyPEM: []byte(etcdServerKeyPlaceholder)}
		etcdPeer = pki.KeyPair{CertPEM: []byte(etcdPeerCertPlaceholder), KeyPEM: []byte(etcdPeerKeyPlaceholder)}
	}
	for _, p := range []struct {
		name string
		kp   pki.KeyPair
	}{
		{"apiserver", b.APIServer},
		{"apiserver-kubelet-client", b.APIServerKubeletClient},
		{"apiserver-etcd-client", b.APIServerEtcdClient},
		{"front-proxy-client", b.FrontProxyClient},
		{"etcd/server", etcdServer},
		{"etcd/peer", etcdPeer},
	} {
		add(pkiDir+"/"+p.name+".crt", 0o644, p.kp.CertPEM)
		add(pkiDir+"/"+p.name+".key", 0o600, p.kp.KeyPEM)
	}
	add(pkiDir+"/front-proxy-ca.crt", 0o644, b.FrontProxyCA.CertPEM)
	add(pkiDir+"/etcd/ca.crt", 0o644, b.EtcdCA.CertPEM)
	add(pkiDir+"/sa.key", 0o600, b.ServiceAccount.KeyPEM)
	add(pkiDir+"/sa.pub", 0o644, b.ServiceAccount.PublicPEM)

	// Cluster security configuration.
	// During a rotation of the encryption key, a new node gets the keys of the phase the rotation reached.
	var keys []kubecfg.EncryptionKey
	for _, k := range b.EncryptionKeys() {
		keys = append(keys, kubecfg.EncryptionKey{Name: k.Name, Secret: k.Key})
	}
	enc, err := kubecfg.EncryptionConfigKeys(spec.Security.Encryption.Provider, keys)
	if err != nil {
		return fmt.Errorf("ignition: encryption config: %w", err)
	}
	if err := kubecfg.CheckEncryptionConfig(enc); err != nil {
		return fmt.Errorf("ignition: encryption config: %w", err)
	}
	add(encryptionConfig, 0o600, enc)
	adm, err := kubecfg.AdmissionConfig(spec.Security.PodSecurity.Defaults, nil)
	if err != nil {
		return fmt.Errorf("ignition: admission config: %w", err)
	}
	add(admissionConfig, 0o644, adm)
	audit := spec.Security.Audit.Enabled == nil || *spec.Security.Audit.Enabled
	if audit {
		add(auditPolicy, 0o644, kubecfg.AuditPolicy())
	}

	// Kubeconfigs of the components and of the cluster init, all to the local API server. The cluster
	// init's are issued now, for as long as a bootstrap token lives.
	r.randMu.Lock()
	initApply, initGrant, err := b.ClusterInit(r.in.Rand, r.in.Now(), secrets.TokenTTL(c))
	r.randMu.Unlock()
	if err != nil {
		return fmt.Errorf("ignition: spec.security.bootstrapTokenTTL: %w", err)
	}
	for _, k := range []struct {
		path, user string
		kp         pki.KeyPair
	}{
		{kubecfg.DefaultControllerManagerKubeconfig, "system:kube-controller-manager", b.ControllerManager},
		{kubecfg.DefaultSchedulerKubeconfig, "system:kube-scheduler", b.Scheduler},
		{kubecfg.DefaultClusterInitKubeconfig, secrets.ClusterInitUser, initApply},
		{kubecfg.DefaultClusterInitGrantKubeconfig, secrets.ClusterInitGrantUser, initGrant},
	} {
		kc, err := kubecfg.Kubeconfig(kubecfg.KubeconfigInput{
			ClusterName: c.Metadata.Name, Server: r.localServer(), CAPEM: b.ClusterCA.CertPEM,
			User: k.user, ClientCertPEM: k.kp.CertPEM, ClientKeyPEM: k.kp.KeyPEM,
		})
		if err != nil {
			return fmt.Errorf("ignition: %s: %w", k.path, err)
		}
		add(k.path, 0o600, kc)
	}

	// Objects applied once the API is up: namespaces with their Pod Security labels, the RBAC
	// bindings of kubelet TLS bootstrap, the pod network agent's read access to Nodes, kube-proxy's
	// (both act with the kubelet's credential), and the bootstrap tokens nodes join with. Before
	// them, the RBAC that lets the cluster init apply exactly these.
	ns, err := kubecfg.NamespaceManifests(spec.Security.PodSecurity.Namespaces)
	if err != nil {
		return fmt.Errorf("ignition: namespaces: %w", err)
	}
	type manifest struct {
		name string
		data []byte
	}
	manifests := []manifest{
		{"00-namespaces.yaml", ns},
		{"10-bootstrap-rbac.yaml", kubecfg.BootstrapRBAC()},
		{"15-podnet-rbac.yaml", kubecfg.PodNetworkRBAC()},
		{"16-kube-proxy-rbac.yaml", kubecfg.KubeProxyRBAC()},
	}
	rebootObjects, rebootPolicy := kubecfg.RebootLock(kubecfg.RebootPools(c))
	manifests = append(manifests, manifest{"17-reboot-lock.yaml", rebootObjects})
	var tokens []byte
	for _, t := range b.BootstrapTokens {
		s, err := kubecfg.BootstrapTokenSecret(t.ID, t.Secret, t.Expires, t.Description)
		if err != nil {
			return fmt.Errorf("ignition: bootstrap token %s: %w", t.ID, err)
		}
		if len(tokens) > 0 {
			tokens = append(tokens, "---\n"...)
		}
		tokens = append(tokens, s...)
	}
	if len(tokens) > 0 {
		manifests = append(manifests, manifest{"20-bootstrap-tokens.yaml", tokens})
	}
	all := make([][]byte, len(manifests))
	for i, m := range manifests {
		add(manifestsDir+"/"+m.name, 0o600, m.data)
		all[i] = m.data
	}
	rbac, err := kubecfg.ClusterInitRBAC(secrets.ClusterInitGroup, all...)
	if err != nil {
		return fmt.Errorf("ignition: %w", err)
	}
	// The reboot lock's admission policy goes with that RBAC, applied by the same system:masters
	// grant: the cluster init's own writes are not trusted with an admission policy.
	add(kubecfg.DefaultClusterInitRBACFile, 0o600, append(append(rbac, "---\n"...), rebootPolicy...))
	d.ClusterInit = clusterInitData{
		RBAC: kubecfg.DefaultClusterInitRBACFile, GrantKubeconfig: kubecfg.DefaultClusterInitGrantKubeconfig,
		Manifests: manifestsDir, Kubeconfig: kubecfg.DefaultClusterInitKubeconfig,
	}

	// Units. etcd's members reach each other at their addresses where those are known before
	// rendering, else by name (which the provider must make resolve).
	names := secrets.ControlPlaneNodeNames(c)
	// The node's own address is a placeholder, which JoinHostPort cannot tell an IPv6 address in:
	// the control plane's addresses say which family it is.
	ipv6 := r.in.ControlPlaneAddresses[names[0]].Is6()
	url := func(host, port string) string {
		if host == butane.NodeAddressPlaceholder && ipv6 {
			return "https://[" + host + "]:" + port
		}
		return "https://" + net.JoinHostPort(host, port)
	}
	peerURL := func(host string) string { return url(host, "2380") }
	clientURL := func(host string) string { return url(host, "2379") }
	var initial []string
	for _, n := range names {
		host := n
		if a, ok := r.in.ControlPlaneAddresses[n]; ok {
			host = a.String()
		}
		initial = append(initial, n+"="+peerURL(host))
	}
	node, self := butane.NodeNamePlaceholder, butane.NodeNamePlaceholder
	listenClient, listenPeer := clientURL("0.0.0.0"), peerURL("0.0.0.0")
	advertise := ""
	if len(r.in.ControlPlaneAddresses) > 0 {
		self = butane.NodeAddressPlaceholder
		listenClient, listenPeer = clientURL(self)+","+clientURL("127.0.0.1"), peerURL(self)
		advertise = self
	}
	d.EtcdFlags = []string{
		"--name=" + node,
		"--data-dir=/var/lib/etcd",
		"--listen-client-urls=" + listenClient,
		"--advertise-client-urls=" + clientURL(self),
		"--listen-peer-urls=" + listenPeer,
		"--initial-advertise-peer-urls=" + peerURL(self),
		"--initial-cluster=" + strings.Join(initial, ","),
		"--initial-cluster-state=new",
		"--initial-cluster-token=" + c.Metadata.Name,
		"--client-cert-auth=true",
		"--trusted-ca-file=" + pkiDir + "/etcd/ca.crt",
		"--cert-file=" + pkiDir + "/etcd/server.crt",
		"--key-file=" + pkiDir + "/etcd/server.key",
		"--peer-client-cert-auth=true",
		"--peer-trusted-ca-file=" + pkiDir + "/etcd/ca.crt",
		"--peer-cert-file=" + pkiDir + "/etcd/peer.crt",
		"--peer-key-file=" + pkiDir + "/etcd/peer.key",
		"--cipher-suites=" + strings.Join(etcdCipherSuites, ","),
	}
	apiIn := kubecfg.APIServerInput{
		PKIDir:               pkiDir,
		EncryptionConfigFile: encryptionConfig,
		AdmissionConfigFile:  admissionConfig,
		AuditEnabled:         audit,
		AuditPolicyFile:      auditPolicy,
		AuditLogPath:         auditLog,
		ServiceCIDR:          spec.Network.ServiceCIDR,
		EtcdServers:          []string{"https://127.0.0.1:2379"},
		ServiceAccountIssuer: r.externalServer(),
		SecurePort:           r.apiServerPort(),
		ClusterDomain:        spec.Network.ClusterDomain,
	}
	if advertise != "" {
		// Checked with an address of the right family; the flag holds the node's own, filled in per node.
		apiIn.AdvertiseAddress = r.in.ControlPlaneAddresses[names[0]].String()
	}
	cmIn := kubecfg.ControllerManagerInput{
		PKIDir:         pkiDir,
		KubeconfigFile: "/etc/kubernetes/controller-manager.conf",
		ClusterName:    c.Metadata.Name,
		PodCIDR:        spec.Network.PodCIDR,
		ServiceCIDR:    spec.Network.ServiceCIDR,
	}
	var election kubecfg.LeaderElection
	if r.in.Placement.SlowMachines {
		election = kubecfg.SlowMachineLeaderElection
	}
	cmIn.LeaderElection = election
	if err := errors.Join(apiIn.Validate(), cmIn.Validate()); err != nil {
		return fmt.Errorf("ignition: control-plane flags: %w", err)
	}
	if advertise != "" {
		apiIn.AdvertiseAddress = advertise
	}
	api := kubecfg.APIServerFlags(apiIn)
	cm := kubecfg.ControllerManagerFlags(cmIn)
	sch := kubecfg.SchedulerFlags(kubecfg.SchedulerInput{KubeconfigFile: "/etc/kubernetes/scheduler.conf", LeaderElection: election})
	d.ControlPlaneUnits = []controlPlaneUnit{
		{Name: "kube-apiserver", Description: "Kubernetes API server", After: "etcd.service network-online.target", Flags: api},
		{Name: "kube-controller-manager", Description: "Kubernetes controller manager", After: "kube-apiserver.service", Flags: cm},
		{Name: "kube-scheduler", Description: "Kubernetes scheduler", After: "kube-apiserver.service", Flags: sch},
	}

	if r.in.Placement.Endpoint == EndpointVIP {
		vip, err := netip.ParseAddr(spec.Network.APIEndpoint.Address)
		if err != nil {
			return fmt.Errorf("ignition: spec.network.apiEndpoint.address: %w", err)
		}
		vip = vip.Unmap()
		subnet, err := endpointSubnet(c, vip)
		if err != nil {
			return err
		}
		d.Endpoint = &endpointData{
			HAProxyConfig:     haproxyConfig(spec.Network.APIEndpoint.Port, r.apiServerPort(), vip.Is6(), r.backends()),
			KeepalivedConfig:  keepalivedConfig(c.Metadata.Name, vip, subnet),
			InterfaceScript:   keepalivedInterfaceScript(subnet),
			InterfaceFilePath: KeepalivedInterfaceFile,
		}
	}
	return nil
}

// etcdCipherSuites are the TLS 1.2 suites etcd accepts (TLS 1.3 suites are not configurable).
var etcdCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}

// ForbiddenSecrets lists the cluster's secrets that a node of the role must not hold. No node holds
// the cluster's SSH private key or the admin credential; a worker holds no key at all. What is issued
// per render (the cluster init's credentials, etcd members' certificates) is in no bundle: lint
// refuses any private key on a worker, kubeconfigs' included, and any system:masters certificate on a
// worker or valid for more than a day.
func ForbiddenSecrets(role string, b *secrets.Bundle) []lint.Secret {
	fs := []lint.Secret{
		{Name: "cluster SSH private key", Value: b.SSH.PrivateKeyPEM},
		{Name: "admin client key", Value: b.Admin.KeyPEM},
		{Name: "etcd CA key", Value: b.EtcdCA.KeyPEM},
		{Name: "front-proxy CA key", Value: b.FrontProxyCA.KeyPEM},
	}
	if role == v1alpha1.RoleControlPlane {
		return fs
	}
	return append(fs,
		lint.Secret{Name: "cluster CA key", Value: b.ClusterCA.KeyPEM},
		lint.Secret{Name: "service-account signing key", Value: b.ServiceAccount.KeyPEM},
		lint.Secret{Name: "secrets encryption key", Value: b.EncryptionKey},
		lint.Secret{Name: "new secrets encryption key", Value: newEncryptionKey(b)},
		lint.Secret{Name: "API server key", Value: b.APIServer.KeyPEM},
		lint.Secret{Name: "etcd server key", Value: b.EtcdServer.KeyPEM},
		lint.Secret{Name: "etcd peer key", Value: b.EtcdPeer.KeyPEM},
		lint.Secret{Name: "API server etcd-client key", Value: b.APIServerEtcdClient.KeyPEM},
		lint.Secret{Name: "API server kubelet-client key", Value: b.APIServerKubeletClient.KeyPEM},
		lint.Secret{Name: "front-proxy client key", Value: b.FrontProxyClient.KeyPEM},
		lint.Secret{Name: "controller-manager key", Value: b.ControllerManager.KeyPEM},
		lint.Secret{Name: "scheduler key", Value: b.Scheduler.KeyPEM},
	)
}

func trimAll(ss []string) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func joinLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// newEncryptionKey is the new key of a rotation of the encryption key under way, or nil.
func newEncryptionKey(b *secrets.Bundle) []byte {
	if b.EncryptionRotation == nil {
		return nil
	}
	return b.EncryptionRotation.NewKey
}
