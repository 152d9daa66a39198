package providertest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
)

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Setup {
		return providertest.Setup{New: providertest.NewMemory(nil).New, Image: "image-1"}
	})
}

// flawed wraps the reference provider with one flaw that breaks one clause of the contract.
type flawed struct {
	provisioner.Provider
	flaw string
	mu   *sync.Mutex
	seq  *int
}

func (f flawed) Create(ctx context.Context, spec provisioner.MachineSpec) (provisioner.Machine, error) {
	switch f.flaw {
	case "ignore-cancel":
		ctx = context.WithoutCancel(ctx)
	case "duplicate":
		// Makes a second machine of the same name under a hidden suffix, as a cloud without
		// idempotency tokens would.
		f.mu.Lock()
		*f.seq++
		n := *f.seq
		f.mu.Unlock()
		if n > 1 {
			dup := spec
			dup.Name = fmt.Sprintf("%s-dup%d", spec.Name, n)
			m, err := f.Provider.Create(ctx, dup)
			m.Name = spec.Name
			return m, err
		}
	}
	return f.Provider.Create(ctx, spec)
}

func (f flawed) Delete(ctx context.Context, name string) error {
	if f.flaw == "ignore-cancel" {
		ctx = context.WithoutCancel(ctx)
	}
	if f.flaw == "missing-delete" {
		ms, _ := f.Provider.List(ctx, strings.SplitN(name, "-", 2)[0])
		found := false
		for _, m := range ms {
			found = found || m.Name == name
		}
		if !found {
			return os.ErrNotExist
		}
	}
	return f.Provider.Delete(ctx, name)
}

func (f flawed) List(ctx context.Context, cluster string) ([]provisioner.Machine, error) {
	if f.flaw == "ignore-cancel" {
		ctx = context.WithoutCancel(ctx)
	}
	ms, err := f.Provider.List(ctx, cluster)
	if f.flaw == "prefix" && err == nil {
		// Also sees the machines of every cluster whose name starts with cluster + "-".
		more, _ := f.Provider.List(ctx, cluster+"-workers")
		ms = append(ms, more...)
	}
	if f.flaw == "duplicate" {
		for i := range ms {
			ms[i].Name, _, _ = strings.Cut(ms[i].Name, "-dup")
		}
	}
	return ms, err
}

// TestFlawedProvider is the child process of TestSuiteNoticesFlaws: it runs the suite on a flawed
// provider when PROVIDERTEST_FLAW names the flaw, and does nothing otherwise.
func TestFlawedProvider(t *testing.T) {
	flaw := os.Getenv("PROVIDERTEST_FLAW")
	if flaw == "" {
		return
	}
	providertest.Run(t, func(t *testing.T) providertest.Setup {
		mem := providertest.NewMemory(nil)
		var mu sync.Mutex
		var seq int
		return providertest.Setup{
			New:   func() provisioner.Provider { return flawed{Provider: mem.New(), flaw: flaw, mu: &mu, seq: &seq} },
			Image: "image-1",
		}
	})
}

// TestSuiteNoticesFlaws runs the suite against each flawed provider in a child process and expects it
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
