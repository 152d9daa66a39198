package drain_test

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/nodeagent/drain"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
)

const spec = `apiVersion: kiln.dev/v1alpha1
kind: Cluster
metadata:
  name: drt
spec:
  provider:
    name: qemu
  controlPlane:
    image: kiln-debian-12.qcow2
  nodePools:
    - name: workers
      count: 1
      image: kiln-debian-12.qcow2
  ssh:
    generate: true
`

// ns is the namespace of the test's pods.
const ns = "drain-test"

// startCluster starts a real etcd and kube-apiserver (with the controller manager, whose disruption
// controller keeps the budgets' status) on loopback through controlplanetest, the one harness of
// tests that need a real API, and returns an admin client.
func startCluster(t *testing.T) kubernetes.Interface {
	t.Helper()
	c, err := v1alpha1.Decode([]byte(spec), "cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute)
	b, err := secrets.Generate(c, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := secrets.NewBootstrapToken(rand.Reader, now, time.Hour, "drain test")
	if err != nil {
		t.Fatal(err)
	}
	b.BootstrapTokens = append(b.BootstrapTokens, tok)
	cp := controlplanetest.Start(t, ignition.Input{Cluster: c, Secrets: b, Token: tok})
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return client
}

// node creates a Node, Ready or not: without a kubelet, nothing else changes its status.
func node(t *testing.T, c kubernetes.Interface, name string, ready bool) {
	t.Helper()
	ctx := t.Context()
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"drain-test/node": name}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	// The node lifecycle controller writes new Nodes too.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: "DrainTest", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		_, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// container is one that Pod Security's restricted level admits; it never runs (no kubelet).
func container() corev1.Container {
	no, yes := false, true
	return corev1.Container{Name: "c", Image: "registry.invalid/pause:3", SecurityContext: &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		RunAsNonRoot:             &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}}
}

// running creates a pod bound to node and makes it Running and Ready, as its kubelet would, so that
// disruption budgets count it; grace is its termination grace period: with 0 the API server deletes
// an evicted pod at once, otherwise it waits for a kubelet that is not there.
func running(t *testing.T, c kubernetes.Interface, name, node, app string, grace int64, owner *metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	no := false
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &no,
			Containers:                    []corev1.Container{container()},
		},
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	p, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	if p, err = c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// budget creates a PodDisruptionBudget over app's pods and waits until the disruption controller
// has counted them healthy.
func budget(t *testing.T, c kubernetes.Interface, app string, minAvailable, healthy int) {
	t.Helper()
	ctx := t.Context()
	mina := intstr.FromInt32(int32(minAvailable))
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &mina, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}},
	}
	if _, err := c.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := c.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, app, metav1.GetOptions{})
		return err == nil && got.Status.ObservedGeneration == got.Generation && int(got.Status.CurrentHealthy) == healthy, err
	})
	if err != nil {
		t.Fatalf("the disruption controller did not count %d healthy pods of %s: %v", healthy, app, err)
	}
}

