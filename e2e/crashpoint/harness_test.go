// Package crashpoint kills the built kiln binary with SIGKILL after every mutating provider call of a
// create, replace, scale-down and delete sequence in turn, runs it again without the kill, and checks
// after each crash point that kiln converges with no duplicate machine, no orphan and no lost state.
//
// The kill point is chosen at the backend, not in kiln: a counting proxy sits between the kiln child
// process and the provider's backend (govmomi's vCenter simulator, the AWS fake), holds the answer to
// each mutating request (a vSphere *_Task method, an EC2/ELB action that is not Describe/Get/List, an
// S3 write) until the backend has acted on it, and on the Nth one kills the child before the child
// sees the answer. The QEMU provider's backend is the programs it runs (qemu-img, vde_switch,
// qemu-system-x86_64) and the signals it sends them: stand-ins of those programs (testdata/qemustandin)
// report each change, once made, to the harness, which counts them the same way. kiln carries no test
// hook; the crash lands at the worst moment, after the backend changed and before kiln learned of it.
package crashpoint

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/internal/testtool"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/state"
)

// maxPoints bounds the crash points of one scenario: a sequence that never finishes is a bug.
const maxPoints = 80

var kilnBin string

func TestMain(m *testing.M) { os.Exit(testtool.MainWithKiln(m, &kilnBin)) }

// machine is a machine of the cluster as the backend itself sees it.
type machine struct {
	Name, Pool string
	Running    bool
}

// backend is one provider's backend and what the harness asks of it.
type backend struct {
	name string
	// upstream is the backend's URL the proxy forwards to, and client the HTTP client that trusts
	// its certificate.
	upstream *url.URL
	client   *http.Client
	// env is the child's provider environment; proxyHost and caFile are filled in by the harness.
	env func(proxyHost, caFile string) []string
	// spec sets the provider block of the spec; proxyHost is where kiln reaches the backend.
	spec func(c *v1alpha1.Cluster, proxyHost string)
	// mutating names the request if it changes the backend.
	mutating func(r *http.Request, body []byte) (string, bool)
	// machines lists what the backend holds tagged for the cluster, and untagged lists what it holds
	// that kiln made but did not tag (must stay empty).
	machines func(t *testing.T) []machine
	// fail makes the running machine name fail as a provider would see it.
	fail func(t *testing.T, name string)
	// reset, when set, replaces the backend with an empty one and returns its URL: the create
	// scenario starts from nothing at each crash point, and a backend that remembers deleted
	// machines (EC2 keeps terminated instances, and kiln's client tokens per name run out after 16
	// generations) must be started afresh.
	reset func(t *testing.T) (*url.URL, *http.Client)
	// resources counts the cluster's tagged resources other than machines, by kind (network objects);
	// nil for backends without any.
	resources func(t *testing.T) map[string]int
	// consistent, when set, checks the backend's own bookkeeping after each crash point, converged
	// or deleted (the QEMU provider's directories, pidfiles, address reservations and ports).
	consistent func(t *testing.T)
	// running, when set, names the cluster's running machines, without a test to fail: it is polled
	// while kiln runs. Their machines boot nothing and kiln reaches no SSH of theirs (vSphere, AWS),
	// so kubelets registers their Nodes in a real API server, which apply reads with --kubeconfig:
	// a machine is ready only once its Node is. The QEMU stand-ins answer over SSH instead.
	running func() ([]string, error)
}

// harness runs the kiln binary against a backend through the counting proxy.
type harness struct {
	// stride between the crash points tried: 1 tries every mutating call. The AWS scenarios take
	// 15 to 20 s a point, so go test tries every 4th there (KILN_CRASHPOINT_STRIDE=1 tries them all).
	stride int
	b      backend
	dir    string
	state  string
	env    []string
	// kubeconfig is apply's way to the Nodes of kubelets; "" without.
	kubeconfig string
	proxy      *httptest.Server
	mu         sync.Mutex
	armed      int // kill at this mutating call, 0 when not armed
	calls      []string
	child      *exec.Cmd
	dead       chan struct{}
	killed     bool
	killLog    string
}

