package kubecfg

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

func TestKubeProxyConfigGolden(t *testing.T) {
	got, err := KubeProxyConfig(KubeProxyInput{Kubeconfig: "/etc/kubernetes/kubelet.conf", ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kube-proxy-config.yaml", got)
}

func TestKubeProxyConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   KubeProxyInput
		want string
	}{
		{"relative kubeconfig", KubeProxyInput{Kubeconfig: "kubelet.conf", ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}, `kubeconfig "kubelet.conf"`},
		{"host bits", KubeProxyInput{Kubeconfig: "/k", ClusterCIDR: netip.MustParsePrefix("10.244.1.0/8")}, "cluster cidr"},
		{"no range", KubeProxyInput{Kubeconfig: "/k"}, "cluster cidr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := KubeProxyConfig(tc.in)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid naming %q", err, tc.want)
			}
		})
	}
}

func TestKubeProxyRBACBindsNodeProxierToNodes(t *testing.T) {
	var b rbacv1.ClusterRoleBinding
	if err := yaml.UnmarshalStrict(KubeProxyRBAC(), &b); err != nil {
		t.Fatal(err)
	}
	if b.Name != KubeProxyRole || b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != "system:node-proxier" ||
		len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.GroupKind || b.Subjects[0].Name != NodesGroup {
		t.Fatalf("binding %+v: want system:node-proxier bound to group %s", b, NodesGroup)
	}
}