// podsOn lists the names of the pods bound to node, with " (terminating)" after those going.
func podsOn(t *testing.T, c kubernetes.Interface, node string) []string {
	t.Helper()
	list, err := c.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range list.Items {
		name := p.Name
		if p.DeletionTimestamp != nil {
			name += " (terminating)"
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func cordoned(t *testing.T, c kubernetes.Interface, node string) bool {
	t.Helper()
	n, err := c.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Spec.Unschedulable
}

// TestDrainOnAPIServer drains Nodes of a real API server. Without kubelets, the test plays their
// part in the pods' and Nodes' status.
//
//	KILN_KUBERNETES=$(hack/tools.sh kubernetes) go test -count=1 -run DrainOnAPIServer -v ./nodeagent/drain
func TestDrainOnAPIServer(t *testing.T) {
	c := startCluster(t)
	fast := drain.Drainer{Client: c, Timeout: 5 * time.Second, Interval: 200 * time.Millisecond}

	t.Run("no node: nothing to drain", func(t *testing.T) {
		r, err := fast.Drain(t.Context(), "drt-workers-404")
		if err != nil || r.Found {
			t.Fatalf("Drain: %+v, %v; want nothing found, no error", r, err)
		}
		if err := fast.DeleteNode(t.Context(), "drt-workers-404"); err != nil {
			t.Fatalf("DeleteNode of no node: %v", err)
		}
	})

	t.Run("cordons, evicts, leaves the DaemonSet's pod, deletes the node", func(t *testing.T) {
		const n = "drt-workers-0"
		node(t, c, n, true)
		// A DaemonSet that wants its pod on this node only, updated on delete only, so that its
		// controller keeps the pod made here as its own.
		ds, err := c.AppsV1().DaemonSets(ns).Create(t.Context(), &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns},
			Spec: appsv1.DaemonSetSpec{
				Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
				UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
					Spec: corev1.PodSpec{
						NodeSelector: map[string]string{"drain-test/node": n},
						Containers:   []corev1.Container{container()},
					},
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		yes := true
		running(t, c, "agent-x", n, "agent", 0, &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: &yes, BlockOwnerDeletion: &yes})
		running(t, c, "web-0", n, "web", 0, nil)
		running(t, c, "web-1", n, "web", 0, nil)

		r, err := fast.Drain(t.Context(), n)
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
		if !r.Found || !r.Ready || !slices.Equal(r.Evicted, []string{ns + "/web-0", ns + "/web-1"}) ||
			len(r.Skipped) != 1 || r.Skipped[0] != (drain.Skip{Pod: ns + "/agent-x", Reason: drain.SkipDaemonSet}) {
			t.Errorf("Drain: %+v; want web-0 and web-1 evicted, agent-x skipped", r)
		}
		if !cordoned(t, c, n) {
			t.Error("the node is not cordoned")
		}
		if got := podsOn(t, c, n); !slices.Equal(got, []string{"agent-x"}) {
			t.Errorf("pods left on the node: %v, want the DaemonSet's agent-x", got)
		}

		if err := fast.DeleteNode(t.Context(), n); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CoreV1().Nodes().Get(t.Context(), n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the node after DeleteNode: %v, want not found", err)
		}
	})

	t.Run("a disruption budget holds the drain until the timeout, then lets it go", func(t *testing.T) {
		const n = "drt-workers-1"
		node(t, c, n, true)
		running(t, c, "db-0", n, "db", 0, nil)
		running(t, c, "db-1", n, "db", 0, nil)
		budget(t, c, "db", 2, 2)

		start := time.Now()
		r, err := fast.Drain(t.Context(), n)
		took := time.Since(start)
		if !errors.Is(err, drain.ErrBudget) || !strings.Contains(err.Error(), "disruption budget") {
			t.Fatalf("Drain: %+v, %v; want ErrBudget with the budget's reason", r, err)
		}
		t.Logf("held: %v", err)
		if took < fast.Timeout || took > fast.Timeout+10*time.Second {
			t.Errorf("the drain took %s, want about its timeout, %s: a refused eviction is tried again until then", took, fast.Timeout)
		}
		if len(r.Evicted) != 0 || !slices.Equal(podsOn(t, c, n), []string{"db-0", "db-1"}) || !cordoned(t, c, n) {
			t.Errorf("after a held drain: %+v, pods %v, cordoned %v; want nothing evicted, both pods, cordoned", r, podsOn(t, c, n), cordoned(t, c, n))
		}

		// The budget lets one go at a time: each refused eviction is tried again until the
		// disruption controller has counted the first one gone.
		mina := intstr.FromInt32(0)
		pdb, err := c.PolicyV1().PodDisruptionBudgets(ns).Get(t.Context(), "db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pdb.Spec.MinAvailable = &mina
		if _, err := c.PolicyV1().PodDisruptionBudgets(ns).Update(t.Context(), pdb, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		slow := fast
		slow.Timeout = time.Minute
		if r, err = slow.Drain(t.Context(), n); err != nil || len(r.Evicted) != 2 {
			t.Fatalf("Drain with the budget relaxed: %+v, %v", r, err)
		}
		if got := podsOn(t, c, n); len(got) != 0 {
			t.Errorf("pods left: %v", got)
		}
	})

	t.Run("evicted pods of a Ready node are waited for; of a node not Ready, not", func(t *testing.T) {
		const readyNode, deadNode = "drt-workers-2", "drt-workers-3"
		node(t, c, readyNode, true)
		node(t, c, deadNode, false)
		running(t, c, "slow-0", readyNode, "slow", 30, nil)
		running(t, c, "slow-1", deadNode, "slow", 30, nil)

		r, err := fast.Drain(t.Context(), readyNode)
		if !errors.Is(err, drain.ErrPodsLeft) || !strings.Contains(err.Error(), ns+"/slow-0") {
			t.Fatalf("Drain of the Ready node: %+v, %v; want ErrPodsLeft naming slow-0 (no kubelet ends it)", r, err)
		}
		if got := podsOn(t, c, readyNode); !slices.Equal(got, []string{"slow-0 (terminating)"}) {
			t.Errorf("pods on the Ready node: %v, want slow-0 terminating", got)
		}
		// Drained again, the terminating pod is waited for, not evicted again.
		if r, err = fast.Drain(t.Context(), readyNode); !errors.Is(err, drain.ErrPodsLeft) || len(r.Evicted) != 0 {
			t.Errorf("second Drain of the Ready node: %+v, %v; want ErrPodsLeft and no eviction", r, err)
		}

		r, err = fast.Drain(t.Context(), deadNode)
		if err != nil || r.Ready || !slices.Equal(r.Evicted, []string{ns + "/slow-1"}) {
			t.Fatalf("Drain of the node not Ready: %+v, %v; want slow-1 evicted and not waited for", r, err)
		}
	})

	t.Run("the executor drains before a delete, and a budget holds the delete", func(t *testing.T) {
		ctx := t.Context()
		mem := providertest.NewMemory(nil)
		d := reconcile.Desired{Cluster: "exe", Groups: []reconcile.Group{
			{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 2, Image: "img-1", MaxUnavailable: 1},
		}}
		// KubeNodes, as kiln apply wires it when it has a kubeconfig.
		e := &converge.Executor{Provider: mem.New(), Desired: d, Store: &providertest.Store{}, Nodes: converge.KubeNodes{Client: c, DrainTimeout: 3 * time.Second},
			Ignition: func(context.Context, reconcile.Create) ([]byte, error) { return []byte(`{}`), nil }}
		pass := func() converge.Report {
			t.Helper()
			r, err := e.Pass(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			return r
		}
		pass() // creates exe-workers-0 and -1; their kubelets would register their Nodes
		node(t, c, "exe-workers-0", true)
		node(t, c, "exe-workers-1", true)
		if r := pass(); !r.Converged(d) {
			t.Fatalf("not converged: %+v", r.Plan)
		}
		running(t, c, "queue-0", "exe-workers-1", "queue", 0, nil)
		budget(t, c, "queue", 1, 1)

		d.Groups[0].Count = 1
		e.Desired = d
		r := pass()
		if len(r.Actions) != 1 || r.Actions[0].Op != "hold" || !strings.Contains(r.Actions[0].Reason, "The disruption budget queue needs 1 healthy pods") {
			t.Fatalf("scaled down with a budget: %+v, want the delete of exe-workers-1 held by the budget", r.Actions)
		}
		if len(mem.Machines()) != 2 || !cordoned(t, c, "exe-workers-1") {
			t.Fatalf("after the hold: machines %v, cordoned %v; want both machines, exe-workers-1 cordoned", mem.Machines(), cordoned(t, c, "exe-workers-1"))
		}

		if err := c.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, "queue", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		r = pass()
		var got []string
		for _, a := range r.Actions {
			got = append(got, a.Op+" "+a.Machine)
		}
		if strings.Join(got, ", ") != "drain exe-workers-1, delete exe-workers-1, delete-node exe-workers-1" {
			t.Fatalf("without the budget: %v, want drain, delete, delete-node", got)
		}
		if _, err := c.CoreV1().Nodes().Get(ctx, "exe-workers-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the Node of the deleted machine: %v, want not found", err)
		}
		if got := podsOn(t, c, "exe-workers-1"); len(got) != 0 {
			t.Errorf("pods of the deleted machine: %v", got)
		}
	})

	t.Run("the caller's deadline is the caller's", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := fast.Drain(ctx, "drt-workers-2")
		if err == nil || errors.Is(err, drain.ErrBudget) || errors.Is(err, drain.ErrPodsLeft) {
			t.Fatalf("Drain with a cancelled context: %v, want the context's error", err)
		}
		t.Log(err)
	})
}
