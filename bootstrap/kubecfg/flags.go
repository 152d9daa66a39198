package kubecfg

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// TLSMinVersion is the lowest TLS version that kiln's control-plane components and kubelets accept.
const TLSMinVersion = "VersionTLS12"

// TLSCipherSuites are the TLS 1.2 cipher suites that kiln's control-plane components and kubelets accept:
// ECDHE key exchange with AEAD ciphers only. TLS 1.3 suites are not configurable and all are safe.
var TLSCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

// APIServerInput is what kube-apiserver's flags depend on. Paths are absolute paths on the node; empty
// ones take their defaults. Call Validate first: APIServerFlags renders what it is given.
type APIServerInput struct {
	// PKIDir holds the certificates and keys under the names of this package's PKI file constants.
	// Defaults to "/etc/kubernetes/pki".
	PKIDir string
	// EncryptionConfigFile is where EncryptionConfig's output is. Defaults to
	// "/etc/kubernetes/encryption-config.yaml".
	EncryptionConfigFile string
	// AdmissionConfigFile is where AdmissionConfig's output is. Defaults to
	// "/etc/kubernetes/admission-config.yaml".
	AdmissionConfigFile string
	// AuditEnabled turns on the audit log.
	AuditEnabled bool
	// AuditPolicyFile is where AuditPolicy's output is. Defaults to "/etc/kubernetes/audit-policy.yaml".
	AuditPolicyFile string
	// AuditLogPath is the audit log file. Defaults to "/var/log/kubernetes/audit/audit.log".
	AuditLogPath string
	// ServiceCIDR is the service address range, e.g. "10.96.0.0/12". Required.
	ServiceCIDR string
	// EtcdServers are the https client URLs of the etcd members. Required.
	EtcdServers []string
	// AdvertiseAddress is the IP address that the API server advertises to the cluster's members.
	// Defaults to the address of the interface of the default route (kube-apiserver's own default).
	AdvertiseAddress string
	// SecurePort is the port the API server listens on. Defaults to 6443.
	SecurePort int
	// ServiceAccountIssuer is the "iss" of the service account tokens the API server issues, an https
	// URL. Defaults to "https://kubernetes.default.svc.<ClusterDomain>".
	ServiceAccountIssuer string
	// ClusterDomain is the DNS domain of services, used for the default ServiceAccountIssuer.
	// Defaults to "cluster.local".
	ClusterDomain string
}

func (in APIServerInput) withDefaults() APIServerInput {
	in.PKIDir = orDefault(in.PKIDir, DefaultPKIDir)
	in.EncryptionConfigFile = orDefault(in.EncryptionConfigFile, DefaultEncryptionConfigFile)
	in.AdmissionConfigFile = orDefault(in.AdmissionConfigFile, DefaultAdmissionConfigFile)
	in.AuditPolicyFile = orDefault(in.AuditPolicyFile, DefaultAuditPolicyFile)
	in.AuditLogPath = orDefault(in.AuditLogPath, DefaultAuditLogPath)
	in.ClusterDomain = orDefault(in.ClusterDomain, DefaultClusterDomain)
	in.ServiceAccountIssuer = orDefault(in.ServiceAccountIssuer, "https://kubernetes.default.svc."+in.ClusterDomain)
	if in.SecurePort == 0 {
		in.SecurePort = DefaultSecurePort
	}
	return in
}

