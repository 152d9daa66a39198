package kubecfg

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodNetworkRole is the ClusterRole, and the name of its binding, that lets every node read every
// Node: what kiln's pod network agent (kiln-node podnet) needs.
const PodNetworkRole = "kiln:podnet"

// PodNetworkRBAC renders, as a multi-document YAML stream, the ClusterRole kiln:podnet (get, list
// and watch Nodes) and the ClusterRoleBinding kiln:podnet that grants it to group system:nodes.
//
// kiln's pod network agent runs on every node with the kubelet's own credential and routes to
// every other Node's spec.podCIDR through its InternalIP, so it reads all Nodes. The Node authorizer
// of Kubernetes 1.37 (AuthorizeNodeWithSelectors, no longer a gate) lets a node get, list and watch
// only its own Node and has no opinion on the others ("node 'x' cannot read all nodes, only its own
// Node object"), which leaves them to RBAC: this binding gives nodes read access to all Nodes, as
// kubelets had before that change and as the RBAC of flannel's and Calico's node agents grants, and
// nothing else (no writes, no other resource).
func PodNetworkRBAC() []byte {
	role := rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: PodNetworkRole},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""},
			Resources: []string{"nodes"},
			Verbs:     []string{"get", "list", "watch"},
		}},
	}
	binding := clusterRoleBinding(PodNetworkRole, PodNetworkRole, rbacv1.GroupKind, NodesGroup)
	return joinDocuments([][]byte{mustMarshal(role), mustMarshal(binding)})
}
