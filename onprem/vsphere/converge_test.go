package vsphere

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
	"github.com/kiln-dev/kiln/sshexec/sshexectest"
)

// The converge executor driving this provider on the simulator: the healing promises of
// provisioner/reconcile, kept against vCenter's own inventory.

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// convergeRig is a simulator, a store, a clock and the cluster's Nodes (Ready for every VM powered
// on, read through a vCenter session of their own) that executors share, as controllers restarted on
// one state store do.
type convergeRig struct {
	h       *sim
	store   *providertest.Store
	clock   *testClock
	nodes   *providertest.Nodes
	desired reconcile.Desired
	policy  reconcile.Policy
}

func newConvergeRig(t *testing.T, workers int, policy reconcile.Policy) *convergeRig {
	h := newSim(t, "vpx")
	return &convergeRig{
		h:     h,
		nodes: &providertest.Nodes{Provider: h.newProvider(t), Cluster: "cv"},
		store: &providertest.Store{},
		// Machines are created at the simulator's real time; the executor's clock starts there.
		clock: &testClock{t: time.Now()},
		desired: reconcile.Desired{Cluster: "cv", Groups: []reconcile.Group{
			{Pool: provisioner.ControlPlanePool, Role: v1alpha1.RoleControlPlane, Count: 1, Image: h.template},
			{Pool: "workers", Role: v1alpha1.RoleWorker, Count: workers, Image: h.template, MaxUnavailable: 1},
		}},
		policy: policy,
	}
}

// executor is a controller with a provider (a vCenter session) of its own, reading the rig's Nodes.
func (r *convergeRig) executor(t *testing.T, p *Provider) *converge.Executor {
	if p == nil {
		p = r.h.newProvider(t)
	}
	return &converge.Executor{
		Provider: p,
		Desired:  r.desired,
		Policy:   r.policy,
		Store:    r.store,
		Now:      r.clock.now,
		Nodes:    r.nodes,
		Ignition: func(context.Context, reconcile.Create) ([]byte, error) {
			return []byte(`{"ignition":{"version":"3.5.0"}}`), nil
		},
	}
}

func (r *convergeRig) pass(t *testing.T, e *converge.Executor) converge.Report {
	t.Helper()
	rep, err := e.Pass(t.Context())
	if err == nil {
		err = rep.Err()
	}
	if err != nil {
		t.Fatalf("Pass: %v", err)
	}
	return rep
}

// converge runs passes, a minute apart, until the cluster is as desired.
func (r *convergeRig) converge(t *testing.T, e *converge.Executor) {
	t.Helper()
	for range 10 {
		rep := r.pass(t, e)
		for _, a := range rep.Actions {
			t.Logf("%s %s: %s", a.Op, a.Machine, a.Reason)
		}
		if rep.Converged(r.desired) {
			return
		}
		r.clock.advance(time.Minute)
	}
	t.Fatalf("not converged after 10 passes: %v", r.inventory(t))
}

// inventory is every VM in the machines' folder with its power state, read through the test's own
// session and not through the provider: "cv-workers-0=poweredOn".
func (r *convergeRig) inventory(t *testing.T) []string {
	t.Helper()
	vms, err := r.h.finder.VirtualMachineList(t.Context(), "/DC0/vm/kiln/*")
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}
	var out []string
	for _, vm := range vms {
		st, err := vm.PowerState(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, vm.Name()+"="+string(st))
	}
	slices.Sort(out)
	return out
}

func (r *convergeRig) powerOff(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		vm := object.NewVirtualMachine(r.h.admin, r.h.vm(t, n, "name").Self)
		wait(t, "power off "+n, func() (*object.Task, error) { return vm.PowerOff(t.Context()) })
	}
}

func expectInventory(t *testing.T, got []string, want ...string) {
	t.Helper()
	for i := range want {
		want[i] += "=poweredOn"
	}
	if !slices.Equal(got, want) {
		t.Fatalf("VMs in the folder = %v, want %v", got, want)
	}
}