// Validate reports every problem of in at once.
func (in APIServerInput) Validate() error {
	in = in.withDefaults()
	var errs []error
	errs = append(errs, checkAbsolute("kube-apiserver", map[string]string{
		"pki dir":                in.PKIDir,
		"encryption config file": in.EncryptionConfigFile,
		"admission config file":  in.AdmissionConfigFile,
		"audit policy file":      in.AuditPolicyFile,
		"audit log path":         in.AuditLogPath,
	})...)
	if _, err := parseCIDR(in.ServiceCIDR); err != nil {
		errs = append(errs, fmt.Errorf("kubecfg: kube-apiserver: service cidr: %w", err))
	}
	if len(in.EtcdServers) == 0 {
		errs = append(errs, fmt.Errorf("kubecfg: kube-apiserver: etcd servers: %w: none", ErrInvalid))
	}
	for _, s := range in.EtcdServers {
		if u, err := url.Parse(s); err != nil || u.Scheme != "https" || u.Host == "" || strings.Contains(s, ",") {
			errs = append(errs, fmt.Errorf("kubecfg: kube-apiserver: etcd server %q: %w: want https://host:port", s, ErrInvalid))
		}
	}
	if in.AdvertiseAddress != "" {
		if _, err := netip.ParseAddr(in.AdvertiseAddress); err != nil {
			errs = append(errs, fmt.Errorf("kubecfg: kube-apiserver: advertise address %q: %w: not an IP address", in.AdvertiseAddress, ErrInvalid))
		}
	}
	if in.SecurePort < 1 || in.SecurePort > 65535 {
		errs = append(errs, fmt.Errorf("kubecfg: kube-apiserver: secure port %d: %w: want 1 to 65535", in.SecurePort, ErrInvalid))
	}
	if msgs := validation.IsDNS1123Subdomain(in.ClusterDomain); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("kubecfg: kube-apiserver: cluster domain %q: %w: %s", in.ClusterDomain, ErrInvalid, strings.Join(msgs, "; ")))
	}
	if u, err := url.Parse(in.ServiceAccountIssuer); err != nil || u.Scheme != "https" || u.Host == "" || strings.Contains(in.ServiceAccountIssuer, ",") {
		errs = append(errs, fmt.Errorf("kubecfg: kube-apiserver: service account issuer %q: %w: want an https URL", in.ServiceAccountIssuer, ErrInvalid))
	}
	return errors.Join(errs...)
}

// APIServerFlags returns kube-apiserver's command-line flags, "--name=value", sorted by name:
// certificates only (no anonymous requests, bootstrap tokens for joining kubelets), Node and RBAC
// authorization, NodeRestriction on top of the default admission plugins (PodSecurity among them,
// configured by the admission config file), secrets encrypted at rest (the file is read at start only),
// TLS 1.2 or later with TLSCipherSuites, etcd and kubelets over mutual TLS with kubelet serving
// certificates verified against the cluster CA, the front proxy's request headers accepted from
// FrontProxyClientUser only, profiling off and, if enabled, an audit log rotated at 100 MB and kept for
// 30 days in at most 10 files.
func APIServerFlags(in APIServerInput) []string {
	in = in.withDefaults()
	pki := func(name string) string { return path.Join(in.PKIDir, name) }
	f := map[string]string{
		"admission-control-config-file":               in.AdmissionConfigFile,
		"allow-privileged":                            "true",
		"anonymous-auth":                              "false",
		"authorization-mode":                          "Node,RBAC",
		"client-ca-file":                              pki(CACert),
		"enable-admission-plugins":                    "NodeRestriction",
		"enable-bootstrap-token-auth":                 "true",
		"encryption-provider-config":                  in.EncryptionConfigFile,
		"encryption-provider-config-automatic-reload": "false",
		"etcd-cafile":                                 pki(EtcdCACert),
		"etcd-certfile":                               pki(APIServerEtcdClientCert),
		"etcd-keyfile":                                pki(APIServerEtcdClientKey),
		"etcd-servers":                                strings.Join(in.EtcdServers, ","),
		"kubelet-certificate-authority":               pki(CACert),
		"kubelet-client-certificate":                  pki(APIServerKubeletClientCert),
		"kubelet-client-key":                          pki(APIServerKubeletClientKey),
		"kubelet-preferred-address-types":             "InternalIP,ExternalIP,Hostname",
		"profiling":                                   "false",
		"proxy-client-cert-file":                      pki(FrontProxyClientCert),
		"proxy-client-key-file":                       pki(FrontProxyClientKey),
		"requestheader-allowed-names":                 FrontProxyClientUser,
		"requestheader-client-ca-file":                pki(FrontProxyCACert),
		"requestheader-extra-headers-prefix":          "X-Remote-Extra-",
		"requestheader-group-headers":                 "X-Remote-Group",
		"requestheader-username-headers":              "X-Remote-User",
		"secure-port":                                 strconv.Itoa(in.SecurePort),
		"service-account-issuer":                      in.ServiceAccountIssuer,
		"service-account-key-file":                    pki(ServiceAccountPublicKey),
		"service-account-signing-key-file":            pki(ServiceAccountPrivateKey),
		"service-cluster-ip-range":                    in.ServiceCIDR,
		"tls-cert-file":                               pki(APIServerCert),
		"tls-cipher-suites":                           strings.Join(TLSCipherSuites, ","),
		"tls-min-version":                             TLSMinVersion,
		"tls-private-key-file":                        pki(APIServerKey),
	}
	if in.AdvertiseAddress != "" {
		f["advertise-address"] = in.AdvertiseAddress
	}
	if in.AuditEnabled {
		f["audit-policy-file"] = in.AuditPolicyFile
		f["audit-log-path"] = in.AuditLogPath
		f["audit-log-maxage"] = "30"
		f["audit-log-maxbackup"] = "10"
		f["audit-log-maxsize"] = "100"
	}
	return flagList(f)
}

