// Package providertest is the contract every provisioner.Provider keeps, as a test suite that each
// provider's tests run against their own backend (a simulator, a fake API, real VMs):
//
//	func TestContract(t *testing.T) {
//		providertest.Run(t, func(t *testing.T) providertest.Setup {
//			backend := startBackend(t)
//			return providertest.Setup{
//				New:   func() provisioner.Provider { return myprovider.New(backend.Config()) },
//				Image: backend.Image(),
//			}
//		})
//	}
//
// The contract: creating a machine twice makes one machine; a second provider on the same backend (a
// controller restarted after a crash between "create" and "record") makes no duplicate, nor do
// concurrent creates of one name; deleting a machine that does not exist is not an error; List sees
// every machine of its cluster and nothing of any other, even one whose name shares a prefix; a
// cancelled context stops work and makes nothing; Stop, where a provider has it, keeps the machine.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

// Setup is what a provider's test gives the suite for one case; Run asks for a new one per case.
type Setup struct {
	// New returns a provider on the case's backend. The suite calls it once per case, and once more
	// for a second provider that shares the backend but none of the first one's memory, standing for
	// a controller restarted after a crash.
	New func() provisioner.Provider
	// Image every machine is created from.
	Image string
	// Ignition every machine gets; nil gives a minimal Ignition 3.5.0 config.
	Ignition []byte
	// Machines is how many machines the case that creates several makes. Defaults to 3; providers whose
	// machines are expensive (real VMs) may lower it to 2.
	Machines int
	// Timeout bounds each case. Defaults to 5 minutes.
	Timeout time.Duration
}

// minimalIgnition is a valid config that asks for nothing.
const minimalIgnition = `{"ignition":{"version":"3.5.0"}}`

// Run runs the contract suite; newSetup makes a fresh backend for each case (t is the case's test,
// for its t.Cleanup and t.TempDir).
func Run(t *testing.T, newSetup func(t *testing.T) Setup) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, c *suiteCase)
	}{
		{"create twice makes one machine", testCreateIdempotent},
		{"create after a restart makes no duplicate", testCreateAfterRestart},
		{"concurrent creates of one name make one machine", testConcurrentCreate},
		{"delete of a missing machine is not an error", testDeleteMissing},
		{"delete removes the machine and its name is free again", testDeleteRecreate},
		{"list sees only its own cluster", testListOwnCluster},
		{"list sees every machine of the cluster", testListMany},
		{"cancelled context stops work", testCancelled},
		{"stop keeps the machine", testStop},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t)
			if s.New == nil {
				t.Fatal("providertest: Setup.New is nil")
			}
			if s.Ignition == nil {
				s.Ignition = []byte(minimalIgnition)
			}
			if s.Machines <= 0 {
				s.Machines = 3
			}
			if s.Timeout <= 0 {
				s.Timeout = 5 * time.Minute
			}
			ctx, cancel := context.WithTimeout(t.Context(), s.Timeout)
			defer cancel()
			c := &suiteCase{Setup: s, ctx: ctx, p: s.New()}
			t.Cleanup(c.cleanup(t))
			tc.run(t, c)
		})
	}
}

// suiteCase is one case's provider and what it created, deleted when the case ends.
type suiteCase struct {
	Setup
	ctx     context.Context
	p       provisioner.Provider
	mu      sync.Mutex
	created []string
}

func (c *suiteCase) spec(cluster, pool string, ordinal int) provisioner.MachineSpec {
	role := v1alpha1.RoleWorker
	if pool == provisioner.ControlPlanePool {
		role = v1alpha1.RoleControlPlane
	}
	return provisioner.MachineSpec{
		Cluster:  cluster,
		Name:     provisioner.MachineName(cluster, pool, ordinal),
		Role:     role,
		Pool:     pool,
		Image:    c.Image,
		Ignition: c.Ignition,
	}
}

func (c *suiteCase) create(t *testing.T, p provisioner.Provider, spec provisioner.MachineSpec) provisioner.Machine {
	t.Helper()
	c.remember(spec.Name)
	m, err := p.Create(c.ctx, spec)
	if err != nil {
		t.Fatalf("Create(%s): %v", spec.Name, err)
	}
	checkMachine(t, "Create", m, spec)
	return m
}

func (c *suiteCase) remember(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.created, name) {
		c.created = append(c.created, name)
	}
}

