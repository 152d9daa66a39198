// Package converge carries out reconcile's plans: the thin executor between the pure decisions of
// provisioner/health and provisioner/reconcile and a Provider that acts.
//
// One pass lists the cluster's machines (one call), probes them, judges each with health.Judge, asks
// reconcile.Decide for a plan, stores what the plan says to remember, and only then acts: creates, then
// deletes and power-offs, with bounded concurrency and a rate limit on calls to the provider. Because
// the memory is stored before the provider is called, and a create is idempotent by name, a pass that
// is killed half way is repeated by the next one without duplicates or orphans.
package converge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/health"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
)

// MemoryVersion is the version of the Memory format this package reads and writes.
const MemoryVersion = 1

// Memory is what the executor remembers between passes.
type Memory struct {
	Version int `json:"version"`
	// Remediation is the plan's state: replacements under way, attempts, kept machines.
	Remediation reconcile.RemediationState `json:"remediation"`
	// Observations are what the probes saw of each machine, by name, so that how long a probe has
	// failed survives a restart of the executor.
	Observations map[string]health.Observation `json:"observations,omitempty"`
	// Joined are the machines whose provider was told they are up (provisioner.Joiner).
	Joined []string `json:"joined,omitempty"`
}

// Store keeps the executor's Memory, such as in kiln's state store.
type Store interface {
	// Load returns the stored memory, or a zero Memory when there is none.
	Load(ctx context.Context) (Memory, error)
	Save(ctx context.Context, m Memory) error
}

// Prober probes one machine. A Prober that is nil leaves both probes off: machines are then judged by
// their provider state alone.
type Prober interface {
	Probe(ctx context.Context, m provisioner.Machine) Seen
}

// Seen is what one probe of a machine saw.
type Seen struct {
	// SSH is whether the SSH port accepted a connection; nil when that probe is off.
	SSH *bool
	// Kubelet is whether the kubelet port accepted a connection; nil when that probe is off.
	Kubelet *bool
}

// NodeLister reports the Ready condition of the cluster's Kubernetes Nodes, by node name, in one call.
type NodeLister interface {
	NodeReady(ctx context.Context) (map[string]health.Condition, error)
}

// Executor runs passes. Fields left zero take the documented defaults; Provider, Desired, Ignition
// and Store are required.
type Executor struct {
	Provider provisioner.Provider
	Desired  reconcile.Desired
	Policy   reconcile.Policy
	Health   health.Policy
	// Ignition renders the first-boot config of a machine to create.
	Ignition func(ctx context.Context, c reconcile.Create) ([]byte, error)
	Store    Store
	Prober   Prober
	// Nodes, when set, adds the Kubernetes Node Ready condition to the health of each machine.
	Nodes NodeLister
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Concurrency is how many provider calls (and probes) run at once. Defaults to 4.
	Concurrency int
	// Limiter caps the rate of provider calls; nil for no cap.
	Limiter *rate.Limiter
	// Log gets one record per action and per held-back replacement. Defaults to discarding.
	Log *slog.Logger
}

// Action is one call to the provider that a pass made.
type Action struct {
	// Op is "create", "delete", "stop" or "joined".
	Op      string
	Machine string
	Pool    string
	Reason  string
	Err     error
}

// Report is what a pass saw, decided and did.
type Report struct {
	Machines []provisioner.Machine
	Verdicts map[string]health.Verdict
	Plan     reconcile.Plan
	Actions  []Action
}

// Converged reports whether the pass found the cluster as desired: every group at its count, every
// machine ready and on its group's image, nothing to do and nothing under way.
func (r Report) Converged(d reconcile.Desired) bool {
	p := r.Plan
	if len(p.Creates)+len(p.Deletes)+len(p.StopInsteadOfDelete)+len(p.Next.InFlight) > 0 {
		return false
	}
	count := map[string]int{}
	for _, m := range r.Machines {
		if !r.Verdicts[m.Name].Ready || slices.Contains(p.Next.Kept, m.Name) {
			continue
		}
		count[m.Pool]++
		for _, g := range d.Groups {
			if g.Pool == m.Pool && g.Image != m.Image {
				return false
			}
		}
	}
	for _, g := range d.Groups {
		if count[g.Pool] != g.Count {
			return false
		}
	}
	return true
}

// Err joins the errors of the pass's actions.
func (r Report) Err() error {
	var errs []error
	for _, a := range r.Actions {
		if a.Err != nil {
			errs = append(errs, a.Err)
		}
	}
	return errors.Join(errs...)
}