// ControllerManagerInput is what kube-controller-manager's flags depend on. Call Validate first.
type ControllerManagerInput struct {
	// PKIDir holds the certificates and keys under the names of this package's PKI file constants; the
	// cluster CA's key signs the certificates of approved CSRs. Defaults to "/etc/kubernetes/pki".
	PKIDir string
	// KubeconfigFile is the controller manager's kubeconfig, also used to delegate authentication and
	// authorization of its own endpoints. Defaults to "/etc/kubernetes/controller-manager.conf".
	KubeconfigFile string
	// ClusterName is the --cluster-name, which prefixes cloud resources. Defaults to kube-controller-manager's
	// own default, "kubernetes".
	ClusterName string
	// PodCIDR is the range that node pod ranges are allocated from, e.g. "10.244.0.0/16". Required.
	PodCIDR string
	// ServiceCIDR is the service address range, e.g. "10.96.0.0/12". Required.
	ServiceCIDR string
	// LeaderElection: the zero value keeps Kubernetes' own timings.
	LeaderElection LeaderElection
}

// LeaderElection is the lease timing of a control-plane component that elects a leader. Zero fields
// keep Kubernetes' defaults (15 s lease, 10 s renew deadline, 2 s retry).
type LeaderElection struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// SlowMachineLeaderElection tolerates an API server that takes many seconds to answer, as on emulated
// (TCG) machines: with Kubernetes' defaults a leader gives up its lease whenever one renewal takes
// over 10 s, and kube-controller-manager and kube-scheduler then exit and start over, so that CSRs are
// never approved. A failed leader's successor takes over within a minute instead of 15 s.
var SlowMachineLeaderElection = LeaderElection{LeaseDuration: 60 * time.Second, RenewDeadline: 40 * time.Second, RetryPeriod: 10 * time.Second}

func (le LeaderElection) addFlags(f map[string]string) {
	for name, d := range map[string]time.Duration{
		"leader-elect-lease-duration": le.LeaseDuration,
		"leader-elect-renew-deadline": le.RenewDeadline,
		"leader-elect-retry-period":   le.RetryPeriod,
	} {
		if d > 0 {
			f[name] = d.String()
		}
	}
}

func (le LeaderElection) validate(component string) error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"lease duration", le.LeaseDuration}, {"renew deadline", le.RenewDeadline}, {"retry period", le.RetryPeriod}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("kubecfg: %s: leader election %s %s: %w: negative", component, d.name, d.v, ErrInvalid))
		}
	}
	if le.LeaseDuration > 0 && le.RenewDeadline > 0 && le.RenewDeadline >= le.LeaseDuration {
		errs = append(errs, fmt.Errorf("kubecfg: %s: leader election renew deadline %s: %w: must be shorter than the lease duration %s", component, le.RenewDeadline, ErrInvalid, le.LeaseDuration))
	}
	return errors.Join(errs...)
}

func (in ControllerManagerInput) withDefaults() ControllerManagerInput {
	in.PKIDir = orDefault(in.PKIDir, DefaultPKIDir)
	in.KubeconfigFile = orDefault(in.KubeconfigFile, DefaultControllerManagerKubeconfig)
	return in
}

