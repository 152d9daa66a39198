package reconcile

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/internal/golden"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/health"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// renderCases are plans of the kinds an operator meets, each rendered to testdata/plan/<name>.txt
// and .json.
func renderCases() []struct {
	name string
	plan Plan
} {
	w := func(i int) string { return name("workers", i) }
	before := t0.Add(-time.Minute)

	// A pool renamed from workers to worker, whose new machines are up: the first old one goes.
	renamed := Decide(cluster("img-1", "worker", 3, 1),
		running(cp, 1, "cp-1").and(running("workers", 3, "img-1")).and(running("worker", 3, "img-1")).ms,
		running(cp, 1, "cp-1").and(running("workers", 3, "img-1")).and(running("worker", 3, "img-1")).vs,
		RemediationState{}, t0, Policy{})

	// A failed machine replaced, another's replacement up, a kept machine running again, and a pool
	// too unhealthy to touch.
	mixed := func() Plan {
		d := Desired{Cluster: "prod", Groups: []Group{
			{Pool: cp, Role: v1alpha1.RoleControlPlane, Count: 1, Image: "cp-1"},
			{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 4, Image: "img-1", MaxUnavailable: 1},
			{Pool: "gpu", Role: v1alpha1.RoleWorker, Count: 3, Image: "img-1", MaxUnavailable: 1},
		}}
		s := running(cp, 1, "cp-1").and(running("workers", 4, "img-1")).and(running("gpu", 3, "img-1")).
			add(mach("workers", 4, "img-1", provisioner.StateRunning), up).
			add(mach("workers", 9, "img-1", provisioner.StateRunning), up).
			set(w(1), failed, w(2), failed, name("gpu", 0), failed, name("gpu", 1), failed, name("gpu", 2), failed)
		st := RemediationState{
			InFlight: []Replacement{{Old: w(1), New: w(4), Pool: "workers", Reason: failed.Reason, Started: before}},
			Attempts: map[string][]time.Time{w(1): {before}},
			Kept:     []string{w(9)},
		}
		return Decide(d, s.ms, s.vs, st, t0, Policy{MaxInFlight: 2, MaxUnhealthy: "2"})
	}()

	// Workers scaled from 4 to 1 while a machine is starting: it goes first.
	scaled := Decide(cluster("img-1", "workers", 1, 1),
		running(cp, 1, "cp-1").and(running("workers", 4, "img-1")).set(w(1), starting).ms,
		running(cp, 1, "cp-1").and(running("workers", 4, "img-1")).set(w(1), starting).vs,
		RemediationState{}, t0, Policy{})

	return []struct {
		name string
		plan Plan
	}{
		{name: "empty", plan: Plan{}},
		{name: "renamed", plan: renamed},
		{name: "mixed", plan: mixed},
		{name: "scaled-down", plan: scaled},
		{name: "control-characters", plan: Plan{Blocked: []Block{{Pool: "workers", Machine: "w\t1", Reason: "two\nlines"}}}},
	}
}

func TestWritePlan(t *testing.T) {
	for _, tc := range renderCases() {
		t.Run(tc.name, func(t *testing.T) {
			var text, js bytes.Buffer
			if err := tc.plan.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if err := tc.plan.WriteJSON(&js, "prod"); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, *update, "plan/"+tc.name+".txt", text.Bytes())
			golden.Check(t, *update, "plan/"+tc.name+".json", js.Bytes())

			if n, lines := len(tc.plan.Actions()), strings.Count(text.String(), "\n"); lines != n+1 {
				t.Errorf("the text form has %d lines, want one per action (%d) and the summary", lines, n)
			}
			var doc Document
			dec := json.NewDecoder(&js)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&doc); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.plan.Document("prod"), doc); diff != "" {
				t.Errorf("the JSON form does not read back (-want +got):\n%s", diff)
			}
			if doc.APIVersion != "kiln.dev/v1alpha1" || doc.Kind != "Plan" || doc.Actions == nil {
				t.Errorf("document %s/%s with actions %v: want kiln.dev/v1alpha1 Plan and a list, empty or not", doc.APIVersion, doc.Kind, doc.Actions)
			}
		})
	}
}

func TestNeedConfirmation(t *testing.T) {
	p := Plan{Deletes: []Delete{
		{Name: "a", Healthy: true, Surplus: true}, // scale-down of a healthy machine: ask
		{Name: "b", Surplus: true},                // a failed surplus machine: no
		{Name: "c", Healthy: true},                // replaced, the replacement is up: no
		{Name: "d", Reason: "replacement failed"}, // no
	}}
	got := p.NeedConfirmation()
	if len(got) != 1 || got[0].Name != "a" {
		t.Errorf("NeedConfirmation = %+v, want only a", got)
	}
	if !p.Document("prod").NeedsConfirmation {
		t.Error("the document does not say the plan needs confirmation")
	}
	if (Plan{Deletes: p.Deletes[1:]}).Document("prod").NeedsConfirmation {
		t.Error("a plan without healthy surplus deletes needs confirmation")
	}
}

func ExamplePlan_WriteText() {
	d := Desired{Cluster: "prod", Groups: []Group{{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 1, Image: "img-1", MaxUnavailable: 1}}}
	var observed []provisioner.Machine
	verdicts := map[string]health.Verdict{}
	for i := range 3 {
		m := provisioner.Machine{Name: provisioner.MachineName("prod", "workers", i), Cluster: "prod", Pool: "workers", Image: "img-1", State: provisioner.StateRunning}
		observed = append(observed, m)
		verdicts[m.Name] = health.Verdict{Healthy: true, Ready: true, Reason: "up"}
	}
	p := Decide(d, observed, verdicts, RemediationState{}, t0, Policy{})
	_ = p.WriteText(os.Stdout)
	// Output:
	// delete  prod-workers-2  workers  healthy, asks first: pool workers has 3 of 1 machines
	// hold    prod-workers-1  workers  prod-workers-1 waits: 1 healthy machine of pool workers already goes by this pass, at most 1 per pass (maxUnavailable 1): pool workers has 3 of 1 machines
	// plan: 1 to delete (1 healthy without a replacement: confirm), 1 held back
}
