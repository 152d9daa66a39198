package converge_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/nodeagent/drain"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/health"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
)

// kube stands for a cluster's API: every machine of mem has a Ready Node (none of the machines in
// noNode), unless down says the API does not answer. It records what was drained and deleted, and
// whether each machine still existed when its Node was drained.
type kube struct {
	mem      *providertest.Memory
	down     error
	noNode   []string
	drainErr error
	// stale are Nodes of no machine, by name, with whether they are Ready.
	stale map[string]bool

	mu             sync.Mutex
	calls          []string
	existedAtDrain []bool
}

func (k *kube) NodeReady(context.Context) (map[string]health.Condition, error) {
	if k.down != nil {
		return nil, k.down
	}
	out := map[string]health.Condition{}
	for _, m := range k.mem.Machines() {
		if !slices.Contains(k.noNode, m.Name) {
			out[m.Name] = health.Condition{Known: true, Ready: true}
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for name, ready := range k.stale {
		out[name] = health.Condition{Known: true, Ready: ready}
	}
	return out, nil
}

func (k *kube) Drain(_ context.Context, node string) (drain.Result, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, "drain "+node)
	exists := slices.ContainsFunc(k.mem.Machines(), func(m provisioner.Machine) bool { return m.Name == node })
	k.existedAtDrain = append(k.existedAtDrain, exists)
	if k.drainErr != nil {
		return drain.Result{Found: true, Ready: true}, k.drainErr
	}
	return drain.Result{Found: true, Ready: true, Evicted: []string{"apps/web-1", "apps/web-2"}, Skipped: []drain.Skip{{Pod: "kube-system/cni", Reason: drain.SkipDaemonSet}}}, nil
}

func (k *kube) DeleteNode(_ context.Context, node string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, "delete-node "+node)
	delete(k.stale, node)
	return nil
}

func ops(r converge.Report) string {
	var out []string
	for _, a := range r.Actions {
		out = append(out, a.Op+" "+a.Machine)
	}
	return strings.Join(out, ", ")
}

// scaledDown is a harness whose cluster converged at 3 workers with Ready Nodes, and an executor
// for 2.
func scaledDown(t *testing.T, k *kube) (*harness, *converge.Executor) {
	t.Helper()
	h := newHarness()
	k.mem = h.mem
	e := h.executor(desired(3), reconcile.Policy{})
	e.Nodes = k
	h.pass(t, e)
	if r := h.pass(t, e); !r.Converged(desired(3)) {
		t.Fatalf("not converged: %s", ops(r))
	}
	e = h.executor(desired(2), reconcile.Policy{})
	e.Nodes = k
	return h, e
}

func TestDrainsBeforeDelete(t *testing.T) {
	k := &kube{}
	h, e := scaledDown(t, k)
	r := h.pass(t, e)
	if got, want := ops(r), "drain kt-workers-2, delete kt-workers-2, delete-node kt-workers-2"; got != want {
		t.Fatalf("actions: %s, want %s", got, want)
	}
	if want := "before delete: cordoned, 2 pods evicted, 1 pod left (DaemonSet, mirror or finished)"; r.Actions[0].Reason != want {
		t.Errorf("drain reason %q, want %q", r.Actions[0].Reason, want)
	}
	if got := strings.Join(k.calls, ", "); got != "drain kt-workers-2, delete-node kt-workers-2" || !k.existedAtDrain[0] {
		t.Errorf("calls %s (machine there at the drain: %v); want the drain while the machine exists, then the Node's delete", got, k.existedAtDrain)
	}
	if slices.Contains(h.names(), "kt-workers-2") {
		t.Error("kt-workers-2 is not deleted")
	}
}

