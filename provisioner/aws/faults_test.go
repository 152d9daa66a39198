package aws

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/aws/awstest"
)

// liveByName counts the fake's live instances per name.
func liveByName(f *awstest.Server) map[string]int {
	out := map[string]int{}
	for _, in := range f.Instances() {
		if in.State != "terminated" && in.State != "shutting-down" {
			out[in.Tags[TagName]]++
		}
	}
	return out
}

func TestThrottlingAndErrorsConverge(t *testing.T) {
	f := startFake(t)
	const qps, burst = 40, 4
	newP := func() *Provider {
		return newProvider(t, f, func(o *Options) {
			o.QPS, o.Burst = qps, burst
			o.MaxAttempts = 12
			o.RetryBaseDelay, o.MaxBackoff = 5*time.Millisecond, 100*time.Millisecond
		})
	}
	f.SetFaults(awstest.Faults{ErrorRate: 0.3})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ign := []byte(`{"ignition":{"version":"3.5.0"}}`)
	specs := []provisioner.MachineSpec{controlPlaneSpec("demo", 0, ign), controlPlaneSpec("demo", 1, ign)}
	for i := range 4 {
		specs = append(specs, workerSpec("demo", i, ign))
	}
	// Each round's provider has its own cap: the rate is checked within a round.
	var rounds [][2]int
	for round := range 2 {
		start := len(f.Requests())
		p := newP() // the second round is a restarted controller doing it all again
		if _, err := p.EnsureNetwork(ctx, netSpec(t, testCluster("demo"))); err != nil {
			t.Fatalf("round %d: EnsureNetwork: %v", round, err)
		}
		var wg sync.WaitGroup
		for _, s := range specs {
			wg.Go(func() {
				if _, err := p.Create(ctx, s); err != nil {
					t.Errorf("round %d: Create(%s): %v", round, s.Name, err)
				}
			})
		}
		wg.Wait()
		ms, err := p.List(ctx, "demo")
		if err != nil {
			t.Fatalf("round %d: List: %v", round, err)
		}
		if len(ms) != len(specs) {
			t.Errorf("round %d: List = %d machines, want %d", round, len(ms), len(specs))
		}
		rounds = append(rounds, [2]int{start, len(f.Requests())})
	}
	f.SetFaults(awstest.Faults{})
	for name, n := range liveByName(f) {
		if n != 1 {
			t.Errorf("%d instances named %s", n, name)
		}
	}
	if got := len(liveByName(f)); got != len(specs) {
		t.Errorf("%d machines, want %d", got, len(specs))
	}

	reqs := f.Requests()
	failed := 0
	for _, r := range reqs {
		if r.Code != "" {
			failed++
		}
	}
	if failed < len(reqs)/10 {
		t.Fatalf("only %d of %d requests failed: the fault injection did not work", failed, len(reqs))
	}
	// A token bucket of rate r and depth b lets at most b + r*w requests through in any window w;
	// one more for a request on each edge of the window.
	const window = time.Second
	limit := burst + int(qps*window.Seconds()) + 2
	maxSeen := 0
	for _, r := range rounds {
		in := reqs[r[0]:r[1]]
		for i := range in {
			n := 0
			for j := i; j < len(in) && in[j].Time.Sub(in[i].Time) < window; j++ {
				n++
			}
			maxSeen = max(maxSeen, n)
		}
	}
	if maxSeen > limit {
		t.Errorf("the fake saw %d requests within %v, more than the cap allows (%d)", maxSeen, window, limit)
	}
	t.Logf("%d requests, %d failed with 503 or throttling, at most %d in any %v (cap %d)", len(reqs), failed, maxSeen, window, limit)
}

func TestNewInstancesMissingFromDescribe(t *testing.T) {
	f := startFake(t)
	ensureNetwork(t, newProvider(t, f), "demo")
	f.SetFaults(awstest.Faults{HideNewInstances: 3})
	ctx := t.Context()
	ign := []byte(`{"ignition":{"version":"3.5.0"}}`)
	for _, spec := range []provisioner.MachineSpec{workerSpec("demo", 0, ign), controlPlaneSpec("demo", 0, ign)} {
		p := newProvider(t, f)
		first, err := p.Create(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := p.List(ctx, "demo")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Name == spec.Name {
				t.Fatalf("%s is listed right away: the fault is not injected", spec.Name)
			}
		}
		// The machine looks missing, so a controller creates it again.
		again, err := newProvider(t, f).Create(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if again.Name != first.Name {
			t.Errorf("second Create returned %s", again.Name)
		}
	}
	for name, n := range liveByName(f) {
		if n != 1 {
			t.Errorf("%d instances named %s", n, name)
		}
	}
}

func TestCrashRightAfterRunInstances(t *testing.T) {
	f := startFake(t)
	ensureNetwork(t, newProvider(t, f), "demo")
	ign := []byte(`{"ignition":{"version":"3.5.0"}}`)
	for _, spec := range []provisioner.MachineSpec{workerSpec("demo", 0, ign), controlPlaneSpec("demo", 0, ign)} {
		t.Run(spec.Role, func(t *testing.T) {
			ctx, crash := context.WithCancel(t.Context())
			var made []string
			f.SetFaults(awstest.Faults{AfterRunInstances: func(ids []string) error {
				made = ids
				crash() // the controller dies before it hears back
				return errors.New("crashed")
			}})
			if _, err := newProvider(t, f).Create(ctx, spec); err == nil {
				t.Fatal("Create returned no error though its controller crashed")
			}
			f.SetFaults(awstest.Faults{})
			if len(made) != 1 {
				t.Fatalf("RunInstances made %v before the crash", made)
			}
			if _, err := newProvider(t, f).Create(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
			if in := instanceNamed(t, f, spec.Name); in.ID != made[0] {
				t.Errorf("after the crash, %s is instance %s, want %s, the one made before the crash", spec.Name, in.ID, made[0])
			}
		})
	}
}
