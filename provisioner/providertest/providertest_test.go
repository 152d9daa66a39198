package providertest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
)

// backend is an in-memory machine store, the suite's own reference: it keeps the contract, and each of
// its flaws breaks one clause of it, to show that the suite notices.
type backend struct {
	mu       sync.Mutex
	machines map[string]provisioner.Machine
	// flaw is one of "", "duplicate", "prefix", "missing-delete", "ignore-cancel".
	flaw string
	seq  int
}

type memProvider struct{ b *backend }

func (p memProvider) Create(ctx context.Context, spec provisioner.MachineSpec) (provisioner.Machine, error) {
	if err := ctx.Err(); err != nil && p.b.flaw != "ignore-cancel" {
		return provisioner.Machine{}, err
	}
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	key := spec.Name
	if m, ok := p.b.machines[key]; ok && p.b.flaw != "duplicate" {
		return m, nil
	}
	if p.b.flaw == "duplicate" {
		p.b.seq++
		key = spec.Name + "\x00" + string(rune('a'+p.b.seq))
	}
	m := provisioner.Machine{Name: spec.Name, Cluster: spec.Cluster, Role: spec.Role, Pool: spec.Pool,
		Image: spec.Image, State: provisioner.StateRunning, Created: time.Now()}
	p.b.machines[key] = m
	return m, nil
}

func (p memProvider) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil && p.b.flaw != "ignore-cancel" {
		return err
	}
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if _, ok := p.b.machines[name]; !ok && p.b.flaw == "missing-delete" {
		return os.ErrNotExist
	}
	delete(p.b.machines, name)
	return nil
}

func (p memProvider) List(ctx context.Context, cluster string) ([]provisioner.Machine, error) {
	if err := ctx.Err(); err != nil && p.b.flaw != "ignore-cancel" {
		return nil, err
	}
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	var out []provisioner.Machine
	for _, m := range p.b.machines {
		if m.Cluster == cluster || (p.b.flaw == "prefix" && strings.HasPrefix(m.Name, cluster+"-")) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (p memProvider) Stop(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if m, ok := p.b.machines[name]; ok {
		m.State = provisioner.StateStopped
		p.b.machines[name] = m
	}
	return nil
}

func setup(flaw string) func(t *testing.T) providertest.Setup {
	return func(t *testing.T) providertest.Setup {
		b := &backend{machines: map[string]provisioner.Machine{}, flaw: flaw}
		return providertest.Setup{
			New:   func() provisioner.Provider { return memProvider{b} },
			Image: "image-1",
		}
	}
}

func TestContract(t *testing.T) {
	providertest.Run(t, setup(""))
}

// TestFlawedProvider is the child process of TestSuiteNoticesFlaws: it runs the suite on a flawed
// backend when PROVIDERTEST_FLAW names the flaw, and does nothing otherwise.
func TestFlawedProvider(t *testing.T) {
	flaw := os.Getenv("PROVIDERTEST_FLAW")
	if flaw == "" {
		return
	}
	providertest.Run(t, setup(flaw))
}

// TestSuiteNoticesFlaws runs the suite against each flawed backend in a child process and expects it
// to fail the clause that flaw breaks.
func TestSuiteNoticesFlaws(t *testing.T) {
	for _, tc := range []struct {
		flaw, want string
	}{
		{"duplicate", "--- FAIL: TestFlawedProvider/create_twice_makes_one_machine"},
		{"duplicate", "--- FAIL: TestFlawedProvider/create_after_a_restart_makes_no_duplicate"},
		{"prefix", "--- FAIL: TestFlawedProvider/list_sees_only_its_own_cluster"},
		{"missing-delete", "--- FAIL: TestFlawedProvider/delete_of_a_missing_machine_is_not_an_error"},
		{"ignore-cancel", "--- FAIL: TestFlawedProvider/cancelled_context_stops_work"},
	} {
		t.Run(tc.flaw, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFlawedProvider$", "-test.v")
			cmd.Env = append(os.Environ(), "PROVIDERTEST_FLAW="+tc.flaw)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a provider with flaw %q:\n%s", tc.flaw, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("want %q in the output:\n%s", tc.want, out)
			}
		})
	}
}
