// Package converge carries out reconcile's plans: the thin executor between the pure decisions of
// provisioner/health and provisioner/reconcile and a Provider that acts.
//
// One pass lists the cluster's machines (one call), probes them, judges each with health.Judge, asks
// reconcile.Decide for a plan, lets the caller approve it (Executor.Approve), stores what the plan
// says to remember, and only then acts: creates, then deletes and power-offs, with bounded
// concurrency and a rate limit on calls to the provider. Because the memory is stored before the
// provider is called, and a create is idempotent by name, a pass that is killed half way is repeated
// by the next one without duplicates or orphans. Executor.Plan decides without storing or acting.
//
// A machine is ready only once it answered: its Kubernetes Node is Ready, or, while the cluster's
// Nodes cannot be read, its SSH server proved its pinned host key (TCPProber). Its provider's state
// (a VM powered on, an instance running) never makes it ready, and it is only once a machine is
// ready that a Joiner provider is told it joined and drops its first-boot material (Ignition in
// guestinfo, a bootstrap object in S3) or registers it with a load balancer. A pass that can hear
// nothing of the machines (no Prober, and the Nodes cannot be read) says so once, and waits.
//
// When the cluster's API is reachable (a Drainer, or Nodes that can drain), a machine with a
// Kubernetes Node is drained before it is deleted or powered off: cordoned, its pods evicted with
// their PodDisruptionBudgets respected (see nodeagent/drain). A drain that does not finish holds the
// machine: the report's plan says why, and the next pass tries again. Once the machine is deleted,
// its Node is deleted too. When the API does not answer, machines go undrained, and the report says so;
// the Nodes they leave behind are deleted in the first pass in which it answers (if not Ready).
package converge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/nodeagent/drain"
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
	// Joined are the machines whose provider was told they are up (provisioner.Joiner): each had
	// answered, with its Node Ready or over SSH with its pinned host key.
	Joined []string `json:"joined,omitempty"`
}

// Store keeps the executor's Memory, such as in kiln's state store.
type Store interface {
	// Load returns the stored memory, or a zero Memory when there is none.
	Load(ctx context.Context) (Memory, error)
	Save(ctx context.Context, m Memory) error
}

// Prober probes one machine. A Prober that is nil leaves both probes off: machines are then heard of
// through their Nodes alone, and not at all while the Nodes cannot be read (health.Observation.Unheard):
// a machine's provider state says it exists, never that it is up.
type Prober interface {
	Probe(ctx context.Context, m provisioner.Machine) Seen
}

// Seen is what one probe of a machine saw.
type Seen struct {
	// SSH is whether the machine's SSH server proved one of its pinned host keys; nil when that probe
	// is off.
	SSH *bool
	// Kubelet is whether the kubelet port accepted a connection; nil when that probe is off.
	Kubelet *bool
}

// NodeLister reports the Ready condition of the cluster's Kubernetes Nodes, by node name, in one call.
type NodeLister interface {
	NodeReady(ctx context.Context) (map[string]health.Condition, error)
}

// Drainer empties the Kubernetes Node of a machine (named as the machine) before the machine goes,
// and deletes the Node once it has; drain.Drainer is one, and so is KubeNodes.
type Drainer interface {
	Drain(ctx context.Context, node string) (drain.Result, error)
	DeleteNode(ctx context.Context, node string) error
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
	// RequireNodes says that a machine is up (ready) only once its Node is Ready, never on its probes
	// alone, even while the Nodes cannot be read (health.Observation.NodeRequired). Without it, the
	// probes stand in for the Node while Nodes does not answer; once it answers, a machine needs a
	// Ready Node all the same.
	RequireNodes bool
	// Drainer drains the Node of a machine before it is deleted or powered off. Defaults to Nodes
	// when Nodes is a Drainer too (KubeNodes is). It is used only in passes where Nodes answered.
	Drainer Drainer
	// Deleted, when set, is called once the provider has deleted a machine, to forget what is kept
	// about it elsewhere (its pinned SSH host keys); an error is the delete action's.
	Deleted func(ctx context.Context, name string) error
	// Approve, when set, sees every plan that acts (creates, deletes or powers off) before the pass
	// stores or does anything; an error stops the pass there and Pass returns it, wrapping
	// ErrNotApproved. kiln apply asks here before a plan with reconcile.Plan.NeedConfirmation.
	Approve func(ctx context.Context, p reconcile.Plan) error
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Concurrency is how many provider calls (and probes) run at once. Defaults to 4.
	Concurrency int
	// Limiter caps the rate of provider calls; nil for no cap.
	Limiter *rate.Limiter
	// Log gets one record per action and per held-back replacement. Defaults to discarding.
	Log *slog.Logger
	// UnheardHint, when set, ends the warning, said once, that a pass can hear nothing of the
	// machines (no Prober, and the Nodes cannot be read): what to configure so that kiln can.
	UnheardHint string

	// apiSilent is whether the last pass could not read the Nodes, and unheard whether it could hear
	// nothing of the machines, so that each is said once, not each pass.
	apiSilent, unheard atomic.Bool
	// lastHeld is what the last pass held back, so that the same holds are logged once.
	lastHeld atomic.Value
}

