package kubecfg

// Files in the PKI directory, named as kubeadm names them.
const (
	CACert                     = "ca.crt"
	CAKey                      = "ca.key"
	APIServerCert              = "apiserver.crt"
	APIServerKey               = "apiserver.key"
	APIServerKubeletClientCert = "apiserver-kubelet-client.crt"
	APIServerKubeletClientKey  = "apiserver-kubelet-client.key"
	APIServerEtcdClientCert    = "apiserver-etcd-client.crt"
	APIServerEtcdClientKey     = "apiserver-etcd-client.key"
	FrontProxyCACert           = "front-proxy-ca.crt"
	FrontProxyClientCert       = "front-proxy-client.crt"
	FrontProxyClientKey        = "front-proxy-client.key"
	ServiceAccountPublicKey    = "sa.pub"
	ServiceAccountPrivateKey   = "sa.key"
	EtcdCACert                 = "etcd/ca.crt"
)

// FrontProxyClientUser is the common name of the front proxy's client certificate (FrontProxyClientCert),
// the one name kube-apiserver accepts request headers from.
const FrontProxyClientUser = "front-proxy-client"

// Default locations on the node.
const (
	DefaultPKIDir                      = "/etc/kubernetes/pki"
	DefaultEncryptionConfigFile        = "/etc/kubernetes/encryption-config.yaml"
	DefaultAdmissionConfigFile         = "/etc/kubernetes/admission-config.yaml"
	DefaultAuditPolicyFile             = "/etc/kubernetes/audit-policy.yaml"
	DefaultAuditLogPath                = "/var/log/kubernetes/audit/audit.log"
	DefaultControllerManagerKubeconfig = "/etc/kubernetes/controller-manager.conf"
	DefaultSchedulerKubeconfig         = "/etc/kubernetes/scheduler.conf"
	// The cluster init's: the manifests it applies, the RBAC that lets it (ClusterInitRBAC), and the
	// kubeconfigs that apply each, removed once it ran.
	DefaultClusterInitManifestsDir    = "/etc/kubernetes/kiln"
	DefaultClusterInitRBACFile        = "/etc/kubernetes/cluster-init-rbac.yaml"
	DefaultClusterInitKubeconfig      = "/etc/kubernetes/cluster-init.conf"
	DefaultClusterInitGrantKubeconfig = "/etc/kubernetes/cluster-init-grant.conf"
	DefaultClusterDomain              = "cluster.local"
	DefaultSecurePort                 = 6443
)
