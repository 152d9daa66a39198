// Package metal is the bare-metal provider: the machines of the PXE inventory (onprem/pxe), kept in
// the state store, are a pool that the provisioner takes machines from. Create takes a free machine of
// the asked role and pool, arms it (pxe.Arm: its next network boot, and only that one, gets the config
// the provisioner rendered for it) and power-cycles it into a network boot through its BMC (Redfish or
// IPMI); Delete disarms it, releases it and powers it off; Stop disarms it, powers it off and keeps it.
//
// Which machine serves which name is recorded in the state store in two buckets, one keyed by name and
// one by MAC, each written with a create-if-absent transaction, so that concurrent creates, or a
// controller restarted between "create" and "record", never give one name two machines or one machine
// two names.
package metal

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/onprem/pxe"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/state"
)

// State store buckets.
const (
	// BucketMachines maps a machine name to its Allocation.
	BucketMachines = "metal-machines"
	// BucketClaims maps a MAC to the name that holds it.
	BucketClaims = "metal-claims"
)

// Allocation is an inventory machine given to a provisioner machine.
type Allocation struct {
	Name    string    `json:"name"`
	Cluster string    `json:"cluster"`
	Role    string    `json:"role"`
	Pool    string    `json:"pool"`
	Image   string    `json:"image,omitempty"`
	MAC     string    `json:"mac"`
	Host    string    `json:"host"`
	Created time.Time `json:"created"`
	Stopped bool      `json:"stopped,omitempty"`
}

// ErrNoFreeMachine is returned when the inventory has no free machine of the role and pool.
var ErrNoFreeMachine = errors.New("metal: no free machine in the inventory")

// Store is what the provider needs of the state store: its allocations and claims, taken with
// create-if-absent, changed with Modify and released with Delete, the inventory and boot records of
// onprem/pxe, read, and its arms, written and removed.
type Store interface {
	state.Reader
	state.Putter
	state.Creator
	state.Modifier
	state.Deleter
}

// Provider is the bare-metal provisioner.Provider.
type Provider struct {
	st    Store
	power Power
	now   func() time.Time
}

// New returns a provider over the inventory and allocations in st, controlling power with power.
func New(st Store, power Power) *Provider {
	return &Provider{st: st, power: power, now: time.Now}
}

var (
	_ provisioner.Provider = (*Provider)(nil)
	_ provisioner.Stopper  = (*Provider)(nil)
)

// Create implements provisioner.Provider.
func (p *Provider) Create(ctx context.Context, spec provisioner.MachineSpec) (provisioner.Machine, error) {
	if err := ctx.Err(); err != nil {
		return provisioner.Machine{}, err
	}
	if a, ok, err := p.get(spec.Name); err != nil || ok {
		if err != nil {
			return provisioner.Machine{}, fmt.Errorf("metal: create %s: %w", spec.Name, err)
		}
		return p.machine(a, nil), nil
	}
	inv, err := pxe.LoadInventory(p.st)
	if err != nil {
		return provisioner.Machine{}, fmt.Errorf("metal: create %s: %w", spec.Name, err)
	}
	for i := range inv.Machines {
		m := &inv.Machines[i]
		if m.Role != spec.Role || m.Pool != spec.Pool {
			continue
		}
		if err := ctx.Err(); err != nil {
			return provisioner.Machine{}, err
		}
		err := p.st.Create(BucketClaims, m.MAC, spec.Name)
		if errors.Is(err, state.ErrExists) {
			continue
		}
		if err != nil {
			return provisioner.Machine{}, fmt.Errorf("metal: create %s: claim %s (%s): %w", spec.Name, m.Name, m.MAC, err)
		}
		a := Allocation{Name: spec.Name, Cluster: spec.Cluster, Role: spec.Role, Pool: spec.Pool, Image: spec.Image,
			MAC: m.MAC, Host: m.Name, Created: p.now().UTC()}
		if err := p.st.Create(BucketMachines, spec.Name, a); err != nil {
			// Another create of this name won: give the machine back and return the winner's.
			_ = p.st.Delete(BucketClaims, m.MAC)
			if errors.Is(err, state.ErrExists) {
				won, _, err := p.get(spec.Name)
				if err != nil {
					return provisioner.Machine{}, fmt.Errorf("metal: create %s: %w", spec.Name, err)
				}
				return p.machine(won, nil), nil
			}
			return provisioner.Machine{}, fmt.Errorf("metal: create %s on %s: %w", spec.Name, m.Name, err)
		}
		// Armed before it is powered on: its next network boot, and only that one, installs it with
		// the config the provisioner rendered for it.
		arm := pxe.Arm{MAC: m.MAC, Cluster: spec.Cluster, Machine: spec.Name, By: pxe.ArmedByMetal, At: a.Created,
			Config: spec.Ignition}
		if err := pxe.ArmMachine(p.st, arm); err != nil {
			return provisioner.Machine{}, fmt.Errorf("metal: create %s on %s: %w", spec.Name, m.Name, err)
		}
		if err := p.power.BootPXE(ctx, m); err != nil {
			// The machine stays allocated and armed (the BMC may have acted): a retry of Create
			// returns it, a Delete releases it.
			return provisioner.Machine{}, fmt.Errorf("metal: create %s on %s: %w", spec.Name, m.Name, err)
		}
		return p.machine(a, nil), nil
	}
	return provisioner.Machine{}, fmt.Errorf("%w: role %s, pool %s (for %s)", ErrNoFreeMachine, spec.Role, spec.Pool, spec.Name)
}