func newHarness(t *testing.T, b backend) *harness {
	t.Helper()
	h := &harness{b: b, dir: t.TempDir()}
	h.state = filepath.Join(h.dir, "state")
	h.proxy = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serve(t, w, r) }))
	t.Cleanup(h.proxy.Close)
	ca := filepath.Join(h.dir, "proxy-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.proxy.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(h.proxy.URL, "https://")
	h.env = append(b.env(host, ca), "KILN_STATE_DIR="+h.state, "HOME="+h.dir)

	h.mustRun(t, "init", "demo", "--provider", b.name)
	path := filepath.Join(h.dir, "cluster.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v1alpha1.Decode(raw, path)
	if err != nil {
		t.Fatal(err)
	}
	b.spec(c, host)
	c.Spec.NodePools = c.Spec.NodePools[:1]
	c.Spec.NodePools[0].Count = 3
	h.writeSpec(t, c)
	if b.running != nil {
		h.kubeconfig = h.kubelets(t, b.running)
	}
	return h
}

// kubelets stands for the kubelets of the backend's machines, which boot nothing: until the test
// ends it registers, every 100 ms, a Ready Node for each running machine in a real API server
// (controlplanetest, the cluster's own control plane), and deletes the Nodes of the others. It
// returns a kubeconfig of that API for apply --kubeconfig.
func (h *harness) kubelets(t *testing.T, running func() ([]string, error)) string {
	t.Helper()
	key, err := state.LoadKey(h.state)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(h.state, "state.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := secrets.Load(st, "demo")
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The control plane's own token, kept in the copy of the bundle that it is rendered from.
	tok, err := secrets.NewBootstrapToken(rand.Reader, time.Now(), time.Hour, "crashpoint control plane")
	if err != nil {
		t.Fatal(err)
	}
	b.BootstrapTokens = append(b.BootstrapTokens, tok)
	cp := controlplanetest.Start(t, ignition.Input{Cluster: h.spec(t), Secrets: b, Token: tok})
	admin := controlplanetest.Admin(t, cp, b)
	kubeconfig := filepath.Join(h.dir, "kubelets.conf")
	h.mustRun(t, "kubeconfig", "--server", cp.APIURL, "--user", "kiln:crashpoint", "--groups", secrets.AdminGroup, "--ttl", "12h", "--output-file", kubeconfig)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { stop(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := syncNodes(ctx, admin, running); err != nil && ctx.Err() == nil {
				t.Logf("kubelets: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return kubeconfig
}

// syncNodes registers a Ready Node for each running machine and deletes the Nodes of the others.
func syncNodes(ctx context.Context, admin kubernetes.Interface, running func() ([]string, error)) error {
	names, err := running()
	if err != nil {
		return err
	}
	nodes, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, n := range nodes.Items {
		if !want[n.Name] {
			if err := admin.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			continue
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				delete(want, n.Name)
			}
		}
	}
	for name := range want {
		if err := controlplanetest.ReadyNode(ctx, admin, name); err != nil {
			return err
		}
	}
	return nil
}

// applyArgs are the arguments of kiln apply on h: applyArgs, reading the Nodes of kubelets if any.
func (h *harness) applyArgs() []string {
	args := slices.Clone(applyArgs)
	if h.kubeconfig != "" {
		args = append(args, "--kubeconfig", h.kubeconfig)
	}
	return args
}

func (h *harness) writeSpec(t *testing.T, c *v1alpha1.Cluster) {
	t.Helper()
	raw, err := v1alpha1.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "cluster.yaml"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) spec(t *testing.T) *v1alpha1.Cluster {
	t.Helper()
	path := filepath.Join(h.dir, "cluster.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v1alpha1.Decode(raw, path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serve forwards one request to the backend, holding the answer; the armed Nth mutating request
// kills the child before the answer goes back.
func (h *harness) serve(t *testing.T, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	h.mu.Lock()
	upstream, up := h.b.upstream, h.b.client
	h.mu.Unlock()
	out, err := http.NewRequestWithContext(r.Context(), r.Method, upstream.JoinPath(r.URL.Path).String(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.URL.RawQuery = r.URL.RawQuery
	out.Header = r.Header.Clone()
	out.Host = r.Host // SigV4 signs the host kiln dialled
	resp, err := up.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if name, ok := h.b.mutating(r, body); ok && h.hit(name) {
		return // the child is dead: nobody reads an answer
	}
	for k, vs := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}

// hit counts a mutating call and, at the armed one, kills the child and waits for it to be gone.
func (h *harness) hit(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.armed == 0 || h.child == nil {
		return false
	}
	h.calls = append(h.calls, name)
	if len(h.calls) != h.armed || h.killed {
		return h.killed
	}
	h.killed = true
	h.killLog = name
	h.child.Process.Signal(syscall.SIGKILL)
	select {
	case <-h.dead:
	case <-time.After(30 * time.Second):
	}
	return true
}

// run runs kiln with args; killAt > 0 kills it after that mutating provider call. It returns
// whether the kill happened, the exit error and the output.
func (h *harness) run(t *testing.T, killAt int, args ...string) (killed bool, err error, out string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kilnBin, args...)
	cmd.Dir = h.dir
	cmd.Env = append(os.Environ(), h.env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	h.mu.Lock()
	h.armed, h.calls, h.killed, h.child, h.dead = killAt, nil, false, cmd, make(chan struct{})
	dead := h.dead
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		t.Fatal(err)
	}
	h.mu.Unlock()
	err = cmd.Wait()
	close(dead)
	h.mu.Lock()
	killed = h.killed
	h.armed, h.child = 0, nil
	h.mu.Unlock()
	return killed, err, tail(buf.String())
}

// tail is the end of a run's output: a run that never converges logs a line per pass.
func tail(s string) string {
	const keep = 6000
	if len(s) <= keep {
		return s
	}
	return "...\n" + s[len(s)-keep:]
}

func (h *harness) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	_, err, out := h.run(t, 0, args...)
	if err != nil {
		t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// apply runs kiln apply to convergence without a kill.
func (h *harness) apply(t *testing.T) {
	t.Helper()
	out := h.mustRun(t, h.applyArgs()...)
	if !strings.Contains(out, "demo has converged") {
		t.Fatalf("apply did not converge:\n%s", out)
	}
}

var applyArgs = []string{"apply", "--yes", "--interval", "20ms", "--qps", "1000", "--concurrency", "2", "--timeout", "2m"}

// crashLoop runs scenario: for N = 1, 2, ... setup, then args with the kill after the Nth mutating
// provider call, then args again without the kill, then check; until a run finishes before its Nth
// call. It returns the number of crash points tried.
func (h *harness) crashLoop(t *testing.T, scenario string, setup func(), args []string, check func(t *testing.T)) int {
	t.Helper()
	stride := max(1, h.stride)
	if v, err := strconv.Atoi(os.Getenv("KILN_CRASHPOINT_STRIDE")); err == nil && v > 0 {
		stride = v
	}
	tried := 0
	for n := 1; n <= maxPoints; n += stride {
		setup()
		killed, err, out := h.run(t, n, args...)
		if !killed {
			if err != nil {
				t.Fatalf("%s: uninterrupted run at N=%d failed: %v\n%s", scenario, n, err, out)
			}
			check(t)
			t.Logf("%s: %d crash points tried (every %d. mutating call), every one converged", scenario, tried, stride)
			return tried
		}
		tried++
		h.mu.Lock()
		at := h.killLog
		h.mu.Unlock()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("%s: N=%d: kiln was not killed by SIGKILL: %v\n%s", scenario, n, err, out)
		}
		if _, err, out := h.run(t, 0, args...); err != nil {
			t.Fatalf("%s: restart after a kill after call %d (%s): %v\n%s", scenario, n, at, err, out)
		}
		t.Run(fmt.Sprintf("%s/after-%d-%s", scenario, n, at), check)
	}
	t.Fatalf("%s: still killed after %d crash points", scenario, maxPoints)
	return 0
}

// want is the cluster's pools as the spec says.
func (h *harness) want(t *testing.T) map[string]int {
	c := h.spec(t)
	w := map[string]int{"control-plane": max(1, c.Spec.ControlPlane.Count)}
	for _, p := range c.Spec.NodePools {
		if p.Count > 0 {
			w[p.Name] = p.Count
		}
	}
	return w
}

// converged checks the backend holds exactly the spec's machines, all running, each once, and that
// the state store holds the cluster's secrets and apply's memory.
func (h *harness) converged(t *testing.T) {
	t.Helper()
	ms := h.b.machines(t)
	got := map[string]int{}
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.Name] {
			t.Errorf("duplicate machine %s", m.Name)
		}
		seen[m.Name] = true
		got[m.Pool]++
		if !m.Running {
			t.Errorf("machine %s is not running", m.Name)
		}
	}
	if want := h.want(t); !mapsEqual(got, want) {
		t.Errorf("machines by pool: got %v, want %v (orphans or missing machines): %v", got, want, ms)
	}
	if h.b.consistent != nil {
		h.b.consistent(t)
	}
	h.checkState(t, true)
}

// deleted checks nothing tagged for the cluster is left and the secrets survived.
func (h *harness) deleted(t *testing.T) {
	t.Helper()
	if ms := h.b.machines(t); len(ms) > 0 {
		t.Errorf("machines left after delete: %v", ms)
	}
	if h.b.resources != nil {
		if rs := h.b.resources(t); len(rs) > 0 {
			t.Errorf("resources left after delete: %v", rs)
		}
	}
	if h.b.consistent != nil {
		h.b.consistent(t)
	}
	h.checkState(t, false)
}

// checkState opens the state store as kiln does and reads the cluster's secrets, and apply's memory
// if withMemory.
func (h *harness) checkState(t *testing.T, withMemory bool) {
	t.Helper()
	key, err := state.LoadKey(h.state)
	if err != nil {
		t.Fatalf("state key: %v", err)
	}
	st, err := state.Open(filepath.Join(h.state, "state.db"), key)
	if err != nil {
		t.Fatalf("state store: %v", err)
	}
	defer st.Close()
	if _, err := secrets.Load(st, "demo"); err != nil {
		t.Errorf("secrets of demo: %v", err)
	}
	if withMemory {
		var m converge.Memory
		if err := st.Get("converge", "demo", &m); err != nil {
			t.Errorf("apply's memory of demo: %v", err)
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// runScenarios runs the four sequences on h and logs the crash points tried.
func runScenarios(t *testing.T, h *harness) {
	total := 0
	var pools map[string]int
	// create: the network and 1 control plane + 3 workers from nothing. Each crash point starts from
	// nothing again, by a clean delete.
	empty := func() {
		if h.b.reset != nil {
			u, c := h.b.reset(t)
			h.mu.Lock()
			h.b.upstream, h.b.client = u, c
			h.mu.Unlock()
		}
		h.mustRun(t, "delete", "--yes")
	}
	total += h.crashLoop(t, "create", empty, h.applyArgs(), func(t *testing.T) {
		h.converged(t)
		if h.b.resources != nil {
			rs := h.b.resources(t)
			if pools == nil {
				pools = rs
			} else if !mapsEqual(rs, pools) {
				t.Errorf("network resources %v, after a clean create %v", rs, pools)
			}
		}
	})

	// replace: a worker fails; apply replaces it.
	h.apply(t)
	total += h.crashLoop(t, "replace", func() {
		ms := h.b.machines(t)
		i := slices.IndexFunc(ms, func(m machine) bool { return m.Pool == "workers" && m.Running })
		if i < 0 {
			t.Fatalf("no running worker to fail: %v", ms)
		}
		h.b.fail(t, ms[i].Name)
	}, h.applyArgs(), h.converged)

	// scale down by one: 3 workers to 2, from 3 each time.
	total += h.crashLoop(t, "scale-down", func() {
		h.setWorkers(t, 3)
		h.apply(t)
		h.setWorkers(t, 2)
	}, h.applyArgs(), h.converged)

	// delete the cluster, from a converged cluster each time.
	h.setWorkers(t, 3)
	total += h.crashLoop(t, "delete", func() {
		if h.b.reset != nil { // the same names again: from an empty backend
			empty()
		}
		h.apply(t)
	}, []string{"delete", "--yes"}, h.deleted)
	t.Logf("%s: %d crash points in all", h.b.name, total)
}

func (h *harness) setWorkers(t *testing.T, n int) {
	c := h.spec(t)
	c.Spec.NodePools[0].Count = n
	h.writeSpec(t, c)
}
