// Package reconcile decides what to do to make a cluster's machines match its spec: which machines to
// create, which to delete or power off, and what it holds back and why. Decide is a pure function of
// the desired groups, the machines a provider lists, their health verdicts, the remediation state, the
// time and the policy; a thin executor carries the plan out and stores its next state.
//
// The rules, per group (the control plane, each node pool):
//
//   - Missing machines are created, named with the lowest free ordinals; extra machines are deleted,
//     highest ordinal first (the control plane loses one machine per plan, never below etcd quorum of
//     ready members).
//   - An unhealthy machine is replaced: its replacement is created under a new name, and the old one is
//     deleted (powered off with KeepFailed) only once the replacement is running and ready. A
//     replacement that fails is deleted (powered off with KeepFailed) and the old machine is tried
//     again later.
//   - Guards: when more of a group is unhealthy than MaxUnhealthy allows, nothing of it is replaced and
//     the plan says why; at most MaxInFlight replacements at once in the cluster; at most MaxAttempts
//     attempts per machine, with exponential backoff between them; the control plane is replaced one
//     machine at a time, and only while enough members are ready for etcd quorum.
//   - Rollout: a machine on another image than its group's is replaced like an unhealthy one, one at a
//     time per group, and only while at least Count - MaxUnavailable machines are available.
package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/health"
)

// Replacement is a replacement under way: New is being created to take Old's place.
type Replacement struct {
	Old  string
	New  string
	Pool string
	// Rollout is true when Old is replaced for its image, false when it failed.
	Rollout bool
	// Reason Old is replaced.
	Reason  string
	Started time.Time
}

// RemediationState is what the plans remember between passes. The executor stores Plan.Next before it
// acts on the plan, so that a crash in between repeats the same, idempotent, creates.
type RemediationState struct {
	// InFlight are the replacements under way, by Old.
	InFlight []Replacement
	// Attempts are the times a replacement of the machine was started, by machine name.
	Attempts map[string][]time.Time
	// Kept are machines powered off for forensics (Policy.KeepFailed); plans leave them alone, apart
	// from powering them off again, until they are deleted by hand.
	Kept []string
}

// Create is a machine to create.
type Create struct {
	Name  string
	Pool  string
	Role  string
	Image string
	// Replaces is the machine this one replaces, empty for a machine the group is missing.
	Replaces string
	Reason   string
}

// MachineSpec is the provider's spec of machine c of cluster, booting with ignition.
func (c Create) MachineSpec(cluster string, ignition []byte) provisioner.MachineSpec {
	return provisioner.MachineSpec{Cluster: cluster, Name: c.Name, Role: c.Role, Pool: c.Pool, Image: c.Image, Ignition: ignition}
}

// Delete is a machine to delete, or to power off.
type Delete struct {
	Name   string
	Pool   string
	Reason string
}

// Block is something the plan would do but holds back, and why.
type Block struct {
	Pool string
	// Machine is empty when the whole pool is held back.
	Machine string
	Reason  string
}

// Plan is what to do in one pass.
type Plan struct {
	Creates []Create
	Deletes []Delete
	// StopInsteadOfDelete are failed machines to power off and keep (Policy.KeepFailed).
	StopInsteadOfDelete []Delete
	Blocked             []Block
	// Next is the remediation state for the next pass.
	Next RemediationState
}

// machine is an observed machine with what the plan knows of it.
type machine struct {
	provisioner.Machine
	ordinal int // -1 when the name is not one MachineName makes
	verdict health.Verdict
	judged  bool
}

func (m *machine) unhealthy() bool { return m.judged && !m.verdict.Healthy }

// available is a running machine that is healthy and ready.
func (m *machine) available() bool {
	return m.judged && m.verdict.Healthy && m.verdict.Ready && m.State == provisioner.StateRunning
}