func (e *Executor) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Executor) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (e *Executor) concurrency() int {
	if e.Concurrency > 0 {
		return e.Concurrency
	}
	return 4
}

func (e *Executor) wait(ctx context.Context) error {
	if e.Limiter == nil {
		return ctx.Err()
	}
	return e.Limiter.Wait(ctx)
}

// Pass runs one pass. The error is about the pass itself (listing, storing); errors of single actions
// are in the report's actions (Report.Err), and the next pass tries them again.
func (e *Executor) Pass(ctx context.Context) (Report, error) {
	cluster := e.Desired.Cluster
	mem, err := e.Store.Load(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("converge: load memory of %s: %w", cluster, err)
	}
	if mem.Version != 0 && mem.Version != MemoryVersion {
		return Report{}, fmt.Errorf("converge: memory of %s has version %d, this kiln reads %d", cluster, mem.Version, MemoryVersion)
	}
	if err := e.wait(ctx); err != nil {
		return Report{}, err
	}
	machines, err := e.Provider.List(ctx, cluster)
	if err != nil {
		return Report{}, fmt.Errorf("converge: list machines of %s: %w", cluster, err)
	}
	now := e.now()
	obs := e.observe(ctx, machines, mem.Observations, now)
	verdicts := make(map[string]health.Verdict, len(machines))
	for _, m := range machines {
		verdicts[m.Name] = health.Judge(m, obs[m.Name], now, e.Health)
	}
	plan := reconcile.Decide(e.Desired, machines, verdicts, mem.Remediation, now, e.Policy)
	r := Report{Machines: machines, Verdicts: verdicts, Plan: plan}
	for _, b := range plan.Blocked {
		e.log().Warn("held back", "pool", b.Pool, "machine", b.Machine, "reason", b.Reason)
	}
	// Remember before acting: a crash after this point repeats the same idempotent creates.
	next := Memory{Version: MemoryVersion, Remediation: plan.Next, Observations: obs}
	for _, m := range machines {
		if slices.Contains(mem.Joined, m.Name) {
			next.Joined = append(next.Joined, m.Name)
		}
	}
	if err := e.Store.Save(ctx, next); err != nil {
		return r, fmt.Errorf("converge: save memory of %s: %w", cluster, err)
	}
	r.Actions = e.act(ctx, plan)
	if joined := e.join(ctx, machines, verdicts, next.Joined); len(joined) > 0 {
		for _, a := range joined {
			r.Actions = append(r.Actions, a)
			if a.Err == nil {
				next.Joined = append(next.Joined, a.Machine)
			}
		}
		if err := e.Store.Save(ctx, next); err != nil {
			return r, fmt.Errorf("converge: save memory of %s: %w", cluster, err)
		}
	}
	return r, nil
}

// join tells a Joiner provider about the ready machines it has not yet been told about.
func (e *Executor) join(ctx context.Context, machines []provisioner.Machine, verdicts map[string]health.Verdict, done []string) []Action {
	j, ok := e.Provider.(provisioner.Joiner)
	if !ok {
		return nil
	}
	var todo []provisioner.Machine
	for _, m := range machines {
		if verdicts[m.Name].Ready && !slices.Contains(done, m.Name) {
			todo = append(todo, m)
		}
	}
	out := make([]Action, len(todo))
	e.each(len(todo), func(i int) {
		m := todo[i]
		a := Action{Op: "joined", Machine: m.Name, Pool: m.Pool, Reason: "machine is up"}
		if err := e.wait(ctx); err != nil {
			a.Err = err
		} else if err := j.Joined(ctx, m.Name); err != nil {
			a.Err = fmt.Errorf("converge: joined %s: %w", m.Name, err)
		}
		out[i] = a
	})
	for _, a := range out {
		if a.Err != nil {
			e.log().Error("joined failed", "machine", a.Machine, "err", a.Err)
		} else {
			e.log().Info("joined", "machine", a.Machine, "pool", a.Pool)
		}
	}
	return out
}

