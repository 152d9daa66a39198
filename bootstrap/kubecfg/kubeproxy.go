package kubecfg

import (
	"errors"
	"fmt"
	"net/netip"
	"path"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	componentbaseconfigv1alpha1 "k8s.io/component-base/config/v1alpha1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
)

// KubeProxyRole is the name of the ClusterRoleBinding that grants Kubernetes' own ClusterRole
// system:node-proxier to the nodes (see KubeProxyRBAC).
const KubeProxyRole = "kiln:node-proxier"

// KubeProxyInput is what KubeProxyConfig needs.
type KubeProxyInput struct {
	// Kubeconfig is the path, on the node, of the credential kube-proxy acts with: the kubelet's.
	Kubeconfig string
	// ClusterCIDR is the pods' range: traffic from outside it to a Service is masqueraded.
	ClusterCIDR netip.Prefix
}

// KubeProxyConfig renders kube-proxy's KubeProxyConfiguration (its --config file): the nftables
// proxier (Kubernetes' newest, on the kernel and nft of the image), the cluster's pod range, and the
// metrics and health endpoints on loopback only (nothing else on the network needs them; the
// firewall would drop them anyway).
//
// kube-proxy runs as a systemd unit on every node with the kubelet's credential (system:node:NAME in
// group system:nodes), so no service-account token or further key reaches a node; KubeProxyRBAC grants
// that group what kube-proxy reads.
func KubeProxyConfig(in KubeProxyInput) ([]byte, error) {
	var errs []error
	if !path.IsAbs(in.Kubeconfig) {
		errs = append(errs, fmt.Errorf("kubecfg: kube-proxy: kubeconfig %q: %w: want an absolute path", in.Kubeconfig, ErrInvalid))
	}
	if !in.ClusterCIDR.IsValid() || in.ClusterCIDR != in.ClusterCIDR.Masked() {
		errs = append(errs, fmt.Errorf("kubecfg: kube-proxy: cluster cidr %q: %w: want the pods' range without host bits", in.ClusterCIDR, ErrInvalid))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c := kubeproxyv1alpha1.KubeProxyConfiguration{
		TypeMeta: metav1.TypeMeta{
			APIVersion: kubeproxyv1alpha1.SchemeGroupVersion.String(),
			Kind:       "KubeProxyConfiguration",
		},
		ClientConnection:   componentbaseconfigv1alpha1.ClientConnectionConfiguration{Kubeconfig: in.Kubeconfig},
		Mode:               "nftables",
		ClusterCIDR:        in.ClusterCIDR.String(),
		HealthzBindAddress: "127.0.0.1:10256",
		MetricsBindAddress: "127.0.0.1:10249",
	}
	b, err := marshalSet(c, kubeproxyv1alpha1.KubeProxyConfiguration{})
	if err != nil {
		return nil, fmt.Errorf("kubecfg: kube-proxy config: %w", err)
	}
	return b, nil
}

// KubeProxyRBAC renders the ClusterRoleBinding kiln:node-proxier, which grants Kubernetes' built-in
// ClusterRole system:node-proxier (read Services, EndpointSlices and Nodes; write Events) to group
// system:nodes: kube-proxy runs with the kubelet's credential.
func KubeProxyRBAC() []byte {
	return mustMarshal(clusterRoleBinding(KubeProxyRole, "system:node-proxier", rbacv1.GroupKind, NodesGroup))
}
