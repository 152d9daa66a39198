package kubecfg

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
)

func TestBootstrapRBAC(t *testing.T) {
	data := BootstrapRBAC()
	golden(t, "bootstrap-rbac.yaml", data)

	type binding struct{ Name, Role, SubjectKind, Subject string }
	var got []binding
	for _, doc := range documents(t, data) {
		var b rbacv1.ClusterRoleBinding
		strict(t, doc, &b)
		if b.APIVersion != "rbac.authorization.k8s.io/v1" || b.Kind != "ClusterRoleBinding" {
			t.Errorf("%s: apiVersion %q kind %q", b.Name, b.APIVersion, b.Kind)
		}
		if b.RoleRef.APIGroup != rbacv1.GroupName || b.RoleRef.Kind != "ClusterRole" {
			t.Errorf("%s: roleRef %+v, want a ClusterRole", b.Name, b.RoleRef)
		}
		if len(b.Subjects) != 1 || b.Subjects[0].APIGroup != rbacv1.GroupName || b.Subjects[0].Namespace != "" {
			t.Fatalf("%s: subjects %+v, want one user or group", b.Name, b.Subjects)
		}
		got = append(got, binding{b.Name, b.RoleRef.Name, b.Subjects[0].Kind, b.Subjects[0].Name})
	}
	want := []binding{
		{"kiln:kubelet-bootstrap", "system:node-bootstrapper", "Group", "system:bootstrappers"},
		{"kiln:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", "Group", "system:bootstrappers"},
		{"kiln:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "Group", "system:nodes"},
		{"kiln:apiserver-kubelet-client", "system:kubelet-api-admin", "User", "kube-apiserver-kubelet-client"},
		{"kiln:cluster-admins", "cluster-admin", "Group", "kiln:cluster-admins"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bindings (-want +got):\n%s", diff)
	}
}
