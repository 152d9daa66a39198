// Package rebootlock is the per-pool reboot lock of a kiln cluster: a counting semaphore of
// coordination.k8s.io/v1 Leases, so that at most N nodes of a pool reboot at once (N is the pool's
// maxConcurrentReboots; the control plane's pool, "control-plane", always has 1).
//
// A pool of N slots is the N Leases LeaseName(pool, 0) ... LeaseName(pool, N-1), named
// "kiln-reboot-<pool>-<slot>", in the namespace kube-node-lease, labelled PoolLabel=<pool>. kiln's
// cluster init creates them (Leases renders them), free; the agents never create or delete one, so
// their RBAC names exactly their pool's Leases (Rule) with the verbs get and update.
//
// A slot is held while its Lease's spec.holderIdentity names a holder (kiln-node uses the Node's
// name, FleetLock the client's id) and spec.renewTime + spec.leaseDurationSeconds is not yet past.
// Semaphore takes a slot with an Update that carries the resourceVersion it read: when someone else
// wrote the Lease in between, the API server refuses the write (409 Conflict) and the semaphore reads
// again, so two writers never both believe they took one slot and nothing is ever overwritten. A
// holder renews while it is alive; one that dies holding a slot frees it when its lease expires,
// and the next Acquire takes it over.
//
// The decisions (which slot to take, whether a Lease is held or expired) are pure functions of the
// Leases read and the time (Pick, HolderOf); Semaphore only reads and writes.
package rebootlock