func (c *suiteCase) list(t *testing.T, p provisioner.Provider, cluster string) []provisioner.Machine {
	t.Helper()
	ms, err := p.List(c.ctx, cluster)
	if err != nil {
		t.Fatalf("List(%s): %v", cluster, err)
	}
	return ms
}

// cleanup deletes what the case created, with a context of its own so that a cancelled case still
// cleans up.
func (c *suiteCase) cleanup(t *testing.T) func() {
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		p := c.New()
		for _, name := range c.created {
			if err := p.Delete(ctx, name); err != nil {
				t.Errorf("cleanup: Delete(%s): %v", name, err)
			}
		}
	}
}

// checkMachine checks that m is the machine spec asked for, in a state a new machine may be in.
func checkMachine(t *testing.T, op string, m provisioner.Machine, spec provisioner.MachineSpec) {
	t.Helper()
	var bad []string
	for _, f := range []struct{ field, got, want string }{
		{"Name", m.Name, spec.Name},
		{"Cluster", m.Cluster, spec.Cluster},
		{"Role", m.Role, spec.Role},
		{"Pool", m.Pool, spec.Pool},
		{"Image", m.Image, spec.Image},
	} {
		if f.got != f.want {
			bad = append(bad, fmt.Sprintf("%s = %q, want %q", f.field, f.got, f.want))
		}
	}
	if m.State != provisioner.StatePending && m.State != provisioner.StateRunning {
		bad = append(bad, fmt.Sprintf("State = %q, want pending or running", m.State))
	}
	if len(bad) > 0 {
		t.Errorf("%s(%s) gave a machine with %s", op, spec.Name, strings.Join(bad, ", "))
	}
}

// live returns the machines of ms that exist (not StateGone), by name.
func live(ms []provisioner.Machine) map[string][]provisioner.Machine {
	out := map[string][]provisioner.Machine{}
	for _, m := range ms {
		if m.State != provisioner.StateGone {
			out[m.Name] = append(out[m.Name], m)
		}
	}
	return out
}

// expectOne fails unless ms holds exactly one live machine named spec.Name, and it is spec's.
func expectOne(t *testing.T, ms []provisioner.Machine, spec provisioner.MachineSpec) {
	t.Helper()
	got := live(ms)[spec.Name]
	if len(got) != 1 {
		t.Fatalf("List has %d live machines named %s, want 1 (all: %s)", len(got), spec.Name, names(ms))
	}
	checkMachine(t, "List", got[0], spec)
}

func names(ms []provisioner.Machine) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name+"("+string(m.State)+")")
	}
	slices.Sort(s)
	return "[" + strings.Join(s, " ") + "]"
}

func testCreateIdempotent(t *testing.T, c *suiteCase) {
	spec := c.spec("kt", "workers", 0)
	first := c.create(t, c.p, spec)
	second := c.create(t, c.p, spec)
	if first.Name != second.Name {
		t.Errorf("second Create returned %s, want %s", second.Name, first.Name)
	}
	expectOne(t, c.list(t, c.p, "kt"), spec)
}

func testCreateAfterRestart(t *testing.T, c *suiteCase) {
	spec := c.spec("kt", "workers", 0)
	c.create(t, c.p, spec)
	// The controller crashed before recording the machine; a new one knows nothing and creates again.
	restarted := c.New()
	c.create(t, restarted, spec)
	expectOne(t, c.list(t, restarted, "kt"), spec)
	expectOne(t, c.list(t, c.p, "kt"), spec)
}

