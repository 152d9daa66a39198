package reboot_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/internal/testtool"
	"github.com/kiln-dev/kiln/nodeagent/drain"
	"github.com/kiln-dev/kiln/nodeagent/reboot"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

const spec = `apiVersion: kiln.dev/v1alpha1
kind: Cluster
metadata:
  name: rb
spec:
  provider:
    name: qemu
  controlPlane:
    image: kiln-debian-12.qcow2
  nodePools:
    - name: workers
      count: 5
      image: kiln-debian-12.qcow2
    - name: batch
      count: 1
      image: kiln-debian-12.qcow2
  ssh:
    generate: true
`

// ns holds the test's workload.
const ns = "reboot-test"

// Agent timings: short, so that the test sees leases run out.
const (
	leaseDuration = 15 * time.Second
	drainTimeout  = 6 * time.Second
)

// fakeNode is a Node of the test: the files its agent reads and writes, and the state the test's
// stand-in kubelet reports.
type fakeNode struct {
	name, pool, dir string
}

func (n fakeNode) path(file string) string { return filepath.Join(n.dir, file) }

func (n fakeNode) has(file string) bool {
	_, err := os.Stat(n.path(file))
	return err == nil
}

// rebootScript is the stand-in reboot command: a new boot id, no reboot required any more, and the
// node down for a moment (the stand-in kubelet reports it NotReady while "down" exists). With dead,
// the node never comes back.
func rebootScript(n fakeNode, dead bool) string {
	down := "down"
	if dead {
		down = "dead"
	}
	return "#!/bin/sh\nset -e\necho reboot >> " + n.path("reboots") + "\ncat /proc/sys/kernel/random/uuid > " + n.path("boot_id") +
		"\nrm -f " + n.path("required") + "\ntouch " + n.path(down) + "\n"
}

