package kubecfg

import (
	"strconv"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// RebootPolicy names the ValidatingAdmissionPolicy, and its binding, that holds each reboot agent
// to its own name on its pool's lock (a DNS name). Each pool's ClusterRole and binding is named
// rebootlock.Group of the pool.
const RebootPolicy = "reboot-lock.kiln.dev"

// RebootPool is one pool's reboot lock: its name and how many of its nodes may reboot at once.
type RebootPool struct {
	Name  string
	Slots int
}

// RebootPools are the reboot locks of cluster c: the control plane's (one slot) and one per node
// pool, with its maxConcurrentReboots.
func RebootPools(c *v1alpha1.Cluster) []RebootPool {
	pools := []RebootPool{{Name: rebootlock.ControlPlanePool, Slots: 1}}
	for _, p := range c.Spec.NodePools {
		pools = append(pools, RebootPool{Name: p.Name, Slots: max(p.MaxConcurrentReboots, 1)})
	}
	return pools
}

// RebootLock renders, as multi-document YAML streams, the reboot locks of cluster's pools:
//
//   - objects: per pool, the Leases kiln-reboot-<pool>-<slot> in kube-node-lease (no holder), and a
//     ClusterRole and ClusterRoleBinding rebootlock.Group(pool) that let that group get and update
//     exactly those Leases, by name, and nothing else. Each node's reboot agent has a certificate of
//     its own in its pool's group (secrets.Bundle.RebootAgent). A node's own credential could not
//     do it: NodeRestriction lets a node write no Lease but its own heartbeat.
//   - policy: the ValidatingAdmissionPolicy RebootPolicy and its binding: a reboot agent
//     (kiln:reboot-agent:<node>) holds a slot only in its own name, and clears a holder only when
//     the holder is itself (RBAC says which Leases, not what goes in them). An agent can still
//     take a slot of its own pool that has run out: that is how a dead holder's slot is freed.
//
// The objects are applied by the cluster init like every first-boot manifest; the policy, which
// the cluster init's RBAC is not trusted to write (ClusterInitRBAC), by the same system:masters
// credential that applies that RBAC.
func RebootLock(pools []RebootPool) (objects, policy []byte) {
	var docs [][]byte
	for _, p := range pools {
		for _, l := range rebootlock.Leases(p.Name, p.Slots) {
			docs = append(docs, mustMarshal(l))
		}
		group := rebootlock.Group(p.Name)
		role := rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
			ObjectMeta: metav1.ObjectMeta{Name: group},
			Rules:      []rbacv1.PolicyRule{rebootlock.Rule(p.Name, p.Slots)},
		}
		docs = append(docs, mustMarshal(role), mustMarshal(clusterRoleBinding(group, group, rbacv1.GroupKind, group)))
	}
	return joinDocuments(docs), rebootPolicy()
}

// rebootPolicy is RebootLock's policy.
func rebootPolicy() []byte {
	fail := admissionv1.Fail
	reason := metav1.StatusReasonForbidden
	policy := admissionv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: RebootPolicy},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{coordinationv1.GroupName}, APIVersions: []string{"*"}, Resources: []string{"leases"}},
				},
			}}},
			MatchConditions: []admissionv1.MatchCondition{{
				Name:       "by-a-reboot-agent",
				Expression: `request.userInfo.username.startsWith("` + secrets.RebootAgentPrefix + `")`,
			}},
			Variables: []admissionv1.Variable{
				{Name: "self", Expression: "request.userInfo.username.substring(" + strconv.Itoa(len(secrets.RebootAgentPrefix)) + ")"},
				{Name: "holder", Expression: `has(object.spec.holderIdentity) ? object.spec.holderIdentity : ""`},
				{Name: "held", Expression: `has(oldObject.spec.holderIdentity) ? oldObject.spec.holderIdentity : ""`},
			},
			Validations: []admissionv1.Validation{
				{
					Expression: `variables.holder == "" || variables.holder == variables.self`,
					Message:    "a reboot agent holds a slot only in its own node's name",
					Reason:     &reason,
				},
				{
					Expression: `variables.holder != "" || variables.held == "" || variables.held == variables.self`,
					Message:    "a reboot agent releases only its own node's slot",
					Reason:     &reason,
				},
			},
		},
	}
	binding := denyBinding(RebootPolicy)
	return joinDocuments([][]byte{mustMarshal(policy), mustMarshal(binding)})
}

// denyBinding binds the ValidatingAdmissionPolicy policy, under its own name, to deny what it
// refuses, everywhere.
func denyBinding(policy string) admissionv1.ValidatingAdmissionPolicyBinding {
	return admissionv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: policy},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		},
	}
}