func testConcurrentCreate(t *testing.T, c *suiteCase) {
	spec := c.spec("kt", "workers", 0)
	c.remember(spec.Name)
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		p := c.p
		if i%2 == 1 {
			p = c.New() // two controllers racing, as well as one controller's goroutines
		}
		wg.Go(func() { _, errs[i] = p.Create(c.ctx, spec) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Create(%s): %v", spec.Name, err)
	}
	expectOne(t, c.list(t, c.p, "kt"), spec)
}

func testDeleteMissing(t *testing.T, c *suiteCase) {
	if err := c.p.Delete(c.ctx, provisioner.MachineName("kt", "workers", 7)); err != nil {
		t.Fatalf("Delete of a machine that never existed: %v", err)
	}
	spec := c.spec("kt", "workers", 0)
	c.create(t, c.p, spec)
	for i := range 2 {
		if err := c.p.Delete(c.ctx, spec.Name); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
}

func testDeleteRecreate(t *testing.T, c *suiteCase) {
	spec := c.spec("kt", "workers", 0)
	other := c.spec("kt", "workers", 1)
	c.create(t, c.p, spec)
	c.create(t, c.p, other)
	if err := c.p.Delete(c.ctx, spec.Name); err != nil {
		t.Fatalf("Delete(%s): %v", spec.Name, err)
	}
	ms := live(c.list(t, c.p, "kt"))
	if len(ms[spec.Name]) != 0 {
		t.Fatalf("List after Delete(%s) still has it live", spec.Name)
	}
	if len(ms[other.Name]) != 1 {
		t.Fatalf("Delete(%s) took %s with it", spec.Name, other.Name)
	}
	c.create(t, c.p, spec)
	expectOne(t, c.list(t, c.p, "kt"), spec)
}

func testListOwnCluster(t *testing.T, c *suiteCase) {
	// "kt-workers" is a cluster of its own whose machine names start with "kt-": a provider that
	// filters by name prefix instead of by cluster sees it as kt's.
	mine := c.spec("kt", "workers", 0)
	theirs := c.spec("kt-workers", "workers", 0)
	c.create(t, c.p, mine)
	c.create(t, c.p, theirs)

	ms := c.list(t, c.p, "kt")
	if len(ms) != 1 {
		t.Fatalf("List(kt) = %s, want only %s", names(ms), mine.Name)
	}
	expectOne(t, ms, mine)
	ms = c.list(t, c.p, "kt-workers")
	if len(ms) != 1 {
		t.Fatalf("List(kt-workers) = %s, want only %s", names(ms), theirs.Name)
	}
	expectOne(t, ms, theirs)
	if ms := c.list(t, c.p, "none"); len(ms) != 0 {
		t.Fatalf("List(none) = %s, want none", names(ms))
	}
}

func testListMany(t *testing.T, c *suiteCase) {
	specs := []provisioner.MachineSpec{c.spec("kt", provisioner.ControlPlanePool, 0)}
	for i := 0; len(specs) < c.Machines; i++ {
		specs = append(specs, c.spec("kt", "workers", i))
	}
	var wg sync.WaitGroup
	for _, s := range specs {
		c.remember(s.Name)
		wg.Go(func() {
			if _, err := c.p.Create(c.ctx, s); err != nil {
				t.Errorf("Create(%s): %v", s.Name, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	ms := c.list(t, c.New(), "kt")
	if len(live(ms)) != len(specs) {
		t.Fatalf("List(kt) = %s, want %d machines", names(ms), len(specs))
	}
	for _, s := range specs {
		expectOne(t, ms, s)
	}
}

func testCancelled(t *testing.T, c *suiteCase) {
	ctx, cancel := context.WithCancel(c.ctx)
	cancel()
	spec := c.spec("kt", "workers", 0)
	c.remember(spec.Name)
	if _, err := c.p.Create(ctx, spec); !errors.Is(err, context.Canceled) {
		t.Errorf("Create with a cancelled context: err = %v, want one that is context.Canceled", err)
	}
	if _, err := c.p.List(ctx, "kt"); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context: err = %v, want one that is context.Canceled", err)
	}
	if err := c.p.Delete(ctx, spec.Name); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a cancelled context: err = %v, want one that is context.Canceled", err)
	}
	if ms := live(c.list(t, c.p, "kt")); len(ms) != 0 {
		t.Errorf("Create with a cancelled context made machines: %v", ms)
	}
}

func testStop(t *testing.T, c *suiteCase) {
	s, ok := c.p.(provisioner.Stopper)
	if !ok {
		t.Logf("%T has no Stop: failed machines are deleted, never kept", c.p)
		return
	}
	if err := s.Stop(c.ctx, provisioner.MachineName("kt", "workers", 9)); err != nil {
		t.Fatalf("Stop of a machine that never existed: %v", err)
	}
	spec := c.spec("kt", "workers", 0)
	c.create(t, c.p, spec)
	for i := range 2 {
		if err := s.Stop(c.ctx, spec.Name); err != nil {
			t.Fatalf("Stop #%d: %v", i+1, err)
		}
	}
	got := live(c.list(t, c.p, "kt"))[spec.Name]
	if len(got) != 1 || got[0].State != provisioner.StateStopped {
		t.Fatalf("after Stop, List has %v, want one stopped machine", got)
	}
}
