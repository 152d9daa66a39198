// Package clustertest proves, on a real etcd and kube-apiserver started on loopback, that the files
// and flags kiln renders for a control-plane node keep the cluster's security promises: TLS from the
// private CA, authentication with 401 for the rest, RBAC with 403, Pod Security admission per
// namespace, and Secrets encrypted at rest in etcd; and that `kiln cluster secure` brings drifted
// namespace labels and RBAC bindings back (package clusterapply). The control plane is started by
// package controlplane, the code behind `kiln controlplane run`.
//
// It holds only a test. Run it as root with etcd and the Kubernetes binaries from hack/tools.sh
// kubernetes and Debian's etcd-client (etcdctl) installed (hack/tools.sh deps):
//
//	CI=true go test -count=1 -v ./bootstrap/clustertest
package clustertest