func TestConvergeHoldsBackWhenTooManyAreUnhealthy(t *testing.T) {
	r := newConvergeRig(t, 5, reconcile.Policy{MaxUnhealthy: "40%"})
	e := r.executor(t, nil)
	r.converge(t, e)
	// 3 of 5 workers (60%) go down at once: a partition or a host failure, not a reason to replace
	// the pool.
	r.powerOff(t, "cv-workers-0", "cv-workers-1", "cv-workers-2")
	before := r.inventory(t)
	for range 3 {
		r.clock.advance(time.Minute)
		rep := r.pass(t, e)
		if len(rep.Actions) != 0 {
			t.Fatalf("actions %+v, want none", rep.Actions)
		}
		if len(rep.Plan.Blocked) == 0 || !strings.Contains(rep.Plan.Blocked[0].Reason, "unhealthy") {
			t.Fatalf("the plan does not say why it holds back: %+v", rep.Plan.Blocked)
		}
	}
	if after := r.inventory(t); !slices.Equal(before, after) {
		t.Fatalf("VMs changed from %v to %v", before, after)
	}
}

func TestConvergeReplacesAPoweredOffVM(t *testing.T) {
	r := newConvergeRig(t, 3, reconcile.Policy{})
	e := r.executor(t, nil)
	r.converge(t, e)
	r.powerOff(t, "cv-workers-1")
	r.clock.advance(time.Minute)
	rep := r.pass(t, e)
	if len(rep.Actions) != 1 || rep.Actions[0].Op != "create" || rep.Actions[0].Machine != "cv-workers-3" {
		t.Fatalf("actions %+v, want the create of cv-workers-3", rep.Actions)
	}
	r.converge(t, e)
	expectInventory(t, r.inventory(t), "cv-control-plane-0", "cv-workers-0", "cv-workers-2", "cv-workers-3")
}

// interruptClone lets the clone request reach vCenter, then kills the controller (cancels its
// context) before it sees the result: the worst moment, when a VM exists that nobody recorded.
type interruptClone struct {
	rt     soap.RoundTripper
	kill   context.CancelFunc
	once   sync.Once
	task   chan types.ManagedObjectReference
	killed bool
}

func (i *interruptClone) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	if _, ok := req.(*methods.CloneVM_TaskBody); ok && !i.killed {
		i.killed = true
		err := i.rt.RoundTrip(context.WithoutCancel(ctx), req, res)
		if err == nil {
			i.task <- res.(*methods.CloneVM_TaskBody).Res.Returnval
		}
		close(i.task)
		i.kill()
		return context.Canceled
	}
	return i.rt.RoundTrip(ctx, req, res)
}

func TestConvergeAfterAnInterruptedReplacement(t *testing.T) {
	r := newConvergeRig(t, 2, reconcile.Policy{})
	r.converge(t, r.executor(t, nil))
	r.powerOff(t, "cv-workers-0")
	r.clock.advance(time.Minute)

	p := r.h.newProvider(t)
	ctx, kill := context.WithCancel(t.Context())
	defer kill()
	ic := &interruptClone{rt: p.client.RoundTripper, kill: kill, task: make(chan types.ManagedObjectReference, 1)}
	p.client.RoundTripper = ic
	rep, err := r.executor(t, p).Pass(ctx)
	if err != nil || rep.Err() == nil {
		t.Fatalf("interrupted pass: %v, actions %+v; want a create failing on the cancelled context", err, rep.Actions)
	}
	ref, ok := <-ic.task
	if !ok {
		t.Fatal("the interrupted pass never started a clone")
	}
	if err := object.NewTask(r.h.admin, ref).Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The replacement exists on vCenter, unrecorded, powered on by its clone task.
	expectInventoryHas(t, r.inventory(t), "cv-workers-2=poweredOn")

	// A new controller on the same store.
	r.converge(t, r.executor(t, nil))
	got := r.inventory(t)
	t.Logf("converged after the interruption: %v", got)
	if len(got) != 3 {
		t.Fatalf("VMs in the folder = %v, want the control plane and 2 workers", got)
	}
	for _, vm := range got {
		if !strings.HasSuffix(vm, "=poweredOn") || vm == "cv-workers-0=poweredOn" {
			t.Fatalf("VMs in the folder = %v, want 3 running machines, the failed one gone", got)
		}
	}
}

