// Package kubecfg renders the Kubernetes configuration files that kiln writes onto control-plane and
// worker nodes: the secrets EncryptionConfiguration, the PodSecurity AdmissionConfiguration, the audit
// Policy, Namespace, RBAC and bootstrap-token manifests, kubeconfigs, the KubeletConfiguration and the
// command-line flags of kube-apiserver, kube-controller-manager and kube-scheduler.
//
// Every function is pure: it takes the cluster's choices and returns bytes (or flags), writes nothing and
// reads no clock. Where upstream accepts more than kiln wants (a 16-byte aescbc key, identity as the first
// encryption provider), the package carries kiln's own stricter check, CheckEncryptionConfig, which runs
// in addition to the upstream loader, not instead of it.
//
// File locations on the node follow kubeadm's layout (see the PKI file name constants and the Default*
// paths), so that documentation and habits from kubeadm clusters carry over.
package kubecfg