func TestDrainHeldByABudget(t *testing.T) {
	k := &kube{drainErr: fmt.Errorf("drain kt-workers-2: pod apps/db-0: %w for 2m0s: The disruption budget db needs 2 healthy pods and has 2 currently", drain.ErrBudget)}
	h, e := scaledDown(t, k)
	r := h.pass(t, e)
	if got := ops(r); got != "hold kt-workers-2" {
		t.Fatalf("actions: %s, want the delete held", got)
	}
	if r.Err() != nil {
		t.Errorf("a budget holding a delete is no error of the pass: %v", r.Err())
	}
	last := r.Plan.Blocked[len(r.Plan.Blocked)-1]
	if last.Machine != "kt-workers-2" || !strings.Contains(last.Reason, "delete kt-workers-2 held: drain kt-workers-2: pod apps/db-0: eviction refused by a PodDisruptionBudget") {
		t.Errorf("the plan says %+v, want why kt-workers-2 is held", last)
	}
	if !slices.Contains(h.names(), "kt-workers-2") {
		t.Fatal("kt-workers-2 was deleted although its drain did not finish")
	}

	k.drainErr = nil
	if got := ops(h.pass(t, e)); got != "drain kt-workers-2, delete kt-workers-2, delete-node kt-workers-2" {
		t.Fatalf("the next pass: %s, want the drain and delete", got)
	}
}

func TestDrainFailureIsAnError(t *testing.T) {
	k := &kube{drainErr: errors.New("drain kt-workers-2: cordon: nodes \"kt-workers-2\" is forbidden")}
	h, e := scaledDown(t, k)
	r, err := e.Pass(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := ops(r); got != "hold kt-workers-2" || r.Err() == nil || !strings.Contains(r.Err().Error(), "forbidden") {
		t.Fatalf("actions %s, error %v; want the delete held with the drain's error", got, r.Err())
	}
	if !slices.Contains(h.names(), "kt-workers-2") {
		t.Fatal("kt-workers-2 was deleted although its drain failed")
	}
}

func TestNoDrainWithoutANode(t *testing.T) {
	k := &kube{}
	h, e := scaledDown(t, k)
	// kt-workers-2 (up before) has no Node now: there is nothing to drain.
	k.noNode = []string{"kt-workers-2"}
	if got := ops(h.pass(t, e)); got != "delete kt-workers-2" || len(k.calls) != 0 {
		t.Fatalf("actions %s, calls %v; want the delete alone", got, k.calls)
	}
}

func TestUnreachableAPIDeletesWithoutDraining(t *testing.T) {
	k := &kube{}
	h, e := scaledDown(t, k)
	k.down = errors.New("dial tcp 10.0.0.10:6443: connect: connection refused")
	r := h.pass(t, e)
	if got := ops(r); got != "delete kt-workers-2" || len(k.calls) != 0 {
		t.Fatalf("actions %s, calls %v; want the delete without a drain", got, k.calls)
	}
	if !strings.Contains(r.Actions[0].Reason, "not drained: the cluster's API did not answer") {
		t.Errorf("reason %q does not say the machine went undrained", r.Actions[0].Reason)
	}
}

func TestApprove(t *testing.T) {
	h := newHarness()
	e := h.executor(desired(2), reconcile.Policy{})
	var seen []reconcile.Plan
	e.Approve = func(_ context.Context, p reconcile.Plan) error {
		seen = append(seen, p)
		return errors.New("the user said no")
	}
	r, err := e.Pass(t.Context())
	if !errors.Is(err, converge.ErrNotApproved) || !strings.Contains(err.Error(), "the user said no") {
		t.Fatalf("Pass: %v, want ErrNotApproved with the reason", err)
	}
	if len(seen) != 1 || len(r.Plan.Creates) != 3 || len(r.Actions) != 0 || len(h.names()) != 0 || h.store.data != nil {
		t.Fatalf("refused: approvals %d, plan %+v, actions %v, machines %v, memory %s; want the plan and nothing done or stored",
			len(seen), r.Plan, r.Actions, h.names(), h.store.data)
	}

	e.Approve = func(context.Context, reconcile.Plan) error { return nil }
	if r := h.pass(t, e); len(r.Actions) != 3 {
		t.Fatalf("approved: %s", ops(r))
	}
	e.Approve = func(context.Context, reconcile.Plan) error {
		t.Error("Approve was asked about a plan that does nothing")
		return nil
	}
	h.pass(t, e)
}

func TestPlanActsOnNothing(t *testing.T) {
	h := newHarness()
	e := h.executor(desired(2), reconcile.Policy{})
	k := &kube{mem: h.mem}
	e.Nodes = k
	r, err := e.Plan(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Plan.Creates) != 3 || len(r.Actions) != 0 || len(h.names()) != 0 || h.store.data != nil || len(k.calls) != 0 {
		t.Fatalf("Plan: %+v, actions %v, machines %v, memory %s, calls %v; want a plan and nothing done", r.Plan, r.Actions, h.names(), h.store.data, k.calls)
	}
}

// Once the API answers, a new machine is ready only with a Ready Node, never on its probes alone;
// while it does not answer, RequireNodes says whether the probes may stand in for the Node, and
// without a probe nothing does.
func TestRequireNodes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		require  bool
		apiDown  bool
		noProbe  bool
		readyNow bool // ready with its probes passing and no Node
	}{
		{name: "API answers, RequireNodes", require: true},
		{name: "API answers", require: false},
		{name: "API down, RequireNodes", require: true, apiDown: true},
		{name: "API down: the probes stand in", require: false, apiDown: true, readyNow: true},
		{name: "API down, no probe: nothing stands in", require: false, apiDown: true, noProbe: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &kube{noNode: []string{"kt-workers-0"}}
			if tc.apiDown {
				k.down = errors.New("connection refused")
			}
			h := newHarness()
			k.mem = h.mem
			e := h.executor(desired(1), reconcile.Policy{})
			e.Nodes, e.RequireNodes = k, tc.require
			if tc.noProbe {
				e.Prober = nil
			}
			h.pass(t, e)
			if r := h.pass(t, e); r.Converged(desired(1)) != tc.readyNow {
				t.Fatalf("converged %v with no Node for kt-workers-0, want %v: %s", !tc.readyNow, tc.readyNow, ops(r))
			}
			k.noNode, k.down = nil, nil
			if r := h.pass(t, e); !r.Converged(desired(1)) {
				t.Fatalf("not converged with kt-workers-0's Node Ready: %s", ops(r))
			}
		})
	}
}

