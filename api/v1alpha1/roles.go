package v1alpha1

// Node roles. A role names a Butane template, a firewall intent and a kind of machine; every part of
// kiln uses these two words and no others.
const (
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
)

// Roles lists the node roles in a stable order.
func Roles() []string { return []string{RoleControlPlane, RoleWorker} }
