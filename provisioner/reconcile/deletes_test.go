package reconcile

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/health"
)

// seen is what a pass observes: machines and their verdicts.
type seen struct {
	ms []provisioner.Machine
	vs map[string]health.Verdict
}

// running is n running machines of pool p on image, all up; the control-plane pool gets that role.
func running(p string, n int, image string) seen {
	s := seen{vs: map[string]health.Verdict{}}
	for i := range n {
		s = s.add(mach(p, i, image, provisioner.StateRunning), up)
	}
	return s
}

// and joins what o saw to s.
func (s seen) and(o seen) seen {
	out := seen{ms: append(append([]provisioner.Machine(nil), s.ms...), o.ms...), vs: maps.Clone(s.vs)}
	maps.Copy(out.vs, o.vs)
	return out
}

func (s seen) add(m provisioner.Machine, v health.Verdict) seen {
	return s.and(seen{ms: []provisioner.Machine{m}, vs: map[string]health.Verdict{m.Name: v}})
}

// set changes verdicts: name, verdict, ...
func (s seen) set(kv ...any) seen { return seen{ms: s.ms, vs: with(s.vs, kv...)} }

func (s seen) drop(names ...string) seen { return seen{ms: without(s.ms, names...), vs: s.vs} }

// holds are the blocks of machines from, from-1, ..., to of pool p, each waiting for why.
func holds(p string, from, to int, why, reason string) []Block {
	var bs []Block
	for i := from; i >= to; i-- {
		n := name(p, i)
		bs = append(bs, Block{Pool: p, Machine: n, Reason: fmt.Sprintf("%s waits: %s: %s", n, why, reason)})
	}
	return bs
}

func creates(p string, from, to int, image, reason string) []Create {
	var cs []Create
	for i := from; i <= to; i++ {
		cs = append(cs, Create{Name: name(p, i), Pool: p, Role: v1alpha1.RoleWorker, Image: image, Reason: reason})
	}
	return cs
}

// cluster is one control-plane machine and worker pools on image, given as name, count,
// maxUnavailable.
func cluster(image string, pools ...any) Desired {
	d := Desired{Cluster: "prod", Groups: []Group{{Pool: cp, Role: v1alpha1.RoleControlPlane, Count: 1, Image: "cp-1"}}}
	for i := 0; i < len(pools); i += 3 {
		d.Groups = append(d.Groups, Group{Pool: pools[i].(string), Role: v1alpha1.RoleWorker, Count: pools[i+1].(int), Image: image, MaxUnavailable: pools[i+2].(int)})
	}
	return d
}