// With ControlPlaneFirst the workers are created only once the control plane's Node is Ready: its
// SSH answering is not enough, whether or not the API answers.
func TestControlPlaneFirst(t *testing.T) {
	k := &kube{down: errors.New("connection refused")}
	h := newHarness()
	k.mem = h.mem
	e := h.executor(desired(2), reconcile.Policy{ControlPlaneFirst: true})
	e.Nodes = k
	workers := func() int {
		n := 0
		for _, m := range h.mem.Machines() {
			if m.Pool == "workers" {
				n++
			}
		}
		return n
	}
	for range 3 {
		r := h.pass(t, e)
		if n := workers(); n != 0 {
			t.Fatalf("%d workers created while the control plane's API is down: %s", n, ops(r))
		}
	}
	k.down, k.noNode = nil, []string{"kt-control-plane-0"}
	if r := h.pass(t, e); workers() != 0 {
		t.Fatalf("workers created before the control plane's Node is Ready: %s", ops(r))
	}
	k.noNode = nil
	h.pass(t, e) // the control plane is up: the workers are created
	if n := workers(); n != 2 {
		t.Fatalf("%d workers once the control plane's Node is Ready, want 2", n)
	}
	if r := h.pass(t, e); !r.Converged(desired(2)) {
		t.Fatalf("not converged: %s", ops(r))
	}
}

// A Node whose machine is gone (deleted while the API did not answer) is deleted in the first pass in
// which the API answers, if it is not Ready; Ready ones and other clusters' are left alone.
func TestOrphanNodesDeleted(t *testing.T) {
	k := &kube{stale: map[string]bool{"kt-workers-7": false, "kt-workers-8": true, "other-workers-0": false}}
	h := newHarness()
	k.mem = h.mem
	e := h.executor(desired(1), reconcile.Policy{})
	e.Nodes = k
	k.down = errors.New("connection refused")
	h.pass(t, e)
	if len(k.calls) != 0 {
		t.Fatalf("calls with the API down: %v", k.calls)
	}
	k.down = nil
	r := h.pass(t, e)
	if got, want := strings.Join(k.calls, ", "), "delete-node kt-workers-7"; got != want {
		t.Fatalf("calls %q, want %q (actions: %s)", got, want, ops(r))
	}
	if !strings.Contains(ops(r), "delete-node kt-workers-7") {
		t.Errorf("actions %s lack the orphan's delete-node", ops(r))
	}
	h.pass(t, e)
	if len(k.calls) != 1 {
		t.Errorf("calls after the orphan went: %v", k.calls)
	}
}
