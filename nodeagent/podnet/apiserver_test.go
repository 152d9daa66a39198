package podnet_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/nodeagent/podnet"
)

// waitTimeout bounds each wait on the control plane (the controller manager's leader election and
// podCIDR allocation included) and on the agent.
const waitTimeout = 2 * time.Minute

// TestAgentAgainstAPIServer runs the agent of one node against a real etcd, kube-apiserver and
// kube-controller-manager started from kiln's rendered control-plane config (package controlplane,
// the harness of bootstrap/clustertest), with the credential a kubelet has (system:node:<name>, in
// system:nodes: the Node authorizer lets it read its own Node only, the cluster init's kiln:podnet
// binding all of them), its routes in a network namespace and its CNI config in
// a temporary directory. Nodes are made by the admin with their InternalIP set through
// nodes/status, as a kubelet does; the controller manager allocates their podCIDRs
// (--allocate-node-cidrs), but for one Node made with its own.
//
//	CI=true go test -count=1 -run TestAgentAgainstAPIServer -v ./nodeagent/podnet
func TestAgentAgainstAPIServer(t *testing.T) {
	podnet.RequireNetAdmin(t)
	in := clusterInput(t)
	clusterCIDR := netip.MustParsePrefix(in.Cluster.Spec.Network.PodCIDR)

	ctx := t.Context()
	start := time.Now()
	cp := controlplanetest.Start(t, in)
	t.Logf("control plane ready after %v", time.Since(start).Round(time.Millisecond))
	// The node's read access to all Nodes comes from the cluster init, as on a real control plane.
	var rbac []string
	for _, ch := range cp.Applied {
		if ch.Name == kubecfg.PodNetworkRole {
			rbac = append(rbac, ch.Kind)
		}
	}
	if !slices.Equal(rbac, []string{"ClusterRole", "ClusterRoleBinding"}) {
		t.Fatalf("the cluster init applied %v named %s, want its ClusterRole and ClusterRoleBinding: %v", rbac, kubecfg.PodNetworkRole, cp.Applied)
	}
	admin := clientFor(t, cp.AdminKubeconfig)

	// The node's namespace on the private network, with a route of its own that the agent leaves alone.
	lan, _ := podnet.NewNetns(t, "lan")
	ns, h := podnet.NewNetns(t, "node")
	podnet.Run(t, "ip", "-n", lan, "link", "add", "br0", "type", "bridge")
	podnet.Run(t, "ip", "-n", lan, "link", "set", "br0", "up")
	podnet.Run(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "n0", "netns", lan)
	podnet.Run(t, "ip", "-n", lan, "link", "set", "n0", "master", "br0", "up")
	podnet.Run(t, "ip", "-n", ns, "addr", "add", "192.0.2.10/24", "dev", "eth0")
	podnet.Run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	podnet.Run(t, "ip", "-n", ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.1", "proto", "static")

	// The agent, as node podnet-a, with the credential its kubelet has.
	const self = "podnet-a"
	nodeClient := clientFor(t, nodeKubeconfig(t, in, cp.APIURL, self))
	cniDir := t.TempDir()
	logs := &logBuffer{t: t}
	agent := &podnet.Agent{
		NodeName:    self,
		ClusterCIDR: clusterCIDR,
		CNIDir:      cniDir,
		Routes:      podnet.NewRouteTable(h),
		Nft:         podnet.Nft{Command: []string{"ip", "netns", "exec", ns, "nft"}},
		Log:         slog.New(slog.NewTextHandler(logs, nil)),
		Resync:      5 * time.Second,
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agent.Run(runCtx, nodeClient) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return 30 s after its context ended")
		}
	})

	// Before its Node exists the agent waits, and says why; no CNI config means the kubelet
	// reports the network not ready.
	waitFor(t, "the agent to say it waits for its Node", func() bool {
		return logs.contains("node podnet-a is not registered yet")
	})
	if _, err := os.Stat(filepath.Join(cniDir, podnet.ConflistFile)); !os.IsNotExist(err) {
		t.Fatalf("a CNI config exists before the node has a podCIDR: %v", err)
	}

	// The Node appears (as its kubelet registers it); the controller manager allocates its podCIDR;
	// the agent writes the CNI config for it.
	createNode(t, admin, self, "", "192.0.2.10")
	a := waitPodCIDR(t, admin, self)
	wantConf, err := podnet.Conflist(a)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the CNI config with "+a.String(), func() bool {
		got, err := os.ReadFile(filepath.Join(cniDir, podnet.ConflistFile))
		return err == nil && bytes.Equal(got, wantConf)
	})
	t.Logf("node %s got podCIDR %s; the CNI config appeared", self, a)
	if !clusterCIDR.Contains(a.Addr()) {
		t.Errorf("podCIDR %s is outside the cluster's %s", a, clusterCIDR)
	}
	if table := podnet.Run(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", podnet.NftTable); !strings.Contains(table,
		"ip saddr "+a.String()+" ip daddr != "+clusterCIDR.String()) {
		t.Errorf("the masquerading is not loaded for %s:\n%s", a, table)
	}

	// Two more nodes: b gets its podCIDR from the controller manager, c comes with its own.
	createNode(t, admin, "podnet-b", "", "192.0.2.11")
	createNode(t, admin, "podnet-c", "10.244.200.0/24", "192.0.2.12")
	b := waitPodCIDR(t, admin, "podnet-b")
	c := waitPodCIDR(t, admin, "podnet-c")
	routeB := b.String() + " via 192.0.2.11 dev eth0 proto 107"
	routeC := "10.244.200.0/24 via 192.0.2.12 dev eth0 proto 107"
	waitFor(t, "routes to the pods of b and c", func() bool {
		got := podnet.RoutesIn(t, ns)
		return slices.Contains(got, routeB) && slices.Contains(got, routeC)
	})
	if c != netip.MustParsePrefix("10.244.200.0/24") {
		t.Errorf("node c's own podCIDR became %s", c)
	}

	// c is deleted: its route goes; b's and the node's own static route stay.
	if err := admin.CoreV1().Nodes().Delete(ctx, "podnet-c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the route to c's pods to go", func() bool { return !slices.Contains(podnet.RoutesIn(t, ns), routeC) })
	got := podnet.RoutesIn(t, ns)
	for _, want := range []string{routeB, "198.51.100.0/24 via 192.0.2.1 dev eth0 proto static"} {
		if !slices.Contains(got, want) {
			t.Errorf("route %q is gone: %v", want, got)
		}
	}
	for _, r := range got {
		if strings.HasPrefix(r, a.String()) {
			t.Errorf("a route to the node's own pod range: %s", r)
		}
	}

	// A route deleted by hand comes back within the resync.
	podnet.Run(t, "ip", "-n", ns, "route", "del", b.String())
	waitFor(t, "the route to b's pods to come back", func() bool { return slices.Contains(podnet.RoutesIn(t, ns), routeB) })
}