// TestDecideBoundedDeletes: the scenarios of issue 15. A pass deletes at most maxUnavailable healthy
// machines of a pool, after the machines that take their place are up; failed machines go at once;
// the control plane never goes below etcd quorum.
func TestDecideBoundedDeletes(t *testing.T) {
	w := func(i int) string { return name("workers", i) }
	c := func(i int) string { return name(cp, i) }
	cp1 := running(cp, 1, "cp-1")
	before := t0.Add(-time.Minute)
	perPass1 := "1 healthy machine of pool workers already goes by this pass, at most 1 per pass (maxUnavailable 1)"
	waitNew := func(upOf10 int) string {
		return fmt.Sprintf("pool worker has %d of 10 machines up, and the machines of a pool that is not in the spec any more go once the pools of the spec are up", upOf10)
	}
	const gone = "pool workers is not in the spec any more"
	rollout := RemediationState{
		InFlight: []Replacement{{Old: w(0), New: w(5), Pool: "workers", Rollout: true, Reason: "rollout: image img-1, want img-2", Started: before}},
		Attempts: map[string][]time.Time{w(0): {before}},
	}
	threeReplacements := RemediationState{
		InFlight: []Replacement{
			{Old: w(0), New: w(5), Pool: "workers", Reason: failed.Reason, Started: before},
			{Old: w(1), New: w(6), Pool: "workers", Reason: failed.Reason, Started: before},
			{Old: w(2), New: w(7), Pool: "workers", Reason: failed.Reason, Started: before},
		},
		Attempts: map[string][]time.Time{w(0): {before}, w(1): {before}, w(2): {before}},
	}
	cpRollout := RemediationState{
		InFlight: []Replacement{{Old: c(0), New: c(3), Pool: cp, Rollout: true, Reason: "rollout: image cp-1, want cp-2", Started: before}},
		Attempts: map[string][]time.Time{c(0): {before}},
	}

	tests := []struct {
		name    string
		desired Desired
		seen    seen
		state   RemediationState
		policy  Policy
		want    Plan
	}{
		{
			name:    "rename workers to worker: the new pool is created, the old one waits for it",
			desired: cluster("img-1", "worker", 10, 1),
			seen:    cp1.and(running("workers", 10, "img-1")),
			want: Plan{
				Creates: creates("worker", 0, 9, "img-1", "pool worker has 0 of 10 machines"),
				Blocked: holds("workers", 9, 0, waitNew(0), gone),
			},
		},
		{
			name:    "rename, the new pool partly up: the old pool still waits",
			desired: cluster("img-1", "worker", 10, 1),
			seen:    cp1.and(running("workers", 10, "img-1")).and(running("worker", 10, "img-1")).set(name("worker", 3), starting),
			want:    Plan{Blocked: holds("workers", 9, 0, waitNew(9), gone)},
		},
		{
			name:    "rename, the new pool up: the old pool goes one healthy machine per pass, the default maxUnavailable",
			desired: cluster("img-1", "worker", 10, 3),
			seen:    cp1.and(running("workers", 10, "img-1")).and(running("worker", 10, "img-1")),
			want: Plan{
				Deletes: []Delete{{Name: w(9), Pool: "workers", Reason: gone, Healthy: true, Surplus: true}},
				Blocked: holds("workers", 8, 0, "1 healthy machine of pool workers already goes by this pass, at most 1 per pass (the default maxUnavailable: the pool is not in the spec any more)", gone),
			},
		},
		{
			name:    "rename: failed machines of the old pool go at once",
			desired: cluster("img-1", "worker", 10, 1),
			seen:    cp1.and(running("workers", 10, "img-1")).set(w(2), failed),
			want: Plan{
				Creates: creates("worker", 0, 9, "img-1", "pool worker has 0 of 10 machines"),
				Deletes: []Delete{{Name: w(2), Pool: "workers", Reason: gone, Surplus: true}},
				Blocked: append(holds("workers", 9, 3, waitNew(0), gone), holds("workers", 1, 0, waitNew(0), gone)...),
			},
		},
		{
			name:    "scale to 0: one healthy machine per pass",
			desired: cluster("img-1", "workers", 0, 1),
			seen:    cp1.and(running("workers", 10, "img-1")),
			want: Plan{
				Deletes: []Delete{{Name: w(9), Pool: "workers", Reason: "pool workers has 10 of 0 machines", Healthy: true, Surplus: true}},
				Blocked: holds("workers", 8, 0, perPass1, "pool workers has 10 of 0 machines"),
			},
		},
		{
			name:    "scale down by 5 with maxUnavailable 1",
			desired: cluster("img-1", "workers", 5, 1),
			seen:    cp1.and(running("workers", 10, "img-1")),
			want: Plan{
				Deletes: []Delete{{Name: w(9), Pool: "workers", Reason: "pool workers has 10 of 5 machines", Healthy: true, Surplus: true}},
				Blocked: holds("workers", 8, 5, perPass1, "pool workers has 10 of 5 machines"),
			},
		},
		{
			name:    "scale down by 5 with maxUnavailable 2",
			desired: cluster("img-1", "workers", 5, 2),
			seen:    cp1.and(running("workers", 10, "img-1")),
			want: Plan{
				Deletes: []Delete{
					{Name: w(9), Pool: "workers", Reason: "pool workers has 10 of 5 machines", Healthy: true, Surplus: true},
					{Name: w(8), Pool: "workers", Reason: "pool workers has 10 of 5 machines", Healthy: true, Surplus: true},
				},
				Blocked: holds("workers", 7, 5, "2 healthy machines of pool workers already go by this pass, at most 2 per pass (maxUnavailable 2)", "pool workers has 10 of 5 machines"),
			},
		},
		{
			name:    "scale down: a machine not ready goes first",
			desired: cluster("img-1", "workers", 4, 1),
			seen:    cp1.and(running("workers", 5, "img-1")).set(w(0), starting, w(1), starting),
			want: Plan{
				Deletes: []Delete{{Name: w(1), Pool: "workers", Reason: "pool workers has 5 of 4 machines", Healthy: true, Surplus: true}},
			},
		},
		{
			name:    "scale down: never below count minus maxUnavailable available",
			desired: cluster("img-1", "workers", 3, 1),
			seen: cp1.and(running("workers", 5, "img-1")).set(w(0), failed, w(1), failed, w(2), failed).
				add(mach("workers", 5, "img-1", provisioner.StatePending), starting).
				add(mach("workers", 6, "img-1", provisioner.StatePending), starting).
				add(mach("workers", 7, "img-1", provisioner.StatePending), starting),
			state:  threeReplacements,
			policy: Policy{MaxUnhealthy: "3", MaxInFlight: 3},
			want: Plan{
				Blocked: holds("workers", 4, 3, "2 of 3 machines available, deleting it would leave fewer than 2", "pool workers has 5 of 3 machines"),
				Next:    threeReplacements,
			},
		},
		{
			name:    "replacement plus scale-down in one pass: the replaced machine counts against maxUnavailable",
			desired: cluster("img-2", "workers", 3, 1),
			seen:    cp1.and(running("workers", 5, "img-1")).add(mach("workers", 5, "img-2", provisioner.StateRunning), up),
			state:   rollout,
			want: Plan{
				Deletes: []Delete{{Name: w(0), Pool: "workers", Reason: "replaced by prod-workers-5: rollout: image img-1, want img-2", Healthy: true}},
				Blocked: holds("workers", 4, 3, perPass1, "pool workers has 5 of 3 machines"),
				Next:    rollout,
			},
		},
		{
			name:    "replacement plus scale-down, next pass: machines on the old image go first, the rollout waits",
			desired: cluster("img-2", "workers", 3, 1),
			seen:    cp1.and(running("workers", 5, "img-1")).drop(w(0)).add(mach("workers", 5, "img-2", provisioner.StateRunning), up),
			state:   RemediationState{Attempts: map[string][]time.Time{w(0): {before}}},
			want: Plan{
				Deletes: []Delete{{Name: w(4), Pool: "workers", Reason: "pool workers has 5 of 3 machines", Healthy: true, Surplus: true}},
				Blocked: append(holds("workers", 3, 3, perPass1, "pool workers has 5 of 3 machines"),
					Block{Pool: "workers", Machine: w(1), Reason: "prod-workers-1 waits: pool workers shrinks first: rollout: image img-1, want img-2"}),
			},
		},
		{
			name:    "a failed machine of a pool that shrinks is deleted, not replaced",
			desired: cluster("img-1", "workers", 4, 1),
			seen:    cp1.and(running("workers", 5, "img-1")).set(w(1), failed),
			want: Plan{
				Deletes: []Delete{{Name: w(1), Pool: "workers", Reason: "pool workers has 5 of 4 machines", Surplus: true}},
			},
		},
		{
			name:    "a partition while scaling to 0: failed verdicts are not trusted, one machine per pass",
			desired: cluster("img-1", "workers", 0, 1),
			seen:    cp1.and(running("workers", 5, "img-1")).set(w(0), failed, w(1), failed, w(2), failed),
			want: Plan{
				Deletes: []Delete{{Name: w(2), Pool: "workers", Reason: "pool workers has 5 of 0 machines; it looks failed (" + failed.Reason + "), but so does more of the pool than maxUnhealthy 40% allows, so it counts as healthy", Healthy: true, Surplus: true}},
				Blocked: append(holds("workers", 1, 0, perPass1, "pool workers has 5 of 0 machines"), holds("workers", 4, 3, perPass1, "pool workers has 5 of 0 machines")...),
			},
		},
		{
			name:    "control plane 3 to 1: one member per pass",
			desired: cluster("img-1"),
			seen:    running(cp, 3, "cp-1"),
			want: Plan{
				Deletes: []Delete{{Name: c(2), Pool: cp, Reason: "pool control-plane has 3 of 1 machines", Healthy: true, Surplus: true}},
				Blocked: []Block{{Pool: cp, Machine: c(1), Reason: "prod-control-plane-1 waits: the control plane shrinks one machine per pass: pool control-plane has 3 of 1 machines"}},
			},
		},
		{
			name:    "control plane 5 to 3: a failed member goes first",
			desired: Desired{Cluster: "prod", Groups: []Group{{Pool: cp, Role: v1alpha1.RoleControlPlane, Count: 3, Image: "cp-1"}}},
			seen:    running(cp, 5, "cp-1").set(c(1), failed),
			want: Plan{
				Deletes: []Delete{{Name: c(1), Pool: cp, Reason: "pool control-plane has 5 of 3 machines", Surplus: true}},
				Blocked: []Block{{Pool: cp, Machine: c(4), Reason: "prod-control-plane-4 waits: the control plane shrinks one machine per pass: pool control-plane has 5 of 3 machines"}},
			},
		},
		{
			name:    "control plane quorum: a replaced member stays while the members left would lose etcd quorum",
			desired: Desired{Cluster: "prod", Groups: []Group{{Pool: cp, Role: v1alpha1.RoleControlPlane, Count: 3, Image: "cp-2", MaxUnavailable: 2}}},
			seen: running(cp, 1, "cp-1").
				add(mach(cp, 1, "cp-2", provisioner.StateRunning), starting).
				add(mach(cp, 2, "cp-2", provisioner.StateRunning), starting).
				add(mach(cp, 3, "cp-2", provisioner.StateRunning), up),
			state: cpRollout,
			want: Plan{
				Blocked: []Block{{Pool: cp, Machine: c(0), Reason: "prod-control-plane-0 waits: deleting prod-control-plane-0 would leave 1 ready control-plane machines, fewer than etcd quorum 2: replaced by prod-control-plane-3: rollout: image cp-1, want cp-2"}},
				Next:    cpRollout,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.desired, tc.seen.ms, tc.seen.vs, tc.state, t0, tc.policy)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			if err := checkInvariants(tc.desired, tc.seen.ms, tc.seen.vs, tc.state, got); err != nil {
				t.Error(err)
			}
		})
	}
}