// observe probes the running machines and folds what it saw into their observations; machines no
// longer listed are forgotten.
func (e *Executor) observe(ctx context.Context, machines []provisioner.Machine, prev map[string]health.Observation, now time.Time) map[string]health.Observation {
	var nodes map[string]health.Condition
	if e.Nodes != nil {
		n, err := e.Nodes.NodeReady(ctx)
		if err != nil {
			e.log().Warn("cannot read node conditions; judging by probes alone", "err", err)
		} else {
			nodes = n
		}
	}
	seen := make([]Seen, len(machines))
	e.each(len(machines), func(i int) {
		if e.Prober != nil && machines[i].State == provisioner.StateRunning {
			seen[i] = e.Prober.Probe(ctx, machines[i])
		} else if e.Prober != nil {
			no := false
			seen[i] = Seen{SSH: &no, Kubelet: &no}
		}
	})
	out := make(map[string]health.Observation, len(machines))
	for i, m := range machines {
		o := prev[m.Name]
		o.SSH = fold(o.SSH, seen[i].SSH, now)
		o.Kubelet = fold(o.Kubelet, seen[i].Kubelet, now)
		if c, ok := nodes[m.Name]; ok {
			o.NodeReady = c
		} else {
			o.NodeReady = health.Condition{}
		}
		if o.Up.IsZero() && m.State == provisioner.StateRunning && o.IsUp() {
			o.Up = now
		}
		out[m.Name] = o
	}
	return out
}

// fold is probe p after a probe that saw ok (nil: the probe is off).
func fold(p health.Probe, ok *bool, now time.Time) health.Probe {
	if ok == nil {
		return health.Probe{Off: true}
	}
	if p.Off || p.Since.IsZero() || p.OK != *ok {
		return health.Probe{OK: *ok, Since: now}
	}
	return p
}

// act carries out the plan: creates first, so that a replacement exists before anything goes, then
// deletes and power-offs.
func (e *Executor) act(ctx context.Context, plan reconcile.Plan) []Action {
	creates := make([]Action, len(plan.Creates))
	e.each(len(plan.Creates), func(i int) {
		c := plan.Creates[i]
		creates[i] = Action{Op: "create", Machine: c.Name, Pool: c.Pool, Reason: c.Reason, Err: e.create(ctx, c)}
	})
	stopper, canStop := e.Provider.(provisioner.Stopper)
	type del struct {
		d    reconcile.Delete
		stop bool
	}
	var dels []del
	for _, d := range plan.Deletes {
		dels = append(dels, del{d, false})
	}
	for _, d := range plan.StopInsteadOfDelete {
		dels = append(dels, del{d, canStop})
	}
	deletes := make([]Action, len(dels))
	e.each(len(dels), func(i int) {
		d := dels[i]
		a := Action{Op: "delete", Machine: d.d.Name, Pool: d.d.Pool, Reason: d.d.Reason}
		if err := e.wait(ctx); err != nil {
			a.Err = err
		} else if d.stop {
			a.Op = "stop"
			a.Err = stopper.Stop(ctx, d.d.Name)
		} else {
			a.Err = e.Provider.Delete(ctx, d.d.Name)
		}
		if a.Err != nil {
			a.Err = fmt.Errorf("converge: %s %s: %w", a.Op, a.Machine, a.Err)
		}
		deletes[i] = a
	})
	actions := append(creates, deletes...)
	for _, a := range actions {
		if a.Err != nil {
			e.log().Error(a.Op+" failed", "machine", a.Machine, "pool", a.Pool, "err", a.Err)
		} else {
			e.log().Info(a.Op, "machine", a.Machine, "pool", a.Pool, "reason", a.Reason)
		}
	}
	return actions
}

func (e *Executor) create(ctx context.Context, c reconcile.Create) error {
	ign, err := e.Ignition(ctx, c)
	if err != nil {
		return fmt.Errorf("converge: render ignition of %s: %w", c.Name, err)
	}
	if err := e.wait(ctx); err != nil {
		return fmt.Errorf("converge: create %s: %w", c.Name, err)
	}
	if _, err := e.Provider.Create(ctx, c.MachineSpec(e.Desired.Cluster, ign)); err != nil {
		return fmt.Errorf("converge: create %s: %w", c.Name, err)
	}
	return nil
}

// each runs fn(0..n-1) with at most Concurrency at once.
func (e *Executor) each(n int, fn func(i int)) {
	sem := make(chan struct{}, e.concurrency())
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// Run runs a pass every interval until ctx is done, handing each report (and the pass's error) to
// report. Errors do not stop it: the next pass tries again. It returns ctx's error.
func (e *Executor) Run(ctx context.Context, interval time.Duration, report func(Report, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r, err := e.Pass(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if report != nil {
			report(r, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