// TestAgentsOnAPIServer runs kiln-node reboot, as processes, for five nodes of one pool against a
// real API server whose reboot locks, RBAC and admission policy come from kiln's cluster init. The
// test plays the kubelets (Node heartbeats, pods Running and Ready) and the reboots (a script).
//
//	KILN_KUBERNETES=$(hack/tools.sh kubernetes) go test -count=1 -run AgentsOnAPIServer -v ./nodeagent/reboot
func TestAgentsOnAPIServer(t *testing.T) {
	bin, err := testtool.BuildCommand(t.TempDir(), "kiln-node")
	if err != nil {
		t.Fatal(err)
	}
	in := controlplanetest.Input(t, spec)
	b, now := in.Secrets, time.Now().Add(-time.Minute)
	cp := controlplanetest.Start(t, in)
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	admin := kubernetes.NewForConfigOrDie(cfg)
	ctx := t.Context()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	var workers []fakeNode
	nodes := map[string]fakeNode{}
	clients := map[string]kubernetes.Interface{}      // the nodes' own credentials
	agentClients := map[string]kubernetes.Interface{} // their reboot agents'
	for _, n := range []fakeNode{{name: "rb-workers-0", pool: "workers"}, {name: "rb-workers-1", pool: "workers"}, {name: "rb-workers-2", pool: "workers"},
		{name: "rb-workers-3", pool: "workers"}, {name: "rb-workers-4", pool: "workers"}, {name: "rb-batch-0", pool: "batch"}} {
		n.dir = t.TempDir()
		kc := nodeKubeconfig(t, b, cp.APIURL, n.name)
		if err := os.WriteFile(n.path("kubeconfig"), kc, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.path("boot_id"), []byte("first-boot\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		writeScript(t, n, false)
		rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
		if err != nil {
			t.Fatal(err)
		}
		clients[n.name] = kubernetes.NewForConfigOrDie(rc)
		agent, err := b.RebootAgent(rand.Reader, now, n.name, rebootlock.Group(n.pool))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.path("agent.crt"), agent.CertPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.path("agent.key"), agent.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		ac := rest.CopyConfig(rc)
		ac.CertData, ac.KeyData = agent.CertPEM, agent.KeyPEM
		agentClients[n.name] = kubernetes.NewForConfigOrDie(ac)
		createNode(t, admin, n)
		nodes[n.name] = n
		if n.pool == "workers" {
			workers = append(workers, n)
		}
	}
	kubelets := &standIn{admin: admin, nodes: nodes}
	stopKubelets := kubelets.start(t)
	defer stopKubelets()

	t.Run("a node's credential cordons only its own Node", func(t *testing.T) {
		patch := []byte(`{"spec":{"unschedulable":true}}`)
		_, err := clients["rb-workers-1"].CoreV1().Nodes().Patch(ctx, "rb-workers-2", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("rb-workers-1 cordoning rb-workers-2: got %v, want 403 Forbidden", err)
		}
		t.Logf("rb-workers-1 cordoning rb-workers-2: %v", err)
	})
	t.Run("an agent writes only its own pool's lock, in its own name", func(t *testing.T) {
		update := func(c kubernetes.Interface, name string, change func(*coordinationv1.Lease)) error {
			l, err := c.CoordinationV1().Leases(rebootlock.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			change(l)
			_, err = c.CoordinationV1().Leases(rebootlock.Namespace).Update(ctx, l, metav1.UpdateOptions{})
			return err
		}
		hold := func(who string) func(*coordinationv1.Lease) {
			return func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = &who }
		}
		release := func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = nil }
		workersLease := rebootlock.LeaseName("workers", 0)
		for _, tc := range []struct {
			name   string
			client kubernetes.Interface
			lease  string
			change func(*coordinationv1.Lease)
			want   string
		}{
			{name: "another pool's lock", client: agentClients["rb-batch-0"], lease: workersLease, change: hold("rb-batch-0"), want: "cannot get resource"},
			{name: "in another node's name", client: agentClients["rb-workers-1"], lease: workersLease, change: hold("rb-workers-2"), want: "only in its own node's name"},
			{name: "with the node's own credential", client: clients["rb-workers-1"], lease: workersLease, change: hold("rb-workers-1"), want: "forbidden"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := update(tc.client, tc.lease, tc.change)
				if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want 403 saying %q", err, tc.want)
				}
			})
		}
		if err := update(agentClients["rb-workers-1"], workersLease, hold("rb-workers-1")); err != nil {
			t.Fatalf("rb-workers-1 taking its own pool's free slot: %v", err)
		}
		if err := update(agentClients["rb-workers-2"], workersLease, release); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "releases only its own") {
			t.Fatalf("rb-workers-2 clearing rb-workers-1's hold: got %v, want 403", err)
		}
		if err := update(agentClients["rb-workers-1"], workersLease, release); err != nil {
			t.Fatalf("rb-workers-1 releasing its own slot: %v", err)
		}
	})

	t.Run("a slot that runs out between the look and the take is given back", func(t *testing.T) {
		ghost, self := nodes["rb-workers-3"], nodes["rb-workers-2"]
		// ghost holds the slot and never comes back: NotReady, its lease left to run out.
		if err := os.WriteFile(ghost.path("dead"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = os.Remove(ghost.path("dead"))
			waitFor(t, time.Minute, ghost.name+" Ready again", func() bool { return nodeReady(ctx, admin, ghost.name) })
		}()
		waitFor(t, time.Minute, ghost.name+" NotReady", func() bool { return !nodeReady(ctx, admin, ghost.name) })
		ghostLock := &rebootlock.Semaphore{Client: agentClients[ghost.name], Namespace: rebootlock.Namespace, Pool: "workers", Slots: 1,
			Duration: leaseDuration, Now: time.Now}
		if _, err := ghostLock.Acquire(ctx, ghost.name); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = ghostLock.Release(ctx, ghost.name) }()
		// self's agent looks while ghost's lease is live, and takes the slot once it has run out:
		// its clock jumps past the lease between the two.
		lock := &lateTake{Semaphore: rebootlock.Semaphore{Client: agentClients[self.name], Namespace: rebootlock.Namespace, Pool: "workers",
			Slots: 1, Duration: leaseDuration}, jump: leaseDuration + time.Second}
		lock.Now = lock.now
		dir := t.TempDir()
		agent := &reboot.Agent{Client: clients[self.name], Lock: lock, Node: self.name, PoolSelector: "kiln.dev/pool=workers",
			DrainTimeout: drainTimeout, StateFile: filepath.Join(dir, "reboot.json"), BootIDFile: self.path("boot_id"),
			Required:      func(context.Context) (bool, error) { return true, nil },
			RebootCommand: []string{"touch", filepath.Join(dir, "rebooted")}, RenewEvery: 3 * time.Second, Now: time.Now,
			Log: slog.New(slog.NewTextHandler(t.Output(), nil))}
		d, err := agent.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if lock.jumped.Load() == 0 {
			t.Fatal("the agent never looked at the lock")
		}
		t.Logf("%s: %s", d.Kind, d.Reason)
		if d.Kind != reboot.Wait || !strings.Contains(d.Reason, "pool unhealthy: "+ghost.name+": not Ready") {
			t.Errorf("decided %s (%s), want to wait: %s is not Ready", d.Kind, d.Reason, ghost.name)
		}
		if _, err := os.Stat(filepath.Join(dir, "rebooted")); err == nil {
			t.Errorf("%s rebooted while %s was down", self.name, ghost.name)
		}
		holders, err := lock.Holders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range holders {
			if h.Identity == self.name {
				t.Errorf("%s still holds slot %d", self.name, h.Slot)
			}
		}
		if node, err := admin.CoreV1().Nodes().Get(ctx, self.name, metav1.GetOptions{}); err != nil || node.Spec.Unschedulable {
			t.Errorf("%s is cordoned (%v)", self.name, err)
		}
	})

	// The workload: one replica behind a budget of minAvailable 1, so that the first drain of its
	// node is refused until the test adds a second replica.
	deployment(t, admin, 1)
	budget(t, admin)
	waitFor(t, 2*time.Minute, "the budget to count the replica healthy", func() bool {
		pdb, err := admin.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "guarded", metav1.GetOptions{})
		return err == nil && pdb.Status.ObservedGeneration == pdb.Generation && pdb.Status.CurrentHealthy == 1
	})
	history := watchPool(t, admin, "workers")

	agents := &runner{bin: bin, t: t}
	for _, n := range workers {
		if err := os.WriteFile(n.path("required"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		agents.start(n)
	}
	t.Run("the budget blocks the first drain until a second replica exists", func(t *testing.T) {
		waitFor(t, 3*time.Minute, "a drain refused by the budget", func() bool { return agents.said("drain failed") != "" })
		t.Logf("%s", agents.said("drain failed"))
		scale(t, admin, 2)
	})
	t.Run("every node reboots once, one at a time, drained and uncordoned", func(t *testing.T) {
		waitFor(t, 6*time.Minute, "every worker rebooted and done", func() bool {
			for _, n := range workers {
				if n.has("required") || !n.has("reboots") || n.has("down") || !agents.idle(n.name) {
					return false
				}
			}
			return true
		})
		for _, n := range workers {
			data, _ := os.ReadFile(n.path("reboots"))
			if got := strings.Count(string(data), "reboot"); got != 1 {
				t.Errorf("%s rebooted %d times, want 1", n.name, got)
			}
			node, err := admin.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil || node.Spec.Unschedulable {
				t.Fatalf("%s: still cordoned (%v)", n.name, err)
			}
			// What kiln get reboots shows, written by the agent with the node's own credential.
			if a := node.Annotations; a[reboot.AnnotationLast] == "" || a[reboot.AnnotationStatus] != "idle: no reboot required" || a[reboot.AnnotationRequired] != "" {
				t.Errorf("%s: annotations %v, want its last reboot, idle, and no reboot required", n.name, a)
			}
		}
		h := history.snapshot()
		if h.maxCordoned != 1 {
			t.Errorf("at most %d workers were cordoned at once, want exactly 1", h.maxCordoned)
		}
		for _, n := range workers {
			if !slices.Contains(h.holders, n.name) || !slices.Contains(h.cordonedOnce, n.name) {
				t.Errorf("%s never held the lock or was never cordoned: holders %v, cordoned %v", n.name, h.holders, h.cordonedOnce)
			}
		}
		t.Logf("lock holders in order: %v", h.holders)
		if evicted := agents.count("evicted"); evicted == 0 {
			t.Errorf("no agent evicted a pod")
		}
	})
	t.Run("a holder that dies frees the lock when its lease runs out", func(t *testing.T) {
		dead, next := workers[0], workers[1]
		writeScript(t, dead, true)
		agents.stopAfterReboot(dead.name)
		// dead needs its reboot first: its agent takes the lock before next's needs it.
		if err := os.WriteFile(dead.path("required"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Minute, dead.name+" rebooting", func() bool { return dead.has("dead") })
		died := time.Now()
		if err := os.WriteFile(next.path("required"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, next.name+" waiting for the lock", func() bool {
			return strings.Contains(agents.last(next.name), "held") || strings.Contains(agents.last(next.name), dead.name)
		})
		sem := rebootlock.Semaphore{Client: admin, Namespace: rebootlock.Namespace, Pool: "workers", Slots: 1, Duration: leaseDuration, Now: time.Now}
		waitFor(t, 2*time.Minute, "the dead holder's lease to run out", func() bool {
			hs, err := sem.Holders(ctx)
			return err == nil && len(hs) == 1 && (hs[0].Identity != dead.name || hs[0].Expired)
		})
		t.Logf("the dead holder's slot ran out %s after its reboot", time.Since(died).Round(time.Second))
		// The dead Node is NotReady: the pool is unhealthy and next waits, until the provisioner
		// has replaced the dead node (here: its Node deleted).
		waitFor(t, time.Minute, next.name+" waiting for the pool to be healthy", func() bool {
			return strings.Contains(agents.last(next.name), "pool unhealthy: "+dead.name+": not Ready")
		})
		if next.has("reboots") && strings.Count(readFile(t, next.path("reboots")), "reboot") > 1 {
			t.Fatalf("%s rebooted while the pool was unhealthy", next.name)
		}
		if err := admin.CoreV1().Nodes().Delete(ctx, dead.name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 3*time.Minute, next.name+" rebooted", func() bool {
			return strings.Count(readFile(t, next.path("reboots")), "reboot") == 2 && !next.has("required") && agents.idle(next.name)
		})
	})
	agents.stop()
	if t.Failed() {
		agents.dump()
	}
}

// lateTake is a reboot lock whose clock jumps forward by jump once the agent has looked at the
// holders: the slow moment between the look and the take, made certain.
type lateTake struct {
	rebootlock.Semaphore
	jump   time.Duration
	jumped atomic.Int64
}

func (l *lateTake) now() time.Time { return time.Now().Add(time.Duration(l.jumped.Load())) }

func (l *lateTake) Holders(ctx context.Context) ([]rebootlock.Holder, error) {
	hs, err := l.Semaphore.Holders(ctx)
	l.jumped.Store(int64(l.jump))
	return hs, err
}

func nodeReady(ctx context.Context, c kubernetes.Interface, name string) bool {
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	return err == nil && drain.Ready(n)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}

func writeScript(t *testing.T, n fakeNode, dead bool) {
	t.Helper()
	if err := os.WriteFile(n.path("reboot.sh"), []byte(rebootScript(n, dead)), 0o755); err != nil {
		t.Fatal(err)
	}
}

// nodeKubeconfig is a kubeconfig with a client certificate for node's own identity, as the
// kubelet's TLS bootstrap would get: system:node:<node> in system:nodes.
func nodeKubeconfig(t *testing.T, b *secrets.Bundle, server, node string) []byte {
	t.Helper()
	kp, err := b.ClusterCA.Issue(rand.Reader, pki.CertRequest{CommonName: "system:node:" + node, Organization: []string{kubecfg.NodesGroup},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: time.Hour}, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubecfg.Kubeconfig(kubecfg.KubeconfigInput{ClusterName: "rb", Server: server, CAPEM: b.ClusterCA.CertPEM,
		User: "system:node:" + node, ClientCertPEM: kp.CertPEM, ClientKeyPEM: kp.KeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// createNode creates n's Node with its pool label and the capacity the scheduler needs.
func createNode(t *testing.T, admin kubernetes.Interface, n fakeNode) {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{"kiln.dev/pool": n.pool, "kubernetes.io/hostname": n.name}}}
	if _, err := admin.CoreV1().Nodes().Create(t.Context(), node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// standIn plays the nodes' kubelets: every second it reports each Node Ready (NotReady while its
// "down" file exists, which it removes after two seconds, or forever once "dead" exists), and marks
// the pods bound to an up node Running and Ready.
type standIn struct {
	admin kubernetes.Interface
	nodes map[string]fakeNode
}

func (s *standIn) start(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
			for _, n := range s.nodes {
				s.beat(ctx, t, n)
			}
			s.runPods(ctx, t)
			return false, nil
		})
	}()
	return func() { cancel(); <-done }
}

func (s *standIn) beat(ctx context.Context, t *testing.T, n fakeNode) {
	up := !n.has("dead")
	if fi, err := os.Stat(n.path("down")); err == nil {
		up = false
		if time.Since(fi.ModTime()) > 2*time.Second {
			_ = os.Remove(n.path("down"))
		}
	}
	status := corev1.ConditionFalse
	if up {
		status = corev1.ConditionTrue
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := s.admin.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Status.Capacity = corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceCPU: resource.MustParse("2"),
			corev1.ResourceMemory: resource.MustParse("4Gi")}
		node.Status.Allocatable = node.Status.Capacity
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: "RebootTest",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		_, err = s.admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
		t.Logf("stand-in kubelet of %s: %v", n.name, err)
	}
}

func (s *standIn) runPods(ctx context.Context, t *testing.T) {
	pods, err := s.admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		n, ok := s.nodes[p.Spec.NodeName]
		if !ok || p.DeletionTimestamp != nil || n.has("down") || n.has("dead") || p.Status.Phase == corev1.PodRunning {
			continue
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
		if _, err := s.admin.CoreV1().Pods(ns).UpdateStatus(ctx, &p, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			t.Logf("stand-in kubelet of %s: pod %s: %v", n.name, p.Name, err)
		}
	}
}

func deployment(t *testing.T, admin kubernetes.Interface, replicas int32) {
	t.Helper()
	no, yes, grace := false, true, int64(0)
	labels := map[string]string{"app": "guarded"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector:                  map[string]string{"kiln.dev/pool": "workers"},
					TerminationGracePeriodSeconds: &grace,
					AutomountServiceAccountToken:  &no,
					Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/pause:3", SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: &no, RunAsNonRoot: &yes, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					}}},
				},
			},
		},
	}
	if _, err := admin.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func scale(t *testing.T, admin kubernetes.Interface, replicas int32) {
	t.Helper()
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas))
	if _, err := admin.AppsV1().Deployments(ns).Patch(t.Context(), "guarded", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func budget(t *testing.T, admin kubernetes.Interface) {
	t.Helper()
	one := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: ns},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}}},
	}
	if _, err := admin.PolicyV1().PodDisruptionBudgets(ns).Create(t.Context(), pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// poolHistory is what watching the pool saw: the lock's holders in order, the most workers
// cordoned at once, and every worker that was ever cordoned.
type poolHistory struct {
	mu           sync.Mutex
	holders      []string
	maxCordoned  int
	cordonedOnce []string
}

func (h *poolHistory) snapshot() poolHistory {
	h.mu.Lock()
	defer h.mu.Unlock()
	return poolHistory{holders: slices.Clone(h.holders), maxCordoned: h.maxCordoned, cordonedOnce: slices.Clone(h.cordonedOnce)}
}

// watchPool watches the pool's Nodes and its lock's Lease until the test ends.
func watchPool(t *testing.T, admin kubernetes.Interface, pool string) *poolHistory {
	t.Helper()
	ctx := t.Context()
	h := &poolHistory{}
	nw, err := admin.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{LabelSelector: "kiln.dev/pool=" + pool})
	if err != nil {
		t.Fatal(err)
	}
	lw, err := admin.CoordinationV1().Leases(rebootlock.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: rebootlock.PoolLabel + "=" + pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Stop)
	t.Cleanup(lw.Stop)
	cordoned := map[string]bool{}
	go func() {
		for ev := range nw.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok {
				continue
			}
			h.mu.Lock()
			cordoned[n.Name] = n.Spec.Unschedulable && n.DeletionTimestamp == nil
			count := 0
			for name, c := range cordoned {
				if c {
					count++
					if !slices.Contains(h.cordonedOnce, name) {
						h.cordonedOnce = append(h.cordonedOnce, name)
					}
				}
			}
			h.maxCordoned = max(h.maxCordoned, count)
			h.mu.Unlock()
		}
	}()
	go func() {
		for ev := range lw.ResultChan() {
			l, ok := ev.Object.(*coordinationv1.Lease)
			if !ok || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
				continue
			}
			h.mu.Lock()
			if len(h.holders) == 0 || h.holders[len(h.holders)-1] != *l.Spec.HolderIdentity {
				h.holders = append(h.holders, *l.Spec.HolderIdentity)
			}
			h.mu.Unlock()
		}
	}()
	return h
}

