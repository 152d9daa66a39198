package kubecfg

import (
	"errors"
	"fmt"
	"path"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
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

// kubeletConfigFile is the KubeletConfiguration as kiln writes it. v1beta1 leaves out a readOnlyPort of
// 0 (omitempty), which is how the port is turned off; kiln writes it, so that the file says the port is
// off rather than leaving it to a default. This field, at the shallower depth, is the one encoding/json
// writes and reads.
type kubeletConfigFile struct {
	kubeletv1beta1.KubeletConfiguration
	ReadOnlyPort int32 `json:"readOnlyPort"`
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
// client certificates; kiln apply approves them for its machines' names and addresses
// (bootstrap/servingcsr).
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

	// Every value kiln relies on is set, not left to a default: for the anonymous and webhook switches
	// the defaults of the flags and of the file differ.
	c := kubeletConfigFile{
		KubeletConfiguration: kubeletv1beta1.KubeletConfiguration{
			TypeMeta: metav1.TypeMeta{
				APIVersion: kubeletv1beta1.SchemeGroupVersion.String(),
				Kind:       "KubeletConfiguration",
			},
			Authentication: kubeletv1beta1.KubeletAuthentication{
				Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: new(false)},
				Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: new(true)},
				X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: clientCA},
			},
			Authorization: kubeletv1beta1.KubeletAuthorization{
				Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook,
			},
			CgroupDriver:             "systemd",
			ClusterDNS:               []string{dns},
			ClusterDomain:            domain,
			ContainerRuntimeEndpoint: ContainerRuntimeEndpoint,
			EventRecordQPS:           new(int32(5)),
			MakeIPTablesUtilChains:   new(true),
			ProtectKernelDefaults:    true,
			RotateCertificates:       true,
			ServerTLSBootstrap:       true,
			TLSCipherSuites:          TLSCipherSuites,
			TLSMinVersion:            TLSMinVersion,
		},
		ReadOnlyPort: 0,
	}
	b, err := marshalSet(c, kubeletv1beta1.KubeletConfiguration{})
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
