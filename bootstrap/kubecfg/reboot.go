package kubecfg

import (
	"regexp"
	"slices"
	"strconv"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// RebootRole is the ClusterRole, and the name of its binding, that lets the nodes write the reboot
// locks' Leases; RebootPolicy the ValidatingAdmissionPolicy, and its binding, that holds each node to
// its own pool's Leases and its own name (a DNS name).
const (
	RebootRole   = "kiln:reboot"
	RebootPolicy = "reboot-lock.kiln.dev"
)

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
//   - objects: the Leases kiln-reboot-<pool>-<slot> in kube-node-lease (no holder), and the
//     ClusterRole and ClusterRoleBinding RebootRole that let group system:nodes get, update and
//     patch those Leases, by name, and nothing else: what kiln-node reboot needs beside what the Node
//     authorizer gives a node (its own Node, its own pods; NodeRestriction).
//   - policy: the ValidatingAdmissionPolicy RebootPolicy and its binding. RBAC cannot say which
//     node may write which Lease (every node is in system:nodes); the policy can: a node
//     (system:node:<name>) updates only the Leases of its own pool, the pool being in its name
//     (kiln names machines <cluster>-<pool>-<ordinal>), keeps their pool label, and holds a slot only
//     in its own name; it clears a holder only when the holder is itself. A node can still take a
//     slot of its own pool that another node holds: optimistic concurrency keeps honest agents
//     apart, and a node that misbehaves harms only the reboots of its own pool.
//
// The objects are applied by the cluster init like every first-boot manifest; the policy, which
// the cluster init's RBAC cannot be trusted to write (ClusterInitRBAC), by the same system:masters
// credential that applies that RBAC.
func RebootLock(cluster string, pools []RebootPool) (objects, policy []byte) {
	var names []string
	var docs [][]byte
	for _, p := range pools {
		for _, l := range rebootlock.Leases(p.Name, p.Slots) {
			l.TypeMeta = metav1.TypeMeta{APIVersion: coordinationv1.SchemeGroupVersion.String(), Kind: "Lease"}
			docs = append(docs, mustMarshal(l))
		}
		names = append(names, rebootlock.LeaseNames(p.Name, p.Slots)...)
	}
	slices.Sort(names)
	role := rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: RebootRole},
		Rules: []rbacv1.PolicyRule{{
			APIGroups:     []string{coordinationv1.GroupName},
			Resources:     []string{"leases"},
			ResourceNames: names,
			Verbs:         []string{"get", "patch", "update"},
		}},
	}
	docs = append(docs, mustMarshal(role), mustMarshal(clusterRoleBinding(RebootRole, RebootRole, rbacv1.GroupKind, NodesGroup)))
	return joinDocuments(docs), rebootPolicy(cluster)
}

// rebootPolicy is RebootLock's policy.
func rebootPolicy(cluster string) []byte {
	fail := admissionv1.Fail
	reason := metav1.StatusReasonForbidden
	label := strconv.Quote(rebootlock.PoolLabel)
	self := `request.userInfo.username.substring(` + strconv.Itoa(len(nodeUserPrefix)) + `)`
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
			MatchConditions: []admissionv1.MatchCondition{
				{Name: "reboot-lock", Expression: "has(oldObject.metadata.labels) && " + label + " in oldObject.metadata.labels"},
				{Name: "by-a-node", Expression: `request.userInfo.username.startsWith("` + nodeUserPrefix + `")`},
			},
			Variables: []admissionv1.Variable{
				{Name: "pool", Expression: "oldObject.metadata.labels[" + label + "]"},
				{Name: "self", Expression: self},
				{Name: "holder", Expression: `has(object.spec.holderIdentity) ? object.spec.holderIdentity : ""`},
				{Name: "held", Expression: `has(oldObject.spec.holderIdentity) ? oldObject.spec.holderIdentity : ""`},
			},
			Validations: []admissionv1.Validation{
				{
					Expression: `variables.self.matches("^` + regexp.QuoteMeta(cluster) + `-" + variables.pool + "-[0-9]+$")`,
					Message:    "a node takes only its own pool's reboot lock",
					Reason:     &reason,
				},
				{
					Expression: "has(object.metadata.labels) && " + label + " in object.metadata.labels && object.metadata.labels[" + label + "] == variables.pool",
					Message:    "a node does not change a reboot lock's pool",
					Reason:     &reason,
				},
				{
					Expression: `variables.holder == "" || variables.holder == variables.self`,
					Message:    "a node holds a reboot slot only in its own name",
					Reason:     &reason,
				},
				{
					Expression: `variables.holder != "" || variables.held == "" || variables.held == variables.self`,
					Message:    "a node releases only its own reboot slot",
					Reason:     &reason,
				},
			},
		},
	}
	binding := admissionv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: RebootPolicy},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        RebootPolicy,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		},
	}
	return joinDocuments([][]byte{mustMarshal(policy), mustMarshal(binding)})
}

// nodeUserPrefix starts the user name of a node's credential.
const nodeUserPrefix = "system:node:"