// clusterInput is testdata/cluster.yaml with fresh secrets and a bootstrap token.
func clusterInput(t *testing.T) ignition.Input {
	t.Helper()
	data, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := v1alpha1.Decode(data, "testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute) // valid already, whatever the clock's tick
	b, err := secrets.Generate(c, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := secrets.NewBootstrapToken(rand.Reader, now, time.Hour, "podnet test")
	if err != nil {
		t.Fatal(err)
	}
	b.BootstrapTokens = append(b.BootstrapTokens, tok)
	return ignition.Input{Cluster: c, Secrets: b, Token: tok}
}

// nodeKubeconfig writes a kubeconfig of the node's own identity, as the kubelet's TLS bootstrap
// gets it: system:node:<name> in system:nodes, signed by the cluster CA.
func nodeKubeconfig(t *testing.T, in ignition.Input, server, name string) string {
	t.Helper()
	kp, err := in.Secrets.ClusterCA.Issue(rand.Reader, pki.CertRequest{
		CommonName: "system:node:" + name, Organization: []string{"system:nodes"},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: time.Hour,
	}, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	data, err := kubecfg.Kubeconfig(kubecfg.KubeconfigInput{
		ClusterName: in.Cluster.Metadata.Name, Server: server, CAPEM: in.Secrets.ClusterCA.CertPEM,
		User: "system:node:" + name, ClientCertPEM: kp.CertPEM, ClientKeyPEM: kp.KeyPEM,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "kubelet.conf")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func clientFor(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// createNode makes a Node as the admin, then sets its InternalIP through nodes/status, as a kubelet
// reports it.
func createNode(t *testing.T, admin kubernetes.Interface, name, podCIDR, internalIP string) {
	t.Helper()
	ctx := t.Context()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR}}
	if podCIDR != "" {
		n.Spec.PodCIDRs = []string{podCIDR}
	}
	if _, err := admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error { // the controller manager writes the Node too
		n, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: internalIP},
			{Type: corev1.NodeHostName, Address: name},
		}
		_, err = admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("node %s: status: %v", name, err)
	}
}

// waitPodCIDR waits until the Node has a spec.podCIDR and returns it.
func waitPodCIDR(t *testing.T, admin kubernetes.Interface, name string) netip.Prefix {
	t.Helper()
	var p netip.Prefix
	waitFor(t, "node "+name+"'s podCIDR", func() bool {
		n, err := admin.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil || n.Spec.PodCIDR == "" {
			return false
		}
		p, err = netip.ParsePrefix(n.Spec.PodCIDR)
		return err == nil
	})
	return p
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	t.Logf("%s: after %v", what, time.Since(start).Round(time.Millisecond))
}

// logBuffer keeps the agent's log and copies it to the test's.
type logBuffer struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Logf("agent: %s", bytes.TrimRight(p, "\n"))
	return l.buf.Write(p)
}

func (l *logBuffer) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}
