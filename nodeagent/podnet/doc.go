// Package podnet is kiln's pod network on a node: Debian's CNI plugins (bridge, host-local,
// portmap, loopback) on every node, and routes between the nodes' pod ranges, with no overlay.
//
// The kube-controller-manager allocates every Node a pod range (spec.podCIDR, from the cluster's
// spec.network.podCIDR with --allocate-node-cidrs). All nodes of a cluster share one L2 private
// network, so a node reaches another node's pods through a plain route: "<their podCIDR> via
// <their InternalIP>" on the interface that holds the node's own InternalIP.
//
// The agent (Agent, run as `kiln-node podnet` by systemd on every node) watches the Nodes through
// the kubelet's own credential and, on every change and every 30 s:
//
//   - waits until its own Node exists and has a spec.podCIDR, saying why it waits;
//   - writes the CNI config (Conflist) atomically into /etc/cni/net.d. The kubelet reports
//     NetworkReady, and so the Node goes Ready, only once a CNI config exists: a node is never Ready
//     before the agent has done its first job;
//   - loads the nftables table inet kiln_podnet (Masquerade) that masquerades what the node's pods
//     send outside the cluster's pod network;
//   - programs a route to every other Node's pod range (PlanRoutes) and removes the routes it made
//     for Nodes that are gone. Its routes carry the route protocol RouteProtocol (107, "kiln" in
//     /etc/iproute2/rt_protos.d/kiln.conf), and it never changes or removes a route of another
//     protocol, nor routes its own pod range.
//
// # Masquerading
//
// The bridge plugin's ipMasq is off. With ipMasq the plugin (containernetworking/plugins
// pkg/ip.SetupIPMasq, in Debian 12's 1.1.1 and still in v1.10) masquerades every packet from a pod
// whose destination lies outside the pod's own subnet, that is outside this node's podCIDR (not
// the cluster's): traffic to another node's pods would leave with the node's address, which breaks
// the Kubernetes network model (pods see each other's addresses) and NetworkPolicy. Masquerade
// instead masquerades only what leaves this node's podCIDR for a destination outside the cluster's
// pod range (--cluster-cidr) that is not multicast.
//
// Decisions are pure (Conflist, Masquerade, PlanRoutes, NodeInfoFrom); the effects are thin:
// WriteConflist, Nft and RouteTable (netlink) apply them.
package podnet
