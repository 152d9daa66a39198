package aws

import (
	"context"
	"slices"
	"testing"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
)

// TestJoinedOnlyOnceTheNodeAnswered drives the provider with the converge executor through a slow
// first boot: the instances run, and nothing of them answers, first because the cluster's API
// cannot be read, then because their Nodes are not registered yet. All that while the control
// plane's bootstrap object stays in S3 and the control plane stays out of the API load balancer;
// once the Nodes are Ready, Joined deletes the object and registers the control plane.
func TestJoinedOnlyOnceTheNodeAnswered(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ensureNetwork(t, p, "demo")
	r := renderDemo(t)
	cp, worker := provisioner.MachineName("demo", provisioner.ControlPlanePool, 0), provisioner.MachineName("demo", "workers", 0)
	d := reconcile.Desired{Cluster: "demo", Groups: []reconcile.Group{
		{Pool: provisioner.ControlPlanePool, Role: v1alpha1.RoleControlPlane, Count: 1, Image: testImage},
		{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 1, Image: testImage, MaxUnavailable: 1},
	}}
	// The kubelets read the instances through a provider of their own.
	nodes := &providertest.Nodes{Provider: newProvider(t, f), Cluster: "demo"}
	nodes.Slow.Store(true)
	e := &converge.Executor{Provider: p, Desired: d, Store: &providertest.Store{},
		Ignition: func(_ context.Context, c reconcile.Create) ([]byte, error) {
			if c.Role == v1alpha1.RoleControlPlane {
				return r.controlPlane, nil
			}
			return r.worker, nil
		}}
	pass := func(t *testing.T) converge.Report {
		t.Helper()
		rep, err := e.Pass(t.Context())
		if err == nil {
			err = rep.Err()
		}
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	waiting := func(t *testing.T) {
		t.Helper()
		for range 3 {
			rep := pass(t)
			for _, a := range rep.Actions {
				t.Fatalf("%s %s (%s) before the nodes answered", a.Op, a.Machine, a.Reason)
			}
			if rep.Verdicts[cp].Ready || rep.Verdicts[worker].Ready || rep.Converged(d) {
				t.Fatalf("ready before the nodes answered: %+v", rep.Verdicts)
			}
		}
		if in := instanceNamed(t, f, cp); in.State != "running" {
			t.Fatalf("%s is %s, want running", cp, in.State)
		}
		if _, ok := f.Objects(testBucket)[p.ObjectKey(cp)]; !ok {
			t.Fatal("the control plane's bootstrap object is gone before its node answered")
		}
		if targets := f.Targets(shortName("demo", "api")); len(targets) != 0 {
			t.Fatalf("API targets %v before the control plane answered, want none", targets)
		}
	}

	if rep := pass(t); len(rep.Actions) != 2 {
		t.Fatalf("first pass: %+v, want the 2 creates", rep.Actions)
	}
	t.Run("the cluster's API cannot be read", func(t *testing.T) {
		waiting(t)
		if rep := pass(t); !rep.Unheard {
			t.Error("the report does not say the machines cannot be heard")
		}
	})
	e.Nodes = nodes
	t.Run("the API answers, the Nodes are not registered", waiting)

	nodes.Slow.Store(false)
	rep := pass(t)
	var joined []string
	for _, a := range rep.Actions {
		if a.Op == "joined" {
			joined = append(joined, a.Machine)
		}
	}
	slices.Sort(joined)
	if !slices.Equal(joined, []string{cp, worker}) || !rep.Converged(d) {
		t.Fatalf("once the Nodes are Ready: joined %v, converged %v; want both joined", joined, rep.Converged(d))
	}
	if objs := f.Objects(testBucket); len(objs) != 0 {
		t.Errorf("bootstrap objects left after the nodes answered: %v", objs)
	}
	if targets, want := f.Targets(shortName("demo", "api")), instanceNamed(t, f, cp).ID; len(targets) != 1 || targets[0] != want {
		t.Errorf("API targets %v, want only the control plane %s", targets, want)
	}
}