type planner struct {
	d           Desired
	p           Policy
	now         time.Time
	byName      map[string]*machine
	taken       map[string]bool // names in use or promised
	nextOrdinal map[string]int  // by pool: no free name below
	next        []Replacement   // replacements under way after this plan
	attempts    map[string][]time.Time
	kept        map[string]bool
	deleted     map[string]bool
	plan        Plan
}

// Decide plans one pass of reconciling the machines of desired.Cluster. observed is what the provider
// lists (machines of other clusters are ignored); verdicts are the health verdicts by machine name (a
// machine without one is neither replaced nor counted available); state is the previous plan's Next.
func Decide(desired Desired, observed []provisioner.Machine, verdicts map[string]health.Verdict, state RemediationState, now time.Time, p Policy) Plan {
	pl := &planner{
		d:      desired,
		p:      p.withDefaults(),
		now:    now,
		byName: make(map[string]*machine, len(observed)),
		taken:  make(map[string]bool, len(observed)),
		kept:   map[string]bool{},

		nextOrdinal: map[string]int{},
		attempts:    make(map[string][]time.Time, len(state.Attempts)),
		deleted:     map[string]bool{},
	}
	for _, o := range observed {
		if o.Cluster != desired.Cluster {
			continue
		}
		m := &machine{Machine: o, ordinal: -1}
		if n, ok := provisioner.Ordinal(desired.Cluster, o.Pool, o.Name); ok {
			m.ordinal = n
		}
		m.verdict, m.judged = verdicts[o.Name]
		pl.byName[o.Name] = m
		pl.taken[o.Name] = true
	}
	for _, r := range state.InFlight {
		pl.taken[r.New] = true
	}
	for name, ts := range state.Attempts {
		if _, ok := pl.byName[name]; ok {
			pl.attempts[name] = ts
		}
	}
	pl.keep(state.Kept)

	groups := pl.groups()
	members := make([][]*machine, len(groups))
	for i, g := range groups {
		members[i] = pl.members(g)
	}
	active := pl.progress(groups, members, state.InFlight)
	for i, g := range groups {
		pl.converge(g, members[i], active[g.Pool])
	}
	for i, g := range groups {
		pl.rollout(g, members[i])
	}

	pl.plan.Next = pl.nextState()
	return pl.plan
}

// keep carries the kept machines over, powering off again any that run.
func (pl *planner) keep(kept []string) {
	for _, name := range kept {
		m, ok := pl.byName[name]
		if !ok {
			continue
		}
		pl.kept[name] = true
		if m.State != provisioner.StateStopped && m.State != provisioner.StateGone {
			pl.plan.StopInsteadOfDelete = append(pl.plan.StopInsteadOfDelete, Delete{Name: name, Pool: m.Pool, Reason: "kept for forensics, but " + string(m.State)})
		}
	}
}

// groups are the desired groups, then a group of count 0 for every pool that has machines but is not
// in the spec any more.
func (pl *planner) groups() []Group {
	gs := slices.Clone(pl.d.Groups)
	known := map[string]bool{}
	for _, g := range gs {
		known[g.Pool] = true
	}
	var gone []Group
	for _, m := range pl.byName {
		if !known[m.Pool] {
			known[m.Pool] = true
			gone = append(gone, Group{Pool: m.Pool, Role: m.Role})
		}
	}
	slices.SortFunc(gone, func(a, b Group) int { return cmp.Compare(a.Pool, b.Pool) })
	return append(gs, gone...)
}

