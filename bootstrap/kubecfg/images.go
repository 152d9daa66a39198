package kubecfg

// The container images that every kiln node carries. No registry is reachable from a node (nor needed):
// kiln builds these images from its own source (cmd/kiln-pause, cmd/kiln-echo; `hack/tools.sh
// node-images`), the base image bakes their tarballs into /usr/share/kiln/images, and
// kiln-images.service imports them into containerd's k8s.io namespace before the kubelet starts, so a
// pod that names one never pulls. The names say so: NodeImageRegistry is a host no registry serves.
//
// These constants are the one place the names are written: the containerd config that the Butane
// templates render pins SandboxImage, and the tarballs are written under these names
// (images/nodeimages, run by hack/tools.sh node-images).
const (
	// NodeImageRegistry is the registry part of the node images' names.
	NodeImageRegistry = "registry.kiln.internal"
	// NodeImageTag tags the node images. Raise it when kiln-pause or kiln-echo changes in a way a
	// node could tell apart.
	NodeImageTag = "v2"
	// SandboxImage is the pod sandbox ("pause") image: containerd's pinned sandbox image, never
	// garbage-collected and never pulled.
	SandboxImage = NodeImageRegistry + "/pause:" + NodeImageTag
	// EchoImage is the test workload: an HTTP server on :8080 that answers with its hostname and
	// pod IP (cmd/kiln-echo).
	EchoImage = NodeImageRegistry + "/echo:" + NodeImageTag
)
