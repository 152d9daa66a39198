package kubecfg

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
)

func TestPodNetworkRBAC(t *testing.T) {
	data := PodNetworkRBAC()
	golden(t, "podnet-rbac.yaml", data)
	docs := documents(t, data)
	if len(docs) != 2 {
		t.Fatalf("%d documents, want a ClusterRole and its binding", len(docs))
	}
	var role rbacv1.ClusterRole
	strict(t, docs[0], &role)
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}}
	if role.Kind != "ClusterRole" || role.Name != PodNetworkRole {
		t.Errorf("first document: %s %s, want ClusterRole %s", role.Kind, role.Name, PodNetworkRole)
	}
	if diff := cmp.Diff(want, role.Rules); diff != "" {
		t.Errorf("rules (-want +got): read Nodes, nothing else:\n%s", diff)
	}
	var b rbacv1.ClusterRoleBinding
	strict(t, docs[1], &b)
	if b.Kind != "ClusterRoleBinding" || b.RoleRef.Name != PodNetworkRole || len(b.Subjects) != 1 ||
		b.Subjects[0].Kind != rbacv1.GroupKind || b.Subjects[0].Name != NodesGroup {
		t.Errorf("binding %+v: want %s bound to group %s", b, PodNetworkRole, NodesGroup)
	}
}