func expectInventoryHas(t *testing.T, got []string, want string) {
	t.Helper()
	if !slices.Contains(got, want) {
		t.Fatalf("VMs in the folder = %v, want %s among them", got, want)
	}
}

// TestJoinedOnlyOnceTheNodeAnswered is the 4-node cluster with a slow first boot: the VMs are
// cloned and powered on, and for many passes nothing of them answers. None is ready, Joined is not
// called and guestinfo keeps every config; once the nodes answer (their Nodes Ready, or their SSH
// servers proving their pinned host keys), Joined clears guestinfo, and the cluster has converged.
func TestJoinedOnlyOnceTheNodeAnswered(t *testing.T) {
	for _, tc := range []struct {
		name string
		// slowBoot wires the executor so that nothing answers yet, and returns what makes the nodes
		// answer.
		slowBoot func(t *testing.T, r *convergeRig, e *converge.Executor) (answer func())
	}{
		{
			name: "their Nodes become Ready",
			slowBoot: func(_ *testing.T, r *convergeRig, _ *converge.Executor) func() {
				r.nodes.Slow.Store(true)
				return func() { r.nodes.Slow.Store(false) }
			},
		},
		{
			name: "their SSH servers prove their pinned host keys, before any API",
			slowBoot: func(t *testing.T, _ *convergeRig, e *converge.Executor) func() {
				hostKey := sshexectest.NewKey(t)
				sshd := sshexectest.Start(t, sshexectest.Config{HostKeys: []ssh.Signer{hostKey}})
				var booted atomic.Bool
				e.Nodes = nil
				e.Prober = converge.TCPProber{
					Endpoint: func(provisioner.Machine, int) string {
						if booted.Load() {
							return sshd.Addr
						}
						return ""
					},
					HostKeys: func(context.Context, provisioner.Machine) ([]ssh.PublicKey, error) {
						return []ssh.PublicKey{hostKey.PublicKey()}, nil
					},
				}
				return func() { booted.Store(true) }
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newConvergeRig(t, 3, reconcile.Policy{})
			e := r.executor(t, nil)
			answer := tc.slowBoot(t, r, e)
			names := []string{"cv-control-plane-0", "cv-workers-0", "cv-workers-1", "cv-workers-2"}
			rep := r.pass(t, e)
			if len(rep.Actions) != 4 {
				t.Fatalf("first pass: %+v, want the 4 clones", rep.Actions)
			}
			for range 5 {
				r.clock.advance(time.Minute)
				rep = r.pass(t, e)
				for _, a := range rep.Actions {
					t.Fatalf("%s %s (%s) before any node answered", a.Op, a.Machine, a.Reason)
				}
				for name, v := range rep.Verdicts {
					if v.Ready {
						t.Fatalf("%s is ready before it answered: %+v", name, v)
					}
				}
				if rep.Converged(r.desired) {
					t.Fatal("converged before any node answered")
				}
			}
			expectInventory(t, r.inventory(t), slices.Clone(names)...)
			for _, name := range names {
				if guestinfo(t, r, name) == "" {
					t.Fatalf("%s's guestinfo lost its config before the node answered", name)
				}
			}

			answer()
			r.clock.advance(time.Minute)
			rep = r.pass(t, e)
			var joined []string
			for _, a := range rep.Actions {
				if a.Op == "joined" {
					joined = append(joined, a.Machine)
				}
			}
			slices.Sort(joined)
			if !slices.Equal(joined, names) || !rep.Converged(r.desired) {
				t.Fatalf("once the nodes answered: joined %v, converged %v; want every machine joined", joined, rep.Converged(r.desired))
			}
			for _, name := range names {
				if got := guestinfo(t, r, name); got != "" {
					t.Errorf("%s's guestinfo still holds its config (%d bytes) after Joined", name, len(got))
				}
			}
		})
	}
}

// guestinfo is the Ignition config in the guestinfo of VM name, read through the test's own session;
// "" when there is none.
func guestinfo(t *testing.T, r *convergeRig, name string) string {
	t.Helper()
	return extraConfigMap(r.h.vm(t, name, "config.extraConfig").Config.ExtraConfig)[KeyIgnitionData]
}
