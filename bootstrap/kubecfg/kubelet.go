package kubecfg

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// ContainerRuntimeEndpoint is containerd's CRI socket, the runtime of every kiln node.
const ContainerRuntimeEndpoint = "unix:///run/containerd/containerd.sock"

// KubeletInput is what the KubeletConfiguration depends on.
type KubeletInput struct {
	// ServiceCIDR is the service address range; its 10th address is the cluster DNS service. Required.
	ServiceCIDR string
	// ClusterDomain is the DNS domain of services. Defaults to "cluster.local".
	ClusterDomain string
	// ClientCAFile verifies the client certificates of callers of the kubelet API (kube-apiserver).
	// Defaults to "/etc/kubernetes/pki/ca.crt".
	ClientCAFile string
}

// kubeletConfiguration is the subset of kubelet.config.k8s.io/v1beta1 KubeletConfiguration that kiln
// sets (field names as in k8s.io/kubelet/config/v1beta1). Fields have no omitempty: every value kiln
// relies on is written, not left to a default.
type kubeletConfiguration struct {
	APIVersion     string `json:"apiVersion"`
	Kind           string `json:"kind"`
	Authentication struct {
		Anonymous struct {
			Enabled bool `json:"enabled"`
		} `json:"anonymous"`
		Webhook struct {
			Enabled bool `json:"enabled"`
		} `json:"webhook"`
		X509 struct {
			ClientCAFile string `json:"clientCAFile"`
		} `json:"x509"`
	} `json:"authentication"`
	Authorization struct {
		Mode string `json:"mode"`
	} `json:"authorization"`
	CgroupDriver             string   `json:"cgroupDriver"`
	ClusterDNS               []string `json:"clusterDNS"`
	ClusterDomain            string   `json:"clusterDomain"`
	ContainerRuntimeEndpoint string   `json:"containerRuntimeEndpoint"`
	EventRecordQPS           int32    `json:"eventRecordQPS"`
	MakeIPTablesUtilChains   bool     `json:"makeIPTablesUtilChains"`
	ProtectKernelDefaults    bool     `json:"protectKernelDefaults"`
	ReadOnlyPort             int32    `json:"readOnlyPort"`
	RotateCertificates       bool     `json:"rotateCertificates"`
	ServerTLSBootstrap       bool     `json:"serverTLSBootstrap"`
	TLSCipherSuites          []string `json:"tlsCipherSuites"`
	TLSMinVersion            string   `json:"tlsMinVersion"`
}

// KubeletConfig renders the kubelet's KubeletConfiguration (its --config file): no anonymous requests,
// callers authenticated by client certificate or by webhook (TokenReview) and authorized by webhook
// (SubjectAccessReview), no read-only port, kernel settings checked rather than changed, client and
// serving certificates requested from the cluster through CSRs and rotated, TLS 1.2 or later with
// TLSCipherSuites, the systemd cgroup driver and containerd, cluster DNS at the 10th address of the
// service range.
//
// protectKernelDefaults makes the kubelet exit unless the node's image sets the kernel parameters it
// would otherwise tune: KubeletSysctls.
// Serving certificates (serverTLSBootstrap) need an approver: the controller manager approves only
// client certificates.
func KubeletConfig(in KubeletInput) ([]byte, error) {
	domain := orDefault(in.ClusterDomain, DefaultClusterDomain)
	clientCA := orDefault(in.ClientCAFile, path.Join(DefaultPKIDir, CACert))
	var errs []error
	dns, err := ClusterDNSAddress(in.ServiceCIDR)
	if err != nil {
		errs = append(errs, fmt.Errorf("kubecfg: kubelet: %w", err))
	}
	if msgs := validation.IsDNS1123Subdomain(domain); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("kubecfg: kubelet: cluster domain %q: %w: %s", domain, ErrInvalid, strings.Join(msgs, "; ")))
	}
	if !path.IsAbs(clientCA) {
		errs = append(errs, fmt.Errorf("kubecfg: kubelet: client ca file %q: %w: want an absolute path", clientCA, ErrInvalid))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	c := kubeletConfiguration{
		APIVersion:               "kubelet.config.k8s.io/v1beta1",
		Kind:                     "KubeletConfiguration",
		CgroupDriver:             "systemd",
		ClusterDNS:               []string{dns},
		ClusterDomain:            domain,
		ContainerRuntimeEndpoint: ContainerRuntimeEndpoint,
		EventRecordQPS:           5,
		MakeIPTablesUtilChains:   true,
		ProtectKernelDefaults:    true,
		ReadOnlyPort:             0,
		RotateCertificates:       true,
		ServerTLSBootstrap:       true,
		TLSCipherSuites:          TLSCipherSuites,
		TLSMinVersion:            TLSMinVersion,
	}
	c.Authentication.Anonymous.Enabled = false
	c.Authentication.Webhook.Enabled = true
	c.Authentication.X509.ClientCAFile = clientCA
	c.Authorization.Mode = "Webhook"
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("kubecfg: kubelet config: %w", err)
	}
	return b, nil
}

// KubeletSysctls is a sysctl.d(5) drop-in with the kernel parameters that a kubelet with
// protectKernelDefaults checks at start (and exits if one differs); the node image installs it.
func KubeletSysctls() []byte {
	return []byte(`# Kernel parameters the kubelet checks with protectKernelDefaults: true.
kernel.keys.root_maxbytes = 25000000
kernel.keys.root_maxkeys = 1000000
kernel.panic = 10
kernel.panic_on_oops = 1
vm.overcommit_memory = 1
vm.panic_on_oom = 0
`)
}

// ClusterDNSAddress returns the cluster DNS service's address: the 10th address of serviceCIDR
// ("10.96.0.10" for "10.96.0.0/12"), as kubeadm chooses it.
func ClusterDNSAddress(serviceCIDR string) (string, error) {
	p, err := parseCIDR(serviceCIDR)
	if err != nil {
		return "", fmt.Errorf("service cidr: %w", err)
	}
	a := p.Addr()
	for range 10 {
		a = a.Next()
	}
	if !a.IsValid() || !p.Contains(a) {
		return "", fmt.Errorf("service cidr %s: %w: too small for a 10th address", p, ErrInvalid)
	}
	return a.String(), nil
}
