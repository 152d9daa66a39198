package cli

import (
	"path/filepath"
	"testing"

	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

// clusterAPI is a real control plane of the cluster in dir (controlplanetest), started from what kiln
// rendered for its first control-plane node, for the machines of providers whose VMs boot nothing:
// the test registers their Nodes, as their kubelets would.
type clusterAPI struct {
	admin kubernetes.Interface
	// kubeconfig is a kubeconfig for apply --kubeconfig, issued by kiln kubeconfig --server as through
	// a tunnel of the user's own: the spec's endpoint is not reachable from here.
	kubeconfig string
}

// startClusterAPI starts the control plane of cluster in dir; its machines must have been created
// (apply stored the first control plane's bootstrap token). The test must have found the programs
// (controlplanetest.Binaries) before it changed its directory.
func startClusterAPI(t *testing.T, dir, cluster string) *clusterAPI {
	t.Helper()
	c, err := loadSpec(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b := loadBundle(t, dir, cluster)
	var tok secrets.BootstrapToken
	for _, s := range b.BootstrapTokens {
		if s.Machine == cluster+"-control-plane-0" {
			tok = s
		}
	}
	if tok.ID == "" {
		t.Fatalf("no bootstrap token of %s-control-plane-0 in the store", cluster)
	}
	cp := controlplanetest.Start(t, ignition.Input{Cluster: c, Secrets: b, Token: tok})
	admin := controlplanetest.Admin(t, cp, b)
	kilnOK(t, dir, "kubeconfig", "--server", cp.APIURL, "--user", "kiln:ops", "--groups", secrets.AdminGroup, "--output-file", "ops.conf")
	return &clusterAPI{admin: admin, kubeconfig: filepath.Join(dir, "ops.conf")}
}

// readyNode registers the Node name with its Ready condition True, as its kubelet does once its
// machine has booted.
func readyNode(t *testing.T, admin kubernetes.Interface, name string) {
	t.Helper()
	if err := controlplanetest.ReadyNode(t.Context(), admin, name); err != nil {
		t.Fatalf("register the Ready Node %s: %v", name, err)
	}
}
