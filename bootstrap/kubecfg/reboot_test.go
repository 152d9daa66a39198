package kubecfg

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

func TestRebootPools(t *testing.T) {
	c := &v1alpha1.Cluster{Spec: v1alpha1.ClusterSpec{NodePools: []v1alpha1.NodePool{
		{Name: "workers", Count: 5, MaxConcurrentReboots: 2}, {Name: "gpu", Count: 1},
	}}}
	want := []RebootPool{{Name: "control-plane", Slots: 1}, {Name: "workers", Slots: 2}, {Name: "gpu", Slots: 1}}
	if diff := cmp.Diff(want, RebootPools(c)); diff != "" {
		t.Errorf("RebootPools (-want +got):\n%s", diff)
	}
}

func TestRebootLock(t *testing.T) {
	objects, policy := RebootLock([]RebootPool{{Name: "control-plane", Slots: 1}, {Name: "workers", Slots: 2}})
	golden(t, "reboot-lock.yaml", objects)
	golden(t, "reboot-policy.yaml", policy)

	var kinds []string
	roles := map[string]rbacv1.ClusterRole{}
	for _, d := range documents(t, objects) {
		switch kind := string(d); {
		case strings.Contains(kind, "\nkind: Lease\n"):
			var l coordinationv1.Lease
			strict(t, d, &l)
			kinds = append(kinds, "Lease "+l.Namespace+"/"+l.Name)
			if l.Spec.HolderIdentity != nil {
				t.Errorf("lease %s is rendered held by %q", l.Name, *l.Spec.HolderIdentity)
			}
		case strings.Contains(kind, "\nkind: ClusterRole\n"):
			var r rbacv1.ClusterRole
			strict(t, d, &r)
			kinds = append(kinds, "ClusterRole "+r.Name)
			roles[r.Name] = r
		case strings.Contains(kind, "\nkind: ClusterRoleBinding\n"):
			var b rbacv1.ClusterRoleBinding
			strict(t, d, &b)
			kinds = append(kinds, "ClusterRoleBinding "+b.Name)
			if len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.GroupKind || b.Subjects[0].Name != b.Name || b.RoleRef.Name != b.Name {
				t.Errorf("binding %s: %+v, want its ClusterRole bound to the group of its name", b.Name, b)
			}
		default:
			t.Errorf("unexpected document:\n%s", d)
		}
	}
	want := []string{
		"Lease kube-node-lease/kiln-reboot-control-plane-0", "ClusterRole kiln:reboot:control-plane", "ClusterRoleBinding kiln:reboot:control-plane",
		"Lease kube-node-lease/kiln-reboot-workers-0", "Lease kube-node-lease/kiln-reboot-workers-1", "ClusterRole kiln:reboot:workers", "ClusterRoleBinding kiln:reboot:workers",
	}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	rule := rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
		ResourceNames: []string{"kiln-reboot-workers-0", "kiln-reboot-workers-1"}, Verbs: []string{"get", "update"}}
	if diff := cmp.Diff([]rbacv1.PolicyRule{rule}, roles["kiln:reboot:workers"].Rules); diff != "" {
		t.Errorf("the workers' rules (-want +got): get and update of their own Leases, nothing else:\n%s", diff)
	}

	docs := documents(t, policy)
	if len(docs) != 2 {
		t.Fatalf("%d policy documents, want the policy and its binding", len(docs))
	}
	var p admissionv1.ValidatingAdmissionPolicy
	strict(t, docs[0], &p)
	if p.Name != RebootPolicy || len(p.Spec.Validations) != 2 || !strings.Contains(p.Spec.MatchConditions[0].Expression, `"kiln:reboot-agent:"`) {
		t.Errorf("policy %+v", p.Spec)
	}

	// The cluster init can apply the objects: it gets a Role in kube-node-lease for the Leases.
	rbac, err := ClusterInitRBAC("kiln:cluster-init", objects)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rbac), "kiln-reboot-workers-1") {
		t.Errorf("the cluster init's RBAC does not name the Leases:\n%s", rbac)
	}
}
