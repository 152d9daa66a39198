// Package reconcile decides what to do to make a cluster's machines match its spec: which machines to
// create, which to delete or power off, and what it holds back and why. Decide is a pure function of
// the desired groups, the machines a provider lists, their health verdicts, the remediation state, the
// time and the policy; a thin executor carries the plan out and stores its next state. Every create,
// replacement, delete and hold of a plan carries its reason, and Plan.WriteText and Plan.WriteJSON
// show it to people and to programs.
//
// The rules, per group (the control plane, each node pool):
//
//   - Missing machines are created, named with the lowest free ordinals; with ControlPlaneFirst, those
//     of the node pools only once every control-plane machine is up.
//   - Extra machines (a pool scaled down, or a pool no longer in the spec: renamed or removed) are
//     deleted: failed ones first, then those not ready, then those on another image than their
//     group's, then the highest ordinals. Failed machines go at once (unless more of the group is
//     unhealthy than MaxUnhealthy allows: a partition looks like that, and then they count as
//     healthy). A pass deletes at most MaxUnavailable healthy machines of a pool (at least one),
//     counting the old machines of finished replacements, and never when that would leave fewer than
//     Count - MaxUnavailable machines available. A pool no longer in the spec has no MaxUnavailable
//     any more: its machines go at the default pace, v1alpha1.DefaultMaxUnavailable (1) per pass,
//     and its healthy ones only once every pool of the spec with their role has all its machines up,
//     so that a renamed pool's new machines are up before the old ones go. Deletes of healthy
//     surplus machines are marked (Delete.Healthy, Delete.Surplus), so that the command line asks
//     before it acts on them (Plan.NeedConfirmation).
//   - The control plane loses one machine per plan, not while a replacement is under way, and never a
//     ready member when the members left would have fewer ready than etcd quorum.
//   - An unhealthy machine is replaced: its replacement is created under a new name, and the old one is
//     deleted (powered off with KeepFailed) only once the replacement is running and ready. A
//     replacement that fails is deleted (powered off with KeepFailed) and the old machine is tried
//     again later.
//   - Guards: when more of a group is unhealthy than MaxUnhealthy allows, nothing of it is replaced and
//     the plan says why; at most MaxInFlight replacements at once in the cluster; at most MaxAttempts
//     attempts per machine, with exponential backoff between them; the control plane is replaced one
//     machine at a time, and only while enough members are ready for etcd quorum.
//   - Rollout: a machine on another image than its group's is replaced like an unhealthy one, one at a
//     time per group, only while at least Count - MaxUnavailable machines are available, and not
//     while the group still has machines beyond its count.
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
	// Healthy is true when the machine is not known to have failed (it is healthy, still starting, or
	// has no verdict): deleting it takes away capacity that works, or may.
	Healthy bool
	// Surplus is true when the machine goes because its pool shrinks or is no longer in the spec,
	// rather than because it failed or was replaced.
	Surplus bool
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
	deleted     map[string]bool // machines no longer part of their group: failed replacements, surplus
	removed     map[string]bool // machines this plan deletes or powers off, for the bounds and quorum
	surplus     map[string]bool // machines beyond their group's count, deleted or held
	healthyGone map[string]int  // by pool: healthy machines this plan deletes or powers off
	gonePools   map[string]bool // pools with machines that are not in the spec any more
	plan        Plan
}

// Decide plans one pass of reconciling the machines of desired.Cluster. observed is what the provider
// lists (machines of other clusters are ignored); verdicts are the health verdicts by machine name (a
// machine without one is neither replaced nor counted available); state is the previous plan's Next.
func Decide(desired Desired, observed []provisioner.Machine, verdicts map[string]health.Verdict, state RemediationState, now time.Time, p Policy) Plan {
	if blocks := countBlocks(desired); len(blocks) > 0 {
		return Plan{Blocked: blocks, Next: state}
	}
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
		removed:     map[string]bool{},
		surplus:     map[string]bool{},
		healthyGone: map[string]int{},
		gonePools:   map[string]bool{},
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
	up := pl.upShortfall(groups, members)
	for i, g := range groups {
		pl.converge(g, members[i], active[g.Pool], up)
	}
	for i, g := range groups {
		pl.rollout(g, members[i])
	}

	pl.plan.Next = pl.nextState()
	return pl.plan
}