// Action is one call to the provider, or to the cluster's API, that a pass made.
type Action struct {
	// Op is "create", "delete", "stop", "joined", "drain" (before a delete or stop), "hold" (a
	// delete or stop held because its drain did not finish; Reason says why) or "delete-node".
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
	// Unheard is whether the pass could hear nothing of the machines: no Prober runs and the
	// cluster's Nodes could not be read. No machine is then ready, nor told it joined.
	Unheard bool
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

// wait waits for the limiter. A wait that would outlast ctx's deadline is context.DeadlineExceeded,
// as the deadline itself would be.
func (e *Executor) wait(ctx context.Context) error {
	if e.Limiter == nil {
		return ctx.Err()
	}
	err := e.Limiter.Wait(ctx)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}

// decision is a pass up to its plan.
type decision struct {
	r   Report
	mem Memory
	obs map[string]health.Observation
	// nodes are the machines' Nodes, by name, and reachable whether the cluster's API answered.
	nodes     map[string]health.Condition
	reachable bool
}

// decide loads the memory, lists, probes and judges the machines, and decides.
func (e *Executor) decide(ctx context.Context) (decision, error) {
	cluster := e.Desired.Cluster
	var d decision
	mem, err := e.Store.Load(ctx)
	if err != nil {
		return d, fmt.Errorf("converge: load memory of %s: %w", cluster, err)
	}
	if mem.Version != 0 && mem.Version != MemoryVersion {
		return d, fmt.Errorf("converge: memory of %s has version %d, this kiln reads %d", cluster, mem.Version, MemoryVersion)
	}
	if err := e.wait(ctx); err != nil {
		return d, err
	}
	machines, err := e.Provider.List(ctx, cluster)
	if err != nil {
		return d, fmt.Errorf("converge: list machines of %s: %w", cluster, err)
	}
	now := e.now()
	d.mem = mem
	d.nodes, d.reachable = e.hear(ctx)
	unheard := e.Prober == nil && !d.reachable
	d.obs = e.observe(ctx, machines, mem.Observations, d.nodes, d.reachable, now)
	verdicts := make(map[string]health.Verdict, len(machines))
	for _, m := range machines {
		verdicts[m.Name] = health.Judge(m, d.obs[m.Name], now, e.Health)
	}
	plan := reconcile.Decide(e.Desired, machines, verdicts, mem.Remediation, now, e.Policy)
	d.r = Report{Machines: machines, Verdicts: verdicts, Plan: plan, Unheard: unheard}
	return d, nil
}

// Plan decides what a pass would do, and neither stores nor does anything: kiln plan, and kiln
// apply --dry-run.
func (e *Executor) Plan(ctx context.Context) (Report, error) {
	d, err := e.decide(ctx)
	return d.r, err
}

// acts reports whether p changes any machine.
func acts(p reconcile.Plan) bool {
	return len(p.Creates)+len(p.Deletes)+len(p.StopInsteadOfDelete) > 0
}

// Pass runs one pass. The error is about the pass itself (listing, storing, approval); errors of
// single actions are in the report's actions (Report.Err), and the next pass tries them again.
func (e *Executor) Pass(ctx context.Context) (Report, error) {
	cluster := e.Desired.Cluster
	d, err := e.decide(ctx)
	if err != nil {
		return d.r, err
	}
	r, plan, mem := d.r, d.r.Plan, d.mem
	if e.Approve != nil && acts(plan) {
		if err := e.Approve(ctx, plan); err != nil {
			return r, fmt.Errorf("converge: plan of %s: %w: %w", cluster, ErrNotApproved, err)
		}
	}
	// What is held back is said when it changes, not again in every pass that holds it.
	var held []string
	for _, b := range plan.Blocked {
		held = append(held, b.Pool+"\x00"+b.Machine+"\x00"+b.Reason)
	}
	if key := strings.Join(held, "\n"); e.lastHeld.Swap(key) != key {
		for _, b := range plan.Blocked {
			e.log().Warn("held back", "pool", b.Pool, "machine", b.Machine, "reason", b.Reason)
		}
	}
	// Remember before acting: a crash after this point repeats the same idempotent creates.
	next := Memory{Version: MemoryVersion, Remediation: plan.Next, Observations: d.obs}
	for _, m := range r.Machines {
		if slices.Contains(mem.Joined, m.Name) {
			next.Joined = append(next.Joined, m.Name)
		}
	}
	if err := e.Store.Save(ctx, next); err != nil {
		return r, fmt.Errorf("converge: save memory of %s: %w", cluster, err)
	}
	k := e.drainer(d)
	r.Actions = e.act(ctx, plan, k)
	r.Actions = append(r.Actions, e.orphans(ctx, k, r.Machines)...)
	for _, a := range r.Actions {
		if a.Op == "hold" {
			r.Plan.Blocked = append(r.Plan.Blocked, reconcile.Block{Pool: a.Pool, Machine: a.Machine, Reason: a.Reason})
		}
	}
	if joined := e.join(ctx, r.Machines, r.Verdicts, d.obs, next.Joined); len(joined) > 0 {
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

// nodes is how a pass reaches the machines' Nodes: the drainer, and which machines have a Node. A
// nil *nodes drains nothing; one with a nil drainer says the cluster's API did not answer.
type nodes struct {
	drainer Drainer
	has     map[string]health.Condition
}

// drainer is how the pass of d drains, nil when it does not.
func (e *Executor) drainer(d decision) *nodes {
	dr := e.Drainer
	if dr == nil {
		dr, _ = e.Nodes.(Drainer)
	}
	switch {
	case dr == nil:
		return nil
	case !d.reachable:
		return &nodes{}
	}
	return &nodes{drainer: dr, has: d.nodes}
}

// hear asks Nodes for the Nodes' Ready conditions, and reports whether the API answered. It says once
// when the pass can hear nothing of the machines (no Prober, and no Nodes read), and once when the
// API stops or starts answering while the probes stand in for it.
func (e *Executor) hear(ctx context.Context) (map[string]health.Condition, bool) {
	err := errors.New("no way to the cluster's API is configured")
	var n map[string]health.Condition
	if e.Nodes != nil {
		n, err = e.Nodes.NodeReady(ctx)
	}
	unheard := e.Prober == nil && err != nil
	switch {
	case unheard && !e.unheard.Swap(true):
		msg := "no machine can be judged ready: no SSH probe runs and the cluster's Nodes cannot be read, so nothing answers for them; " +
			"they stay unheard (not ready, not told they joined, so their first-boot material stays, and not replaced for it), " +
			"and are deleted without draining (said once, until they can be heard)"
		if e.UnheardHint != "" {
			msg += ". " + e.UnheardHint
		}
		e.log().Warn(msg, "err", err)
	case !unheard && e.unheard.Swap(false):
		e.log().Info("machines can be heard again: they are judged by their Nodes")
	}
	if e.Nodes == nil || e.Prober == nil {
		return n, err == nil
	}
	if err != nil {
		if !e.apiSilent.Swap(true) {
			e.log().Warn("cannot read node conditions; judging by probes alone, deleting without draining (said once, until the API answers)", "err", err)
		}
		return nil, false
	}
	if e.apiSilent.Swap(false) {
		e.log().Info("the cluster's API answers: machines are judged by their Nodes again")
	}
	return n, true
}

// join tells a Joiner provider about the ready machines it has not yet been told about. Ready means
// the machine answered (health.Observation.IsUp): its Node is Ready, or its SSH server proved its
// pinned host key; never that it is powered on.
func (e *Executor) join(ctx context.Context, machines []provisioner.Machine, verdicts map[string]health.Verdict, obs map[string]health.Observation, done []string) []Action {
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
		a := Action{Op: "joined", Machine: m.Name, Pool: m.Pool, Reason: "it answered over SSH with its pinned host key"}
		if obs[m.Name].NodeReady.Ready {
			a.Reason = "its Node is Ready"
		}
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
			e.log().Info("joined", "machine", a.Machine, "pool", a.Pool, "reason", a.Reason)
		}
	}
	return out
}

// observe probes the running machines and folds what it saw, and the Nodes' conditions, into their
// observations; machines no longer listed are forgotten. Once the API answers (reachable), a machine
// needs a Ready Node to be up, whatever RequireNodes says: SSH is the fallback only while the Nodes
// cannot be read, and never for the control plane when the policy brings it up first
// (reconcile.Policy.ControlPlaneFirst): the workers wait for its Node, not for its SSH.
func (e *Executor) observe(ctx context.Context, machines []provisioner.Machine, prev map[string]health.Observation, nodes map[string]health.Condition, reachable bool, now time.Time) map[string]health.Observation {
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
		o.NodeRequired = e.Nodes != nil && (e.RequireNodes || reachable || e.Policy.ControlPlaneFirst && m.Role == v1alpha1.RoleControlPlane)
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
// deletes and power-offs, each drained first when k says how.
func (e *Executor) act(ctx context.Context, plan reconcile.Plan, k *nodes) []Action {
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
	deletes := make([][]Action, len(dels))
	e.each(len(dels), func(i int) {
		d := dels[i]
		a := Action{Op: "delete", Machine: d.d.Name, Pool: d.d.Pool, Reason: d.d.Reason}
		if d.stop {
			a.Op = "stop"
		}
		drained, held := e.drain(ctx, k, a)
		if held != nil {
			deletes[i] = []Action{*held}
			return
		}
		if k != nil && k.drainer == nil {
			a.Reason += " (not drained: the cluster's API did not answer)"
		}
		if err := e.wait(ctx); err != nil {
			a.Err = err
		} else if d.stop {
			a.Err = stopper.Stop(ctx, d.d.Name)
		} else if a.Err = e.Provider.Delete(ctx, d.d.Name); a.Err == nil && e.Deleted != nil {
			if err := e.Deleted(ctx, d.d.Name); err != nil {
				a.Err = fmt.Errorf("deleted, but: %w", err)
			}
		}
		if a.Err != nil {
			a.Err = fmt.Errorf("converge: %s %s: %w", a.Op, a.Machine, a.Err)
		}
		out := append(drained, a)
		if a.Err == nil && !d.stop && len(drained) > 0 {
			n := Action{Op: "delete-node", Machine: a.Machine, Pool: a.Pool, Reason: "its machine is deleted"}
			if err := k.drainer.DeleteNode(ctx, a.Machine); err != nil {
				n.Err = fmt.Errorf("converge: %w", err)
			}
			out = append(out, n)
		}
		deletes[i] = out
	})
	actions := slices.Concat(append([][]Action{creates}, deletes...)...)
	for _, a := range actions {
		switch {
		case a.Err != nil:
			e.log().Error(a.Op+" failed", "machine", a.Machine, "pool", a.Pool, "err", a.Err)
		case a.Op == "hold":
			e.log().Warn("held back", "machine", a.Machine, "pool", a.Pool, "reason", a.Reason)
		default:
			e.log().Info(a.Op, "machine", a.Machine, "pool", a.Pool, "reason", a.Reason)
		}
	}
	return actions
}

// orphans deletes the Nodes left behind by machines that are gone: Nodes named like the cluster's
// machines, not Ready, of no machine the provider listed. A machine deleted while the cluster's API
// did not answer (a failed worker replaced while the control plane was too busy to answer) leaves
// its Node; the first pass in which the API answers deletes it. A Ready Node is left alone: a machine
// missing from one list is no proof that it is gone.
func (e *Executor) orphans(ctx context.Context, k *nodes, machines []provisioner.Machine) []Action {
	if k == nil || k.drainer == nil {
		return nil
	}
	listed := make(map[string]bool, len(machines))
	for _, m := range machines {
		listed[m.Name] = true
	}
	var names []string
	for name, c := range k.has {
		if !listed[name] && !c.Ready && strings.HasPrefix(name, e.Desired.Cluster+"-") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out []Action
	for _, name := range names {
		a := Action{Op: "delete-node", Machine: name, Reason: "its machine is gone"}
		if err := k.drainer.DeleteNode(ctx, name); err != nil {
			a.Err = fmt.Errorf("converge: %w", err)
			e.log().Error("delete-node failed", "machine", name, "err", a.Err)
		} else {
			e.log().Info("delete-node", "machine", name, "reason", a.Reason)
		}
		out = append(out, a)
	}
	return out
}

// drain drains the Node of the machine of action a (a delete or stop) when k has a drainer and the
// machine a Node. It returns the drain's action, if it drained, or the action that holds a back: a
// drain that a disruption budget or terminating pods did not let finish holds the machine without an
// error, any other failure with one.
func (e *Executor) drain(ctx context.Context, k *nodes, a Action) (drained []Action, held *Action) {
	if k == nil || k.drainer == nil {
		return nil, nil
	}
	if _, ok := k.has[a.Machine]; !ok {
		return nil, nil
	}
	r, err := k.drainer.Drain(ctx, a.Machine)
	if err != nil {
		h := Action{Op: "hold", Machine: a.Machine, Pool: a.Pool, Reason: fmt.Sprintf("%s %s held: %v", a.Op, a.Machine, err)}
		if !errors.Is(err, drain.ErrBudget) && !errors.Is(err, drain.ErrPodsLeft) {
			h.Err = fmt.Errorf("converge: %w", err)
		}
		return nil, &h
	}
	if !r.Found {
		return nil, nil
	}
	reason := fmt.Sprintf("before %s: cordoned, %s evicted", a.Op, plural(len(r.Evicted), "pod"))
	if len(r.Skipped) > 0 {
		reason += fmt.Sprintf(", %s left (DaemonSet, mirror or finished)", plural(len(r.Skipped), "pod"))
	}
	return []Action{{Op: "drain", Machine: a.Machine, Pool: a.Pool, Reason: reason}}, nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
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