// Delete implements provisioner.Provider: the machine is disarmed, its enrollment ticket revoked, and
// it is powered off and returned to the pool.
func (p *Provider) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a, ok, err := p.get(name)
	if err != nil {
		return fmt.Errorf("metal: delete %s: %w", name, err)
	}
	if !ok {
		return nil
	}
	if err := p.disarm(a); err != nil {
		return fmt.Errorf("metal: delete %s: %w", name, err)
	}
	// A script it was given, and its Ignition URL, install nothing any more.
	if err := enroll.Revoke(p.st, a.Cluster, a.Name); err != nil {
		return fmt.Errorf("metal: delete %s: %w", name, err)
	}
	if err := p.off(ctx, a); err != nil {
		return err
	}
	if err := p.st.Delete(BucketMachines, name); err != nil && !errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("metal: delete %s: %w", name, err)
	}
	if err := p.st.Delete(BucketClaims, a.MAC); err != nil && !errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("metal: delete %s: release %s: %w", name, a.MAC, err)
	}
	return nil
}

// Stop implements provisioner.Stopper: disarmed, powered off, kept allocated.
func (p *Provider) Stop(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a, ok, err := p.get(name)
	if err != nil {
		return fmt.Errorf("metal: stop %s: %w", name, err)
	}
	if !ok {
		return nil
	}
	if err := p.disarm(a); err != nil {
		return fmt.Errorf("metal: stop %s: %w", name, err)
	}
	if err := p.off(ctx, a); err != nil {
		return err
	}
	var cur Allocation
	err = p.st.Modify(BucketMachines, name, &cur, func() error {
		cur.Stopped = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("metal: stop %s: %w", name, err)
	}
	return nil
}

// List implements provisioner.Provider: the allocations of the cluster, with the state the boot
// records tell (pending until the machine fetched its Ignition after it was allocated).
func (p *Provider) List(ctx context.Context, cluster string) ([]provisioner.Machine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	names, err := p.st.List(BucketMachines)
	if err != nil {
		return nil, fmt.Errorf("metal: list %s: %w", cluster, err)
	}
	recs, err := pxe.LoadRecords(p.st)
	if err != nil {
		return nil, fmt.Errorf("metal: list %s: %w", cluster, err)
	}
	byMAC := map[string]*pxe.Record{}
	for i := range recs {
		byMAC[recs[i].MAC] = &recs[i]
	}
	var out []provisioner.Machine
	for _, n := range names {
		a, ok, err := p.get(n)
		if err != nil {
			return nil, fmt.Errorf("metal: list %s: allocation %s: %w", cluster, n, err)
		}
		if ok && a.Cluster == cluster {
			out = append(out, p.machine(a, byMAC[a.MAC]))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (p *Provider) get(name string) (Allocation, bool, error) {
	var a Allocation
	err := p.st.Get(BucketMachines, name, &a)
	if errors.Is(err, state.ErrNotFound) {
		return a, false, nil
	}
	if err != nil {
		return a, false, err
	}
	return a, true, nil
}

// disarm keeps the machine of a from installing at its next network boot, unless another name has
// armed it since.
func (p *Provider) disarm(a Allocation) error {
	arm, ok, err := pxe.GetArm(p.st, a.MAC)
	if err != nil || !ok || arm.Machine != a.Name {
		return err
	}
	return pxe.Disarm(p.st, a.MAC)
}

func (p *Provider) off(ctx context.Context, a Allocation) error {
	inv, err := pxe.LoadInventory(p.st)
	if err != nil {
		return fmt.Errorf("metal: power off %s: %w", a.Name, err)
	}
	m, ok := inv.Lookup(a.MAC)
	if !ok {
		// Gone from the inventory: nothing left to power off.
		return nil
	}
	if err := p.power.Off(ctx, m); err != nil {
		return fmt.Errorf("metal: power off %s (%s): %w", a.Name, m.Name, err)
	}
	return nil
}

func (p *Provider) machine(a Allocation, rec *pxe.Record) provisioner.Machine {
	m := provisioner.Machine{Name: a.Name, Cluster: a.Cluster, Role: a.Role, Pool: a.Pool, Image: a.Image,
		Created: a.Created, State: provisioner.StatePending}
	if rec != nil {
		m.Address = rec.IP
		if s, ok := rec.Steps[pxe.StepIgnition]; ok && !s.Last.Before(a.Created) {
			m.State = provisioner.StateRunning
		}
	}
	if a.Stopped {
		m.State = provisioner.StateStopped
	}
	return m
}
