// Package provisioner is where kiln's machines come from: the Provider interface that every place
// machines run behind implements (create idempotently by name, delete, list a cluster's machines in
// one call), the NetworkProvider for the cluster's private network, API endpoint and firewall, and
// the naming and idempotency-token rules that every provider shares.
//
// Decisions about machines are made elsewhere, in pure functions: provisioner/health judges one
// machine, provisioner/reconcile plans what to create and delete. A thin executor,
// provisioner/converge, carries a plan out through a Provider, draining a machine's Kubernetes Node
// (nodeagent/drain) before the machine goes.
package provisioner