// runner runs each node's agent, as a process, again and again (kiln-reboot.timer's part), and keeps
// what each run printed.
type runner struct {
	bin  string
	t    *testing.T
	mu   sync.Mutex
	out  map[string][]string
	quit map[string]bool
	wg   sync.WaitGroup
	done chan struct{}
}

func (r *runner) start(n fakeNode) {
	r.mu.Lock()
	if r.out == nil {
		r.out, r.quit, r.done = map[string][]string{}, map[string]bool{}, make(chan struct{})
	}
	r.mu.Unlock()
	r.wg.Go(func() {
		for {
			select {
			case <-r.done:
				return
			case <-time.After(300 * time.Millisecond):
			}
			r.mu.Lock()
			quit := r.quit[n.name]
			r.mu.Unlock()
			if quit && n.has("dead") {
				continue // the machine is gone; its agent does not run
			}
			cmd := exec.Command(r.bin, "reboot", "--kubeconfig="+n.path("kubeconfig"), "--lock-cert="+n.path("agent.crt"),
				"--lock-key="+n.path("agent.key"), "--node-name="+n.name, "--pool="+n.pool, "--slots=1",
				"--lease-duration="+leaseDuration.String(), "--renew-every=3s", "--drain-timeout="+drainTimeout.String(),
				"--state-file="+n.path("state.json"), "--boot-id-file="+n.path("boot_id"), "--reboot-required-file="+n.path("required"),
				"--reboot-command="+n.path("reboot.sh"))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			line := out.String()
			if err != nil {
				line += "exit: " + err.Error()
			}
			r.mu.Lock()
			r.out[n.name] = append(r.out[n.name], line)
			r.mu.Unlock()
		}
	})
}

