package kubecfg

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// AuditPolicy renders the audit Policy for kube-apiserver's --audit-policy-file. The first matching rule
// decides, so the order is part of the policy:
//
//  1. read-only requests (get, head) to /healthz, /readyz, /livez, /version and /metrics and below: not logged;
//  2. system:kube-proxy's watches of what it proxies (services, endpoints, endpoint slices, nodes,
//     service CIDRs): not logged; its watch of anything else is;
//  3. secrets, configmaps, serviceaccounts/token (TokenRequest) and tokenreviews: Metadata only, so that
//     no secret, token or configuration value ever reaches the log, whatever a later rule says;
//  4. create, update, patch, delete and deletecollection of RBAC objects: RequestResponse;
//  5. pods/exec and pods/attach: RequestResponse (who ran what in which container);
//  6. everything else: Metadata.
//
// The RequestReceived stage is omitted: ResponseComplete (or ResponseStarted for long-running requests)
// carries the same event with its outcome.
func AuditPolicy() []byte {
	readOnly := []string{"get", "head"}
	mutating := []string{"create", "update", "patch", "delete", "deletecollection"}
	p := auditv1.Policy{
		TypeMeta:   metav1.TypeMeta{APIVersion: auditv1.SchemeGroupVersion.String(), Kind: "Policy"},
		OmitStages: []auditv1.Stage{auditv1.StageRequestReceived},
		Rules: []auditv1.PolicyRule{
			{
				Level: auditv1.LevelNone,
				Verbs: readOnly,
				NonResourceURLs: []string{
					"/healthz", "/healthz/*",
					"/readyz", "/readyz/*",
					"/livez", "/livez/*",
					"/version", "/version/",
					"/metrics", "/metrics/*",
				},
			},
			{
				Level: auditv1.LevelNone,
				Users: []string{"system:kube-proxy"},
				Verbs: []string{"watch"},
				Resources: []auditv1.GroupResources{
					{Group: "", Resources: []string{"endpoints", "nodes", "services"}},
					{Group: "discovery.k8s.io", Resources: []string{"endpointslices"}},
					{Group: "networking.k8s.io", Resources: []string{"servicecidrs"}},
				},
			},
			{
				Level: auditv1.LevelMetadata,
				Resources: []auditv1.GroupResources{
					{Group: "", Resources: []string{"secrets", "configmaps", "serviceaccounts/token"}},
					{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
				},
			},
			{
				Level:     auditv1.LevelRequestResponse,
				Verbs:     mutating,
				Resources: []auditv1.GroupResources{{Group: "rbac.authorization.k8s.io"}},
			},
			{
				Level:     auditv1.LevelRequestResponse,
				Resources: []auditv1.GroupResources{{Group: "", Resources: []string{"pods/exec", "pods/attach"}}},
			},
			{
				Level: auditv1.LevelMetadata,
			},
		},
	}
	return mustMarshal(p)
}
