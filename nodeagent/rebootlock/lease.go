package rebootlock

import (
	"strconv"

	coordinationv1 "k8s.io/api/coordination/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// Namespace is where the pools' Leases live, next to the nodes' heartbeat Leases.
	Namespace = "kube-node-lease"
	// PoolLabel labels every Lease of a pool with the pool's name.
	PoolLabel = "kiln.dev/reboot-pool"
	// ControlPlanePool is the control plane's pool: it always has one slot, so that etcd never
	// loses two members at once.
	ControlPlanePool = "control-plane"
)

// LeaseName is the name of slot slot's Lease of pool: kiln-reboot-<pool>-<slot>.
func LeaseName(pool string, slot int) string {
	return "kiln-reboot-" + pool + "-" + strconv.Itoa(slot)
}

// LeaseNames are the names of pool's slots Leases, slot 0 first.
func LeaseNames(pool string, slots int) []string {
	names := make([]string, slots)
	for i := range names {
		names[i] = LeaseName(pool, i)
	}
	return names
}

// Leases are the Leases of a pool of slots slots, free, as kiln's cluster init creates them.
func Leases(pool string, slots int) []coordinationv1.Lease {
	leases := make([]coordinationv1.Lease, slots)
	for i, name := range LeaseNames(pool, slots) {
		leases[i] = coordinationv1.Lease{
			TypeMeta: metav1.TypeMeta{APIVersion: coordinationv1.SchemeGroupVersion.String(), Kind: "Lease"},
			ObjectMeta: metav1.ObjectMeta{
				Name:      name,
				Namespace: Namespace,
				Labels:    map[string]string{PoolLabel: pool},
			},
		}
	}
	return leases
}

// Group is the group of pool's holders: a RoleBinding of it to a Role with Rule lets them hold
// pool's lock, and nothing else.
func Group(pool string) string { return "kiln:reboot:" + pool }

// Rule is all that a holder of pool's lock needs of the API (in Namespace): get and update of
// exactly the pool's Leases. No list, watch, create or delete, no other Lease.
func Rule(pool string, slots int) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{
		APIGroups:     []string{coordinationv1.GroupName},
		Resources:     []string{"leases"},
		ResourceNames: LeaseNames(pool, slots),
		Verbs:         []string{"get", "update"},
	}
}
