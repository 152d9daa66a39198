package kubecfg

import (
	"slices"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

func TestAuditPolicy(t *testing.T) {
	data := AuditPolicy()
	golden(t, "audit-policy.yaml", data)

	// LoadPolicyFromBytes falls back to lenient decoding after a warning; decode strictly as well.
	var v1 auditv1.Policy
	strict(t, data, &v1)
	p, err := policy.LoadPolicyFromBytes(data)
	if err != nil {
		t.Fatalf("LoadPolicyFromBytes: %v", err)
	}
	eval := policy.NewPolicyRuleEvaluator(p)

	admin := &user.DefaultInfo{Name: "kubernetes-admin", Groups: []string{"kiln:cluster-admins", user.AllAuthenticated}}
	proxy := &user.DefaultInfo{Name: "system:kube-proxy", Groups: []string{user.AllAuthenticated}}
	lb := &user.DefaultInfo{Name: "system:anonymous", Groups: []string{user.AllUnauthenticated}}
	res := func(u user.Info, verb, group, resource, sub string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: group, Resource: resource, Subresource: sub, Namespace: "default", ResourceRequest: true}
	}
	nonRes := func(u user.Info, verb, path string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: verb, Path: path}
	}
	for _, tc := range []struct {
		name  string
		attrs authorizer.AttributesRecord
		want  auditinternal.Level
	}{
		{"get healthz", nonRes(lb, "get", "/healthz"), auditinternal.LevelNone},
		{"get healthz check", nonRes(lb, "get", "/healthz/etcd"), auditinternal.LevelNone},
		{"get readyz", nonRes(lb, "get", "/readyz"), auditinternal.LevelNone},
		{"get readyz check", nonRes(admin, "get", "/readyz/informer-sync"), auditinternal.LevelNone},
		{"head livez", nonRes(lb, "head", "/livez"), auditinternal.LevelNone},
		{"get version", nonRes(admin, "get", "/version"), auditinternal.LevelNone},
		{"get metrics", nonRes(admin, "get", "/metrics"), auditinternal.LevelNone},
		{"get metrics slis", nonRes(admin, "get", "/metrics/slis"), auditinternal.LevelNone},
		{"post healthz", nonRes(admin, "post", "/healthz"), auditinternal.LevelMetadata},
		{"get healthzz", nonRes(admin, "get", "/healthzz"), auditinternal.LevelMetadata},
		{"get openapi", nonRes(admin, "get", "/openapi/v3"), auditinternal.LevelMetadata},
		{"kube-proxy watches endpointslices", res(proxy, "watch", "discovery.k8s.io", "endpointslices", ""), auditinternal.LevelNone},
		{"kube-proxy watches services", res(proxy, "watch", "", "services", ""), auditinternal.LevelNone},
		{"kube-proxy lists services", res(proxy, "list", "", "services", ""), auditinternal.LevelMetadata},
		{"admin watches services", res(admin, "watch", "", "services", ""), auditinternal.LevelMetadata},
		{"get secret", res(admin, "get", "", "secrets", ""), auditinternal.LevelMetadata},
		{"create secret", res(admin, "create", "", "secrets", ""), auditinternal.LevelMetadata},
		{"kube-proxy watches secrets", res(proxy, "watch", "", "secrets", ""), auditinternal.LevelMetadata},
		{"kube-proxy watches nodes", res(proxy, "watch", "", "nodes", ""), auditinternal.LevelNone},
		{"update configmap", res(admin, "update", "", "configmaps", ""), auditinternal.LevelMetadata},
		{"create token request", res(admin, "create", "", "serviceaccounts", "token"), auditinternal.LevelMetadata},
		{"create token review", res(admin, "create", "authentication.k8s.io", "tokenreviews", ""), auditinternal.LevelMetadata},
		{"create clusterrolebinding", res(admin, "create", "rbac.authorization.k8s.io", "clusterrolebindings", ""), auditinternal.LevelRequestResponse},
		{"patch role", res(admin, "patch", "rbac.authorization.k8s.io", "roles", ""), auditinternal.LevelRequestResponse},
		{"delete clusterrole", res(admin, "delete", "rbac.authorization.k8s.io", "clusterroles", ""), auditinternal.LevelRequestResponse},
		{"get rolebinding", res(admin, "get", "rbac.authorization.k8s.io", "rolebindings", ""), auditinternal.LevelMetadata},
		{"create pods/exec", res(admin, "create", "", "pods", "exec"), auditinternal.LevelRequestResponse},
		{"get pods/exec (websocket)", res(admin, "get", "", "pods", "exec"), auditinternal.LevelRequestResponse},
		{"create pods/attach", res(admin, "create", "", "pods", "attach"), auditinternal.LevelRequestResponse},
		{"get pods/log", res(admin, "get", "", "pods", "log"), auditinternal.LevelMetadata},
		{"create pod", res(admin, "create", "", "pods", ""), auditinternal.LevelMetadata},
		{"update deployment", res(admin, "update", "apps", "deployments", ""), auditinternal.LevelMetadata},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := eval.EvaluatePolicyRule(tc.attrs)
			if got.Level != tc.want {
				t.Errorf("level = %s, want %s", got.Level, tc.want)
			}
			if !slices.Contains(got.OmitStages, auditinternal.StageRequestReceived) {
				t.Errorf("omit stages = %v, want RequestReceived among them", got.OmitStages)
			}
		})
	}
}
