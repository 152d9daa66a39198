package kubecfg

import "fmt"

// Where a kiln node keeps its CNI plugins and their configuration: Debian's containernetworking-plugins
// package installs bridge, host-local, loopback, portmap and the others into CNIBinDir; the node agent
// writes the pod network's config into CNIConfDir.
const (
	CNIBinDir  = "/usr/lib/cni"
	CNIConfDir = "/etc/cni/net.d"
)

// ContainerdConfig renders /etc/containerd/config.toml for the containerd 2.x that the base image
// carries (hack/tools.sh containerd): config version 4, the current one of containerd 2.4 (version 3
// would be migrated, with a warning, on every start; the CRI plugin sections below are the same in
// both); runc through io.containerd.runc.v2 with the systemd cgroup driver, matching the kubelet's
// cgroupDriver; SandboxImage as the pinned sandbox image, which is never garbage-collected and, being
// imported at boot, never pulled; the CNI plugins and configs where CNIBinDir and CNIConfDir say.
// Everything else is containerd's default.
func ContainerdConfig() []byte {
	return fmt.Appendf(nil, `# containerd 2.x, written by kiln (bootstrap/kubecfg.ContainerdConfig).
version = 4

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = %q

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = [%q]
  conf_dir = %q
`, SandboxImage, CNIBinDir, CNIConfDir)
}