// stopAfterReboot stops node's agent once its node is dead.
func (r *runner) stopAfterReboot(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.quit[node] = true
}

func (r *runner) stop() {
	close(r.done)
	r.wg.Wait()
}

// said returns the first run output, of any node, that contains s.
func (r *runner) said(s string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, runs := range r.out {
		for _, o := range runs {
			if strings.Contains(o, s) {
				return o
			}
		}
	}
	return ""
}

// count counts the runs, of every node, whose output contains s.
func (r *runner) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, runs := range r.out {
		for _, o := range runs {
			if strings.Contains(o, s) {
				n++
			}
		}
	}
	return n
}

// last is node's last run's output.
func (r *runner) last(node string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	runs := r.out[node]
	if len(runs) == 0 {
		return ""
	}
	return runs[len(runs)-1]
}

// idle says node's last run found nothing to do.
func (r *runner) idle(node string) bool {
	return strings.Contains(r.last(node), "idle: no reboot required")
}

func (r *runner) dump() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for node, runs := range r.out {
		var shown []string
		for i, o := range runs {
			if i == 0 || o != runs[i-1] {
				shown = append(shown, o)
			}
		}
		r.t.Logf("%s's runs (repeats folded):\n%s", node, strings.Join(shown[max(0, len(shown)-40):], "\n"))
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
