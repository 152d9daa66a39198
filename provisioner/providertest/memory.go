package providertest

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/provisioner"
)

// Memory is a provider whose machines are entries in memory: the reference implementation of the
// contract, for tests of code that drives providers (the converge executor). Every Provider value made
// by New shares the Memory's machines, as providers on one backend share theirs. The zero value is not
// ready; use NewMemory.
type Memory struct {
	mu       sync.Mutex
	machines map[string]provisioner.Machine
	now      func() time.Time
	calls    int
	// FailCreate, when set, is asked before each create; an error it returns is the create's error and
	// nothing is made.
	FailCreate func(spec provisioner.MachineSpec) error
}

// NewMemory returns an empty Memory whose machines are created at the times now returns (time.Now if
// nil).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{machines: map[string]provisioner.Machine{}, now: now}
}

// New returns a provider on m's machines.
func (m *Memory) New() provisioner.Provider { return memoryProvider{m} }

// SetState sets the state of the named machine, as a backend would when it fails or is powered off;
// it reports whether the machine exists.
func (m *Memory) SetState(name string, s provisioner.State) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	mc, ok := m.machines[name]
	if ok {
		mc.State = s
		m.machines[name] = mc
	}
	return ok
}

// Machines returns every machine of every cluster, sorted by name.
func (m *Memory) Machines() []provisioner.Machine {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]provisioner.Machine, 0, len(m.machines))
	for _, mc := range m.machines {
		out = append(out, mc)
	}
	slices.SortFunc(out, func(a, b provisioner.Machine) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Calls is how many calls the providers made to the backend.
func (m *Memory) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

type memoryProvider struct{ m *Memory }

func (p memoryProvider) Create(ctx context.Context, spec provisioner.MachineSpec) (provisioner.Machine, error) {
	if err := ctx.Err(); err != nil {
		return provisioner.Machine{}, err
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	p.m.calls++
	if mc, ok := p.m.machines[spec.Name]; ok {
		return mc, nil
	}
	if p.m.FailCreate != nil {
		if err := p.m.FailCreate(spec); err != nil {
			return provisioner.Machine{}, err
		}
	}
	mc := provisioner.Machine{
		Name: spec.Name, Cluster: spec.Cluster, Role: spec.Role, Pool: spec.Pool, Image: spec.Image,
		State: provisioner.StateRunning, Created: p.m.now(),
	}
	p.m.machines[spec.Name] = mc
	return mc, nil
}

func (p memoryProvider) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	p.m.calls++
	delete(p.m.machines, name)
	return nil
}

func (p memoryProvider) List(ctx context.Context, cluster string) ([]provisioner.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	p.m.calls++
	var out []provisioner.Machine
	for _, mc := range p.m.machines {
		if mc.Cluster == cluster {
			out = append(out, mc)
		}
	}
	slices.SortFunc(out, func(a, b provisioner.Machine) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func (p memoryProvider) Stop(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.m.SetState(name, provisioner.StateStopped)
	return nil
}
