package vsphere

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/health"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
)

// readyNodes is a cluster API in which the Nodes it holds are as it says.
type readyNodes map[string]health.Condition

func (n readyNodes) NodeReady(context.Context) (map[string]health.Condition, error) { return n, nil }

// BenchmarkList1000 lists a cluster of 1,000 VMs (in a folder that holds them and nothing else of
// the cluster's) on the simulated vCenter, and reports the round trips of one List.
func BenchmarkList1000(b *testing.B) {
	h := newSim(b, "vpx")
	p := h.newProvider(b)
	h.populate(b, p, "bench", 1000)
	c := count(p)
	ctx := context.Background()
	var trips int64
	for b.Loop() {
		before := c.n.Load()
		ms, err := p.List(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		if len(ms) != 1000 {
			b.Fatalf("List = %d machines, want 1000", len(ms))
		}
		trips = c.n.Load() - before
	}
	b.ReportMetric(float64(trips), "roundtrips/op")
}

// BenchmarkClone100 creates 100 machines (clone, power on), 8 at a time, on the simulated vCenter.
func BenchmarkClone100(b *testing.B) {
	h := newSim(b, "vpx")
	p := h.newProvider(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		if err := createAll(ctx, p, h, "c"+strconv.Itoa(i), 0, 100, 8); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(i*100), "ms/machine")
}

// BenchmarkReconcilePass1000 is one converge pass (list, judge, decide, remember; nothing to do) over
// a cluster of 1,000 VMs on the simulated vCenter, with the vCenter round trips it takes.
func BenchmarkReconcilePass1000(b *testing.B) {
	h := newSim(b, "vpx")
	p := h.newProvider(b)
	h.populate(b, p, "bench", 1000)
	// Every machine's Node is Ready: what a real pass reads of the API in one list call, here at no
	// cost, so that the figure is the provider's and the executor's.
	ms, err := p.List(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	nodes := readyNodes{}
	for _, m := range ms {
		nodes[m.Name] = health.Condition{Known: true, Ready: true}
	}
	c := count(p)
	e := &converge.Executor{
		Provider: p,
		Desired: reconcile.Desired{Cluster: "bench", Groups: []reconcile.Group{
			{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 1000, Image: h.template, MaxUnavailable: 1},
		}},
		Store:    &providertest.Store{},
		Nodes:    nodes,
		Ignition: func(context.Context, reconcile.Create) ([]byte, error) { return nil, errors.New("nothing to create") },
	}
	ctx := context.Background()
	// The first pass tells the provider that the machines joined (it clears their guestinfo).
	if _, err := e.Pass(ctx); err != nil {
		b.Fatal(err)
	}
	var trips int64
	for b.Loop() {
		before := c.n.Load()
		r, err := e.Pass(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Actions) != 0 || !r.Converged(e.Desired) {
			b.Fatalf("pass over a converged cluster: %d actions", len(r.Actions))
		}
		trips = c.n.Load() - before
	}
	b.ReportMetric(float64(trips), "roundtrips/op")
}

// BenchmarkFailureToReplacement is the time from a VM failing (powered off behind kiln's back) to its
// replacement having been created by an executor that runs a pass every 100 ms.
func BenchmarkFailureToReplacement(b *testing.B) {
	h := newSim(b, "vpx")
	p := h.newProvider(b)
	e := &converge.Executor{
		Provider: p,
		Desired: reconcile.Desired{Cluster: "heal", Groups: []reconcile.Group{
			{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 3, Image: h.template, MaxUnavailable: 1},
		}},
		Policy: reconcile.Policy{MaxAttempts: 1 << 20},
		Store:  &providertest.Store{},
		Nodes:  &providertest.Nodes{Provider: h.newProvider(b), Cluster: "heal"},
		Ignition: func(context.Context, reconcile.Create) ([]byte, error) {
			return []byte(`{"ignition":{"version":"3.5.0"}}`), nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	created := make(chan string, 16)
	converged := make(chan struct{}, 16)
	go e.Run(ctx, 100*time.Millisecond, func(r converge.Report, err error) {
		for _, a := range r.Actions {
			if a.Op == "create" && a.Err == nil {
				created <- a.Machine
			}
		}
		if err == nil && r.Converged(e.Desired) {
			converged <- struct{}{}
		}
	})
	drain := func() {
		for {
			select {
			case <-created:
			case <-converged:
			default:
				return
			}
		}
	}
	<-converged
	for b.Loop() {
		b.StopTimer()
		drain()
		<-converged
		ms, err := p.List(ctx, "heal")
		if err != nil {
			b.Fatal(err)
		}
		victim := ms[0].Name
		vm := object.NewVirtualMachine(h.admin, h.vm(b, victim, "name").Self)
		drain()
		b.StartTimer()
		task, err := vm.PowerOff(ctx)
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			b.Fatal(err)
		}
		<-created
	}
}