// members are the machines of group g, by ordinal, kept machines left out.
func (pl *planner) members(g Group) []*machine {
	var ms []*machine
	for _, m := range pl.byName {
		if m.Pool == g.Pool && !pl.kept[m.Name] {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, byOrdinal)
	return ms
}

// byOrdinal orders machines by ordinal, names MachineName does not make last.
func byOrdinal(a, b *machine) int {
	if (a.ordinal < 0) != (b.ordinal < 0) {
		if a.ordinal < 0 {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.ordinal, b.ordinal), cmp.Compare(a.Name, b.Name))
}

// progress moves the replacements under way on, and returns those still under way by pool.
func (pl *planner) progress(groups []Group, members [][]*machine, inFlight []Replacement) map[string][]Replacement {
	rs := slices.Clone(inFlight)
	slices.SortFunc(rs, func(a, b Replacement) int { return cmp.Compare(a.Old, b.Old) })
	group := map[string]int{}
	for i, g := range groups {
		group[g.Pool] = i
	}
	active := map[string][]Replacement{}
	for _, r := range rs {
		old, ok := pl.byName[r.Old]
		if !ok || pl.kept[r.Old] {
			continue // the old machine is gone: done
		}
		nw, created := pl.byName[r.New]
		switch {
		case !created:
			g := groups[group[old.Pool]]
			pl.plan.Creates = append(pl.plan.Creates, Create{Name: r.New, Pool: old.Pool, Role: cmp.Or(old.Role, g.Role), Image: g.Image, Replaces: r.Old, Reason: r.Reason})
		case nw.unhealthy():
			pl.dispose(nw, fmt.Sprintf("replacement of %s failed: %s", r.Old, nw.verdict.Reason))
			continue // the old machine is tried again, as attempts allow
		case nw.available():
			if !pl.finish(r, old, groups[group[old.Pool]], members[group[old.Pool]]) {
				continue
			}
		}
		active[old.Pool] = append(active[old.Pool], r)
		pl.next = append(pl.next, r)
	}
	return active
}

// finish retires the old machine of replacement r, whose new machine is available, and reports
// whether r stays under way.
func (pl *planner) finish(r Replacement, old *machine, g Group, members []*machine) bool {
	if old.available() {
		avail := 0
		for _, m := range members {
			if m.available() {
				avail++
			}
		}
		if need := g.Count - g.MaxUnavailable; avail-1 < need {
			pl.block(g.Pool, old.Name, fmt.Sprintf("%s waits: %d of %d machines available, deleting it would leave fewer than %d", old.Name, avail, g.Count, need))
			return true
		}
	}
	if !r.Rollout && pl.p.KeepFailed && old.State != provisioner.StateGone {
		if old.State == provisioner.StateStopped {
			pl.kept[old.Name] = true
			return false
		}
		pl.plan.StopInsteadOfDelete = append(pl.plan.StopInsteadOfDelete, Delete{Name: old.Name, Pool: old.Pool, Reason: "replaced by " + r.New + ": " + r.Reason})
		return true
	}
	pl.plan.Deletes = append(pl.plan.Deletes, Delete{Name: old.Name, Pool: old.Pool, Reason: "replaced by " + r.New + ": " + r.Reason})
	return true
}

// dispose deletes failed machine m, or powers it off and keeps it when the policy says to keep failed
// machines.
func (pl *planner) dispose(m *machine, reason string) {
	if pl.p.KeepFailed && m.State != provisioner.StateGone {
		pl.kept[m.Name] = true
		if m.State != provisioner.StateStopped {
			pl.plan.StopInsteadOfDelete = append(pl.plan.StopInsteadOfDelete, Delete{Name: m.Name, Pool: m.Pool, Reason: reason})
		}
		return
	}
	pl.deleted[m.Name] = true
	pl.plan.Deletes = append(pl.plan.Deletes, Delete{Name: m.Name, Pool: m.Pool, Reason: reason})
}

func (pl *planner) block(pool, machine, reason string) {
	pl.plan.Blocked = append(pl.plan.Blocked, Block{Pool: pool, Machine: machine, Reason: reason})
}

// converge creates missing machines, deletes extra ones and replaces unhealthy ones of group g.
func (pl *planner) converge(g Group, members []*machine, active []Replacement) {
	members = pl.live(members)
	replacing := map[string]bool{} // old and new machines of replacements under way
	for _, r := range active {
		replacing[r.Old] = true
		replacing[r.New] = true
	}
	var slots []*machine // the machines that fill the group's count: all but the new ones under way
	newOnes := map[string]bool{}
	for _, r := range active {
		newOnes[r.New] = true
	}
	for _, m := range members {
		if !newOnes[m.Name] {
			slots = append(slots, m)
		}
	}

	for i := len(slots); i < g.Count; i++ {
		pl.plan.Creates = append(pl.plan.Creates, Create{Name: pl.freeName(g.Pool), Pool: g.Pool, Role: g.Role, Image: g.Image, Reason: fmt.Sprintf("pool %s has %d of %d machines", g.Pool, len(slots), g.Count)})
	}
	if extra := len(slots) - g.Count; extra > 0 {
		cp := g.Role == v1alpha1.RoleControlPlane
		if cp {
			extra = 1
		}
		for i := len(slots) - 1; i >= 0 && extra > 0; i-- {
			m := slots[i]
			if cp {
				if len(active) > 0 {
					pl.block(g.Pool, m.Name, "control plane shrinks one machine at a time: a replacement is under way")
					break
				}
				if q, ready := quorum(g.Count), countAvailable(slots)-b2i(m.available()); ready < q {
					pl.block(g.Pool, m.Name, fmt.Sprintf("deleting %s would leave %d ready control-plane machines, fewer than etcd quorum %d", m.Name, ready, q))
					break
				}
			}
			pl.plan.Deletes = append(pl.plan.Deletes, Delete{Name: m.Name, Pool: g.Pool, Reason: fmt.Sprintf("pool %s has %d of %d machines", g.Pool, len(slots), g.Count)})
			pl.deleted[m.Name] = true
			extra--
		}
	}

	var candidates []*machine
	unhealthy := 0
	for _, m := range members {
		if m.unhealthy() {
			unhealthy++
			if !replacing[m.Name] && !pl.deleted[m.Name] {
				candidates = append(candidates, m)
			}
		}
	}
	if len(candidates) == 0 {
		return
	}
	if limit := pl.p.maxUnhealthy(len(members)); unhealthy > limit {
		pl.block(g.Pool, "", fmt.Sprintf("%d of %d machines unhealthy, more than maxUnhealthy %s allows (%d): nothing is replaced, a partition is no reason to replace the fleet", unhealthy, len(members), pl.p.MaxUnhealthy, limit))
		return
	}
	cpBusy := g.Role == v1alpha1.RoleControlPlane && len(active) > 0
	for _, m := range candidates {
		if g.Role == v1alpha1.RoleControlPlane {
			if q, ready := quorum(g.Count), countAvailable(slots); ready < q {
				pl.block(g.Pool, m.Name, fmt.Sprintf("%s: %d ready control-plane machines, fewer than etcd quorum %d: not replacing it", m.Name, ready, q))
				continue
			}
		}
		if pl.replace(g, m, false, m.verdict.Reason, cpBusy, "the control plane replaces one machine at a time") && g.Role == v1alpha1.RoleControlPlane {
			cpBusy = true
		}
	}
}

// rollout starts replacing the first machine of group g on another image, one at a time per group.
func (pl *planner) rollout(g Group, members []*machine) {
	if g.Image == "" {
		return
	}
	members = pl.live(members)
	busy := false
	replacing := map[string]bool{}
	for _, r := range pl.next {
		busy = busy || r.Pool == g.Pool
		replacing[r.Old] = true
		replacing[r.New] = true
	}
	avail := countAvailable(members)
	for _, m := range members {
		if m.Image == g.Image || replacing[m.Name] || pl.deleted[m.Name] {
			continue
		}
		if busy {
			return // one at a time; the replacement under way is what the pool waits for
		}
		reason := fmt.Sprintf("rollout: image %s, want %s", m.Image, g.Image)
		if need := g.Count - g.MaxUnavailable; avail < need {
			pl.block(g.Pool, m.Name, fmt.Sprintf("%s waits: %d of %d machines available, a rollout needs at least %d: %s", m.Name, avail, g.Count, need, reason))
			return
		}
		if pl.replace(g, m, true, reason, false, "") {
			return
		}
	}
}

// live are the members not deleted or kept by this plan so far: failed replacements are no longer part
// of their group.
func (pl *planner) live(members []*machine) []*machine {
	return slices.DeleteFunc(slices.Clone(members), func(m *machine) bool { return pl.deleted[m.Name] || pl.kept[m.Name] })
}

// replace starts replacing m when the guards allow, says why not otherwise, and reports whether it
// started.
func (pl *planner) replace(g Group, m *machine, rollout bool, reason string, busy bool, whyBusy string) bool {
	attempts := pl.attempts[m.Name]
	switch {
	case len(attempts) >= pl.p.MaxAttempts:
		pl.block(g.Pool, m.Name, fmt.Sprintf("%s: replaced %d times without success, the limit of %d: %s", m.Name, len(attempts), pl.p.MaxAttempts, reason))
		return false
	case len(attempts) > 0 && pl.now.Before(attempts[len(attempts)-1].Add(pl.p.backoff(len(attempts)))):
		d := pl.p.backoff(len(attempts))
		pl.block(g.Pool, m.Name, fmt.Sprintf("%s: next attempt at %s (backoff %s after %s): %s", m.Name, attempts[len(attempts)-1].Add(d).Format(time.RFC3339), d, plural(len(attempts), "attempt"), reason))
		return false
	case busy:
		pl.block(g.Pool, m.Name, fmt.Sprintf("%s waits: %s: %s", m.Name, whyBusy, reason))
		return false
	case len(pl.next) >= pl.p.MaxInFlight:
		pl.block(g.Pool, m.Name, fmt.Sprintf("%s waits: %s under way, maxInFlight %d: %s", m.Name, plural(len(pl.next), "replacement"), pl.p.MaxInFlight, reason))
		return false
	}
	r := Replacement{Old: m.Name, New: pl.freeName(g.Pool), Pool: g.Pool, Rollout: rollout, Reason: reason, Started: pl.now}
	pl.next = append(pl.next, r)
	pl.attempts[m.Name] = append(slices.Clip(attempts), pl.now)
	pl.plan.Creates = append(pl.plan.Creates, Create{Name: r.New, Pool: g.Pool, Role: g.Role, Image: g.Image, Replaces: m.Name, Reason: reason})
	return true
}

// freeName is the name of the lowest free ordinal of pool, which it takes.
func (pl *planner) freeName(pool string) string {
	for i := pl.nextOrdinal[pool]; ; i++ {
		name := provisioner.MachineName(pl.d.Cluster, pool, i)
		if !pl.taken[name] {
			pl.taken[name] = true
			pl.nextOrdinal[pool] = i + 1
			return name
		}
	}
}

// nextState is the remediation state after this plan.
func (pl *planner) nextState() RemediationState {
	var s RemediationState
	if len(pl.next) > 0 {
		s.InFlight = slices.Clone(pl.next)
		slices.SortFunc(s.InFlight, func(a, b Replacement) int { return cmp.Compare(a.Old, b.Old) })
	}
	for name, ts := range pl.attempts {
		if _, ok := pl.byName[name]; !ok || len(ts) == 0 {
			continue
		}
		if s.Attempts == nil {
			s.Attempts = map[string][]time.Time{}
		}
		s.Attempts[name] = ts
	}
	for name := range pl.kept {
		s.Kept = append(s.Kept, name)
	}
	slices.Sort(s.Kept)
	return s
}

// quorum is the majority of n etcd members.
func quorum(n int) int { return n/2 + 1 }

func countAvailable(ms []*machine) int {
	n := 0
	for _, m := range ms {
		if m.available() {
			n++
		}
	}
	return n
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
