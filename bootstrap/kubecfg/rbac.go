package kubecfg

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Identities that the bootstrap RBAC binds.
const (
	// BootstrappersGroup is the group of every bootstrap token.
	BootstrappersGroup = "system:bootstrappers"
	// NodesGroup is the group of every kubelet client certificate.
	NodesGroup = "system:nodes"
	// APIServerKubeletClientUser is the common name of kube-apiserver's client certificate for kubelets
	// (APIServerKubeletClientCert).
	APIServerKubeletClientUser = "kube-apiserver-kubelet-client"
	// ClusterAdminsGroup is the group of kiln's admin client certificate. Unlike system:masters it is
	// an ordinary group that RBAC binds to cluster-admin, so the binding can be removed.
	ClusterAdminsGroup = "kiln:cluster-admins"
)

// BootstrapRBAC renders, as a multi-document YAML stream, the ClusterRoleBindings that kubelet TLS
// bootstrap needs, as kubeadm creates them (with a kiln: prefix instead of kubeadm:):
//
//   - kiln:kubelet-bootstrap: group system:bootstrappers may create CSRs (system:node-bootstrapper);
//   - kiln:node-autoapprove-bootstrap: the CSR approver approves those CSRs for a first node client
//     certificate (...:certificatesigningrequests:nodeclient);
//   - kiln:node-autoapprove-certificate-rotation: group system:nodes may renew its own client certificate
//     (...:certificatesigningrequests:selfnodeclient);
//   - kiln:apiserver-kubelet-client: kube-apiserver's kubelet client may use the kubelet API for logs,
//     exec and port-forward (system:kubelet-api-admin);
//   - kiln:cluster-admins: group kiln:cluster-admins (the admin client certificate) is cluster-admin.
//
// Kubelet serving certificates (serverTLSBootstrap) are not approved automatically by any of these:
// kiln apply approves them (bootstrap/servingcsr).
func BootstrapRBAC() []byte {
	bindings := []rbacv1.ClusterRoleBinding{
		clusterRoleBinding("kiln:kubelet-bootstrap", "system:node-bootstrapper", rbacv1.GroupKind, BootstrappersGroup),
		clusterRoleBinding("kiln:node-autoapprove-bootstrap",
			"system:certificates.k8s.io:certificatesigningrequests:nodeclient", rbacv1.GroupKind, BootstrappersGroup),
		clusterRoleBinding("kiln:node-autoapprove-certificate-rotation",
			"system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", rbacv1.GroupKind, NodesGroup),
		clusterRoleBinding("kiln:apiserver-kubelet-client", "system:kubelet-api-admin", rbacv1.UserKind, APIServerKubeletClientUser),
		clusterRoleBinding("kiln:cluster-admins", "cluster-admin", rbacv1.GroupKind, ClusterAdminsGroup),
	}
	docs := make([][]byte, 0, len(bindings))
	for _, b := range bindings {
		docs = append(docs, mustMarshal(b))
	}
	return joinDocuments(docs)
}

func clusterRoleBinding(name, clusterRole, subjectKind, subject string) rbacv1.ClusterRoleBinding {
	return rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: subjectKind, APIGroup: rbacv1.GroupName, Name: subject}},
	}
}