// Validate reports every problem of in at once.
func (in ControllerManagerInput) Validate() error {
	in = in.withDefaults()
	errs := checkAbsolute("kube-controller-manager", map[string]string{
		"pki dir":         in.PKIDir,
		"kubeconfig file": in.KubeconfigFile,
	})
	if err := in.LeaderElection.validate("kube-controller-manager"); err != nil {
		errs = append(errs, err)
	}
	pods, err := parseCIDR(in.PodCIDR)
	if err != nil {
		errs = append(errs, fmt.Errorf("kubecfg: kube-controller-manager: pod cidr: %w", err))
	}
	services, err2 := parseCIDR(in.ServiceCIDR)
	if err2 != nil {
		errs = append(errs, fmt.Errorf("kubecfg: kube-controller-manager: service cidr: %w", err2))
	}
	if err == nil && err2 == nil && pods.Overlaps(services) {
		errs = append(errs, fmt.Errorf("kubecfg: kube-controller-manager: pod cidr %s and service cidr %s: %w: overlap", pods, services, ErrInvalid))
	}
	if in.ClusterName != "" {
		if msgs := validation.IsDNS1123Label(in.ClusterName); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("kubecfg: kube-controller-manager: cluster name %q: %w: %s", in.ClusterName, ErrInvalid, strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
}

// ControllerManagerFlags returns kube-controller-manager's command-line flags, "--name=value", sorted
// by name: one service account per controller, the cluster CA signs approved CSRs, the bootstrap signer
// and token cleaner run with the default controllers, node pod ranges are allocated from PodCIDR, the
// secure port listens on loopback only with TLSMinVersion and TLSCipherSuites, profiling is off.
func ControllerManagerFlags(in ControllerManagerInput) []string {
	in = in.withDefaults()
	pki := func(name string) string { return path.Join(in.PKIDir, name) }
	f := map[string]string{
		"allocate-node-cidrs":              "true",
		"authentication-kubeconfig":        in.KubeconfigFile,
		"authorization-kubeconfig":         in.KubeconfigFile,
		"bind-address":                     "127.0.0.1",
		"client-ca-file":                   pki(CACert),
		"cluster-cidr":                     in.PodCIDR,
		"cluster-signing-cert-file":        pki(CACert),
		"cluster-signing-key-file":         pki(CAKey),
		"controllers":                      "*,bootstrapsigner,tokencleaner",
		"kubeconfig":                       in.KubeconfigFile,
		"leader-elect":                     "true",
		"profiling":                        "false",
		"requestheader-client-ca-file":     pki(FrontProxyCACert),
		"root-ca-file":                     pki(CACert),
		"service-account-private-key-file": pki(ServiceAccountPrivateKey),
		"service-cluster-ip-range":         in.ServiceCIDR,
		"tls-cipher-suites":                strings.Join(TLSCipherSuites, ","),
		"tls-min-version":                  TLSMinVersion,
		"use-service-account-credentials":  "true",
	}
	if in.ClusterName != "" {
		f["cluster-name"] = in.ClusterName
	}
	in.LeaderElection.addFlags(f)
	return flagList(f)
}

// SchedulerInput is what kube-scheduler's flags depend on.
type SchedulerInput struct {
	// KubeconfigFile is the scheduler's kubeconfig, also used to delegate authentication and
	// authorization of its own endpoints. Defaults to "/etc/kubernetes/scheduler.conf".
	KubeconfigFile string
	// LeaderElection: the zero value keeps Kubernetes' own timings.
	LeaderElection LeaderElection
}

// SchedulerFlags returns kube-scheduler's command-line flags, "--name=value", sorted by name: the secure
// port listens on loopback only with TLSMinVersion and TLSCipherSuites, profiling is off.
func SchedulerFlags(in SchedulerInput) []string {
	kubeconfig := orDefault(in.KubeconfigFile, DefaultSchedulerKubeconfig)
	f := map[string]string{
		"authentication-kubeconfig": kubeconfig,
		"authorization-kubeconfig":  kubeconfig,
		"bind-address":              "127.0.0.1",
		"kubeconfig":                kubeconfig,
		"leader-elect":              "true",
		"profiling":                 "false",
		"tls-cipher-suites":         strings.Join(TLSCipherSuites, ","),
		"tls-min-version":           TLSMinVersion,
	}
	in.LeaderElection.addFlags(f)
	return flagList(f)
}

// flagList renders flags as "--name=value", sorted by name.
func flagList(f map[string]string) []string {
	names := make([]string, 0, len(f))
	for name := range f {
		names = append(names, name)
	}
	slices.Sort(names)
	out := make([]string, 0, len(f))
	for _, name := range names {
		out = append(out, "--"+name+"="+f[name])
	}
	return out
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// checkAbsolute checks that every named path is absolute, in name order.
func checkAbsolute(component string, paths map[string]string) []error {
	names := make([]string, 0, len(paths))
	for name := range paths {
		names = append(names, name)
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		if p := paths[name]; !path.IsAbs(p) || strings.ContainsAny(p, ",\n") {
			errs = append(errs, fmt.Errorf("kubecfg: %s: %s %q: %w: want an absolute path", component, name, p, ErrInvalid))
		}
	}
	return errs
}

// parseCIDR parses a canonical CIDR (no host bits set).
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: %q is not a CIDR", ErrInvalid, s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%w: %q has host bits set (want %s)", ErrInvalid, s, p.Masked())
	}
	return p, nil
}
