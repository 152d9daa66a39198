package kubecfg

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// The RBAC of kiln's own first-boot manifests: exactly their objects, by name, the roles their
// bindings reference, and the rules of the role it writes.
func TestClusterInitRBAC(t *testing.T) {
	ns, err := NamespaceManifests(map[string]v1alpha1.PodSecurityLevels{"apps": {Enforce: "restricted"}})
	if err != nil {
		t.Fatal(err)
	}
	token, err := BootstrapTokenSecret("abcdef", "0123456789abcdef", time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC), "kiln node join")
	if err != nil {
		t.Fatal(err)
	}
	data, err := ClusterInitRBAC("kiln:cluster-init", ns, BootstrapRBAC(), PodNetworkRBAC(), KubeProxyRBAC(), token)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "cluster-init-rbac.yaml", data)

	docs := documents(t, data)
	if len(docs) != 6 {
		t.Fatalf("%d documents, want a ClusterRole, a Role in kube-system, their bindings, a policy and its binding", len(docs))
	}
	var role rbacv1.ClusterRole
	strict(t, docs[0], &role)
	rbacGroup := []string{rbacv1.GroupName}
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, ResourceNames: []string{"apps"}, Verbs: []string{"create", "get", "patch"}},
		{APIGroups: rbacGroup, Resources: []string{"clusterrolebindings"}, ResourceNames: []string{"kiln:apiserver-kubelet-client",
			"kiln:cluster-admins", "kiln:kubelet-bootstrap", "kiln:node-autoapprove-bootstrap", "kiln:node-autoapprove-certificate-rotation",
			KubeProxyRole, PodNetworkRole}, Verbs: []string{"create", "get", "patch"}},
		{APIGroups: rbacGroup, Resources: []string{"clusterroles"}, ResourceNames: []string{PodNetworkRole}, Verbs: []string{"create", "get", "patch"}},
		{APIGroups: rbacGroup, Resources: []string{"clusterroles"}, ResourceNames: []string{"cluster-admin", PodNetworkRole,
			"system:certificates.k8s.io:certificatesigningrequests:nodeclient", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
			"system:kubelet-api-admin", "system:node-bootstrapper", "system:node-proxier"}, Verbs: []string{"bind"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
	}
	if role.Name != ClusterInitRole {
		t.Errorf("ClusterRole %q, want %q", role.Name, ClusterInitRole)
	}
	if diff := cmp.Diff(want, role.Rules); diff != "" {
		t.Errorf("ClusterRole rules (-want +got):\n%s", diff)
	}
	for _, r := range role.Rules {
		if len(r.ResourceNames) == 0 && !slices.Equal(r.Resources, []string{"nodes"}) {
			t.Errorf("rule %+v is not limited to named objects", r)
		}
		for _, v := range r.Verbs {
			if slices.Contains([]string{"*", "escalate", "delete", "update", "list", "watch"}, v) && !slices.Equal(r.Resources, []string{"nodes"}) {
				t.Errorf("rule %+v: verb %s is not the cluster init's", r, v)
			}
		}
	}

	var crb rbacv1.ClusterRoleBinding
	strict(t, docs[1], &crb)
	if crb.RoleRef.Name != ClusterInitRole || len(crb.Subjects) != 1 || crb.Subjects[0].Kind != rbacv1.GroupKind || crb.Subjects[0].Name != "kiln:cluster-init" {
		t.Errorf("ClusterRoleBinding %+v: want %s bound to group kiln:cluster-init", crb, ClusterInitRole)
	}
	var nsRole rbacv1.Role
	strict(t, docs[2], &nsRole)
	wantNS := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"bootstrap-token-abcdef"},
		Verbs: []string{"create", "get", "patch"}}}
	if nsRole.Namespace != "kube-system" || nsRole.Name != ClusterInitRole {
		t.Errorf("Role %s/%s, want kube-system/%s", nsRole.Namespace, nsRole.Name, ClusterInitRole)
	}
	if diff := cmp.Diff(wantNS, nsRole.Rules); diff != "" {
		t.Errorf("Role rules (-want +got):\n%s", diff)
	}
	var rb rbacv1.RoleBinding
	strict(t, docs[3], &rb)
	if rb.Namespace != "kube-system" || rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != ClusterInitRole || rb.Subjects[0].Name != "kiln:cluster-init" {
		t.Errorf("RoleBinding %+v: want kube-system's Role %s bound to group kiln:cluster-init", rb, ClusterInitRole)
	}

	var policy admissionv1.ValidatingAdmissionPolicy
	strict(t, docs[4], &policy)
	if policy.Name != ClusterInitPolicy || len(policy.Spec.MatchConditions) != 1 ||
		!strings.Contains(policy.Spec.MatchConditions[0].Expression, `"kiln:cluster-init" in request.userInfo.groups`) {
		t.Errorf("policy %s matches %+v, want the requests of group kiln:cluster-init", policy.Name, policy.Spec.MatchConditions)
	}
	for _, want := range []string{
		`"ClusterRoleBinding/kiln:cluster-admins": ["Group:kiln:cluster-admins"]`,
		`"ClusterRoleBinding/kiln:apiserver-kubelet-client": ["User:kube-apiserver-kubelet-client"]`,
		`"ClusterRole/kiln:podnet": [";nodes;;get,list,watch;"]`,
		`"Namespace/apps": ["pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest"]`,
	} {
		if got := policy.Spec.Variables[0].Expression; !strings.Contains(got, want) {
			t.Errorf("the policy's pinned objects lack %s:\n%s", want, got)
		}
	}
	if *policy.Spec.FailurePolicy != admissionv1.Fail {
		t.Errorf("failure policy %s, want Fail", *policy.Spec.FailurePolicy)
	}
	var pb admissionv1.ValidatingAdmissionPolicyBinding
	strict(t, docs[5], &pb)
	if pb.Spec.PolicyName != ClusterInitPolicy || !slices.Equal(pb.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
		t.Errorf("policy binding %+v: want %s with Deny", pb.Spec, ClusterInitPolicy)
	}
}

func TestClusterInitRBACRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, group, manifest, want string
	}{
		{name: "no group", manifest: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n", want: "no group"},
		{name: "a kind it does not know", group: "g", manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  namespace: kube-system\n",
			want: "manifest 0, document 0 (Deployment d): kind Deployment.apps is not one a cluster init applies"},
		{name: "a secret in a namespace the manifests make", group: "g",
			manifest: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: apps\n",
			want:     `manifest 0, document 1 (Secret s): namespace "apps" does not exist before the cluster init`},
		{name: "no name", group: "g", manifest: "apiVersion: v1\nkind: Namespace\nmetadata: {}\n", want: "no metadata.name"},
		{name: "a namespaced cluster role", group: "g", manifest: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\n  namespace: x\n",
			want: `a cluster-scoped kind with metadata.namespace "x"`},
		{name: "a binding without a role", group: "g", manifest: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: b\n",
			want: "want a roleRef to a ClusterRole"},
		{name: "not YAML", group: "g", manifest: "kind: [", want: "manifest 0, document 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ClusterInitRBAC(tc.group, []byte(tc.manifest))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