// countBlocks refuses desired counts beyond the limits v1alpha1.Validate checks, so that a spec that
// skipped validation cannot make the planner allocate in proportion to an absurd count: the plan then
// holds back everything and says why.
func countBlocks(d Desired) []Block {
	var blocks []Block
	total := 0
	for _, g := range d.Groups {
		limit := v1alpha1.MaxPoolCount
		if g.Role == v1alpha1.RoleControlPlane {
			limit = v1alpha1.MaxControlPlaneCount
		}
		switch {
		case g.Count < 0:
			blocks = append(blocks, Block{Pool: g.Pool, Reason: fmt.Sprintf("count %d is negative", g.Count)})
		case g.Count > limit:
			blocks = append(blocks, Block{Pool: g.Pool, Reason: fmt.Sprintf("count %d is more than the limit of %d machines a group", g.Count, limit)})
		default:
			total += g.Count
		}
	}
	if len(blocks) == 0 && total > v1alpha1.MaxClusterCount {
		blocks = append(blocks, Block{Reason: fmt.Sprintf("the cluster asks for %d machines, more than the limit of %d", total, v1alpha1.MaxClusterCount)})
	}
	return blocks
}

// keep carries the kept machines over, powering off again any that run.
func (pl *planner) keep(kept []string) {
	for _, name := range kept {
		m, ok := pl.byName[name]
		if !ok || pl.kept[name] {
			continue
		}
		pl.kept[name] = true
		if m.State != provisioner.StateStopped && m.State != provisioner.StateGone {
			pl.plan.StopInsteadOfDelete = append(pl.plan.StopInsteadOfDelete, Delete{Name: name, Pool: m.Pool, Reason: "kept for forensics, but " + string(m.State), Healthy: !m.unhealthy()})
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
			pl.gonePools[m.Pool] = true
			// The pool's maxUnavailable went with its spec: its machines go at the default pace.
			gone = append(gone, Group{Pool: m.Pool, Role: m.Role, MaxUnavailable: v1alpha1.DefaultMaxUnavailable})
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
	claimed := map[string]bool{} // old and new machines of the replacements taken so far
	for _, r := range rs {
		old, ok := pl.byName[r.Old]
		if !ok || pl.kept[r.Old] {
			continue // the old machine is gone: done
		}
		if r.Old == r.New || claimed[r.Old] || claimed[r.New] || pl.kept[r.New] {
			continue // a damaged memory: each machine is in one replacement at most
		}
		if pl.gonePools[old.Pool] {
			continue // the pool left the spec: its machines, the new one too if made, are surplus
		}
		claimed[r.Old], claimed[r.New] = true, true
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
		if avail, need := countAvailable(members), g.Count-g.MaxUnavailable; avail-1 < need {
			pl.block(g.Pool, old.Name, fmt.Sprintf("%s waits: %d of %d machines available, deleting it would leave fewer than %d", old.Name, avail, g.Count, need))
			return true
		}
	}
	if why := pl.holdRemoval(g, old, old.unhealthy(), members); why != "" {
		pl.block(g.Pool, old.Name, fmt.Sprintf("%s waits: %s: replaced by %s: %s", old.Name, why, r.New, r.Reason))
		return true
	}
	d := Delete{Name: old.Name, Pool: old.Pool, Reason: "replaced by " + r.New + ": " + r.Reason}
	if !r.Rollout && pl.p.KeepFailed && old.State != provisioner.StateGone {
		if old.State == provisioner.StateStopped {
			pl.kept[old.Name] = true
			return false
		}
		pl.remove(old, d, old.unhealthy(), true)
		return true
	}
	pl.remove(old, d, old.unhealthy(), false)
	return true
}

// holdRemoval says why machine m of group g may not be deleted or powered off by this plan, or ""
// when it may: the bound on healthy machines per pass (failed machines are not bound by it), and
// etcd quorum for the control plane. members are the machines of g.
func (pl *planner) holdRemoval(g Group, m *machine, failed bool, members []*machine) string {
	if !failed {
		if n, most := pl.healthyGone[g.Pool], max(g.MaxUnavailable, 1); n >= most {
			return fmt.Sprintf("%s of pool %s already %s by this pass, at most %s", plural(n, "healthy machine"), g.Pool, goes(n), pl.paceOf(g))
		}
	}
	if g.Role == v1alpha1.RoleControlPlane && m.available() {
		left, ready := 0, 0
		for _, o := range members {
			if o == m || pl.removed[o.Name] {
				continue
			}
			left++
			if o.available() {
				ready++
			}
		}
		if q := quorum(left); ready < q {
			return fmt.Sprintf("deleting %s would leave %d ready control-plane machines, fewer than etcd quorum %d", m.Name, ready, q)
		}
	}
	return ""
}

// paceOf says how many healthy machines of group g a pass may delete, and where that comes from.
func (pl *planner) paceOf(g Group) string {
	switch {
	case pl.gonePools[g.Pool]:
		return fmt.Sprintf("%d per pass (the default maxUnavailable: the pool is not in the spec any more)", max(g.MaxUnavailable, 1))
	case g.Role == v1alpha1.RoleControlPlane:
		return "1 per pass for the control plane"
	}
	if g.MaxUnavailable < 1 {
		return fmt.Sprintf("1 per pass (maxUnavailable %d, but a pool shrinks by at least one)", g.MaxUnavailable)
	}
	return fmt.Sprintf("%d per pass (maxUnavailable %d)", g.MaxUnavailable, g.MaxUnavailable)
}

func goes(n int) string {
	if n == 1 {
		return "goes"
	}
	return "go"
}

// remove deletes m, or powers it off when stop is set, and counts it against the pass's bounds unless
// it failed.
func (pl *planner) remove(m *machine, d Delete, failed, stop bool) {
	d.Healthy = !failed
	pl.removed[m.Name] = true
	if d.Healthy {
		pl.healthyGone[m.Pool]++
	}
	if stop {
		pl.plan.StopInsteadOfDelete = append(pl.plan.StopInsteadOfDelete, d)
		return
	}
	pl.plan.Deletes = append(pl.plan.Deletes, d)
}

// dispose deletes failed machine m, or powers it off and keeps it when the policy says to keep failed
// machines.
func (pl *planner) dispose(m *machine, reason string) {
	if pl.p.KeepFailed && m.State != provisioner.StateGone {
		pl.kept[m.Name] = true
		if m.State != provisioner.StateStopped {
			pl.remove(m, Delete{Name: m.Name, Pool: m.Pool, Reason: reason}, true, true)
		}
		return
	}
	pl.deleted[m.Name] = true
	pl.remove(m, Delete{Name: m.Name, Pool: m.Pool, Reason: reason}, true, false)
}

func (pl *planner) block(pool, machine, reason string) {
	pl.plan.Blocked = append(pl.plan.Blocked, Block{Pool: pool, Machine: machine, Reason: reason})
}

// upShortfall says, by role, why the pools of the spec are not all up yet ("" when they are): the
// first pool with fewer machines available than its count. The healthy machines of a pool no longer
// in the spec wait for it; those of a pool without a role wait for every pool of the spec (key "").
func (pl *planner) upShortfall(groups []Group, members [][]*machine) map[string]string {
	short := map[string]string{}
	for i, g := range groups {
		if pl.gonePools[g.Pool] {
			continue
		}
		if avail := countAvailable(members[i]); avail < g.Count {
			why := fmt.Sprintf("pool %s has %d of %d machines up", g.Pool, avail, g.Count)
			short[g.Role] = cmp.Or(short[g.Role], why)
			short[""] = cmp.Or(short[""], why)
		}
	}
	return short
}

// converge creates missing machines, deletes extra ones and replaces unhealthy ones of group g. short
// says by role which pool of the spec is not up yet (see upShortfall).
func (pl *planner) converge(g Group, members []*machine, active []Replacement, short map[string]string) {
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

	if missing := g.Count - len(slots); missing > 0 && pl.p.ControlPlaneFirst && g.Role == v1alpha1.RoleWorker && short[v1alpha1.RoleControlPlane] != "" {
		pl.block(g.Pool, "", fmt.Sprintf("pool %s: creating %s waits for the control plane, which comes up first on these machines: %s", g.Pool, plural(missing, "machine"), short[v1alpha1.RoleControlPlane]))
	} else {
		for i := len(slots); i < g.Count; i++ {
			pl.plan.Creates = append(pl.plan.Creates, Create{Name: pl.freeName(g.Pool), Pool: g.Pool, Role: g.Role, Image: g.Image, Reason: fmt.Sprintf("pool %s has %d of %d machines", g.Pool, len(slots), g.Count)})
		}
	}
	if extra := len(slots) - g.Count; extra > 0 {
		pl.shrink(g, members, slots, extra, replacing, len(active) > 0, short[g.Role])
		members = pl.live(members)
	}

	var candidates []*machine
	unhealthy := 0
	for _, m := range members {
		if m.unhealthy() {
			unhealthy++
			if !replacing[m.Name] && !pl.deleted[m.Name] && !pl.surplus[m.Name] {
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

// shrink deletes the extra machines of group g, which has extra more slots than its count (see
// removalRank for which go first); the old machines of replacements under way leave through their
// replacement. Failed machines go at once, healthy ones within the bounds of holdRemoval and only
// while the pool keeps Count - MaxUnavailable available; those of a pool no longer in the spec wait
// until the pools of the spec are up (short says which is not). When more of the group is unhealthy
// than MaxUnhealthy allows, the verdicts are not trusted (a partition looks like that) and failed
// machines are held like healthy ones. The control plane loses one machine per plan, and none while
// a replacement is under way.
func (pl *planner) shrink(g Group, members, slots []*machine, extra int, replacing map[string]bool, busy bool, short string) {
	unhealthy := 0
	for _, m := range members {
		if m.unhealthy() {
			unhealthy++
		}
	}
	trusted := unhealthy <= pl.p.maxUnhealthy(len(members))
	var cands []*machine
	for _, m := range slots {
		if !replacing[m.Name] {
			cands = append(cands, m)
		}
	}
	slices.SortStableFunc(cands, func(a, b *machine) int {
		return cmp.Or(cmp.Compare(removalRank(a, g.Image), removalRank(b, g.Image)), -byOrdinal(a, b))
	})
	cands = cands[:min(extra, len(cands))]
	reason := fmt.Sprintf("pool %s has %d of %d machines", g.Pool, len(slots), g.Count)
	if pl.gonePools[g.Pool] {
		reason = fmt.Sprintf("pool %s is not in the spec any more", g.Pool)
	}
	cp := g.Role == v1alpha1.RoleControlPlane
	avail := countAvailable(slots)
	for _, m := range cands {
		pl.surplus[m.Name] = true
	}
	for i, m := range cands {
		why := ""
		switch {
		case cp && busy:
			why = "the control plane shrinks one machine at a time: a replacement is under way"
		case cp && i > 0:
			why = "the control plane shrinks one machine per pass"
		case m.unhealthy() && trusted:
		case pl.gonePools[g.Pool] && short != "":
			why = short + ", and the machines of a pool that is not in the spec any more go once the pools of the spec are up"
		case m.available() && avail-1 < g.Count-g.MaxUnavailable:
			why = fmt.Sprintf("%d of %d machines available, deleting it would leave fewer than %d", avail, g.Count, g.Count-g.MaxUnavailable)
		}
		failed := m.unhealthy() && trusted
		if why == "" {
			why = pl.holdRemoval(g, m, failed, members)
		}
		if why != "" {
			pl.block(g.Pool, m.Name, fmt.Sprintf("%s waits: %s: %s", m.Name, why, reason))
			continue
		}
		if m.available() {
			avail--
		}
		why = reason
		if m.unhealthy() && !failed {
			why = fmt.Sprintf("%s; it looks failed (%s), but so does more of the pool than maxUnhealthy %s allows, so it counts as healthy", reason, m.verdict.Reason, pl.p.MaxUnhealthy)
		}
		pl.deleted[m.Name] = true
		pl.remove(m, Delete{Name: m.Name, Pool: g.Pool, Reason: why, Surplus: true}, failed, false)
	}
}

// removalRank orders the machines a shrinking group on image loses: failed, then not ready, then on
// another image (a rollout would replace them), then the rest.
func removalRank(m *machine, image string) int {
	switch {
	case m.unhealthy():
		return 0
	case !m.available():
		return 1
	case image != "" && m.Image != image:
		return 2
	}
	return 3
}

// rollout starts replacing the first machine of group g on another image, one at a time per group,
// once the group has no surplus machines left.
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
	shrinking := false
	for _, m := range members {
		shrinking = shrinking || pl.surplus[m.Name]
	}
	avail := countAvailable(members)
	for _, m := range members {
		if m.Image == g.Image || replacing[m.Name] || pl.surplus[m.Name] {
			continue
		}
		if busy {
			return // one at a time; the replacement under way is what the pool waits for
		}
		reason := fmt.Sprintf("rollout: image %s, want %s", m.Image, g.Image)
		if shrinking {
			pl.block(g.Pool, m.Name, fmt.Sprintf("%s waits: pool %s shrinks first: %s", m.Name, g.Pool, reason))
			return
		}
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

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
