package cli

import (
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

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
	cfg := controlplanetest.Config(cp, b.ClusterCA.CertPEM)
	cfg.CertData, cfg.KeyData = b.Admin.CertPEM, b.Admin.KeyPEM
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kilnOK(t, dir, "kubeconfig", "--server", cp.APIURL, "--user", "kiln:ops", "--groups", secrets.AdminGroup, "--output-file", "ops.conf")
	return &clusterAPI{admin: admin, kubeconfig: filepath.Join(dir, "ops.conf")}
}

// readyNode registers the Node name with its Ready condition True, as its kubelet does once its
// machine has booted.
func readyNode(t *testing.T, admin kubernetes.Interface, name string) {
	t.Helper()
	ctx := t.Context()
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The controller manager writes the new Node too (taints, pod range): retry on its conflicts.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		_, err = admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
