// Package controlplane runs a cluster's control plane on one machine, from exactly the files and flags
// kiln renders for a control-plane node: it writes the node's files as its Ignition config would (under
// a directory instead of /), starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler
// with the rendered flags on loopback, waits until the API server is ready, and applies kiln's
// objects (namespaces with their Pod Security labels, the TLS-bootstrap RBAC bindings, the bootstrap
// tokens) with package clusterapply, as the node's kiln-cluster-init.service does.
//
// It is meant for tests and for a local cluster on one machine (`kiln controlplane run`); a real node
// runs the same programs as systemd units. Applying objects to a running cluster in production
// (`kiln cluster secure`) is package clusterapply's job.
package controlplane
