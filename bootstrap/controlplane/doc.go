// Package controlplane runs a cluster's control plane on one machine, from exactly the files and flags
// kiln renders for a control-plane node: it writes the node's files as its Ignition config would (under
// a directory instead of /), starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler
// with the rendered flags on loopback, waits until the API server is ready, and applies kiln's
// objects (namespaces with their Pod Security labels, the TLS-bootstrap RBAC bindings, the bootstrap
// tokens) as the node's kiln-cluster-init.service does.
//
// Apply is the same server-side apply against any running cluster: `kiln cluster secure` uses it to
// bring a cluster's namespace labels and RBAC bindings back to what the spec says.
//
// It is meant for tests and for a local cluster on one machine; a real node runs the same programs as
// systemd units.
package controlplane
