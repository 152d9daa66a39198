package reconcile

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/health"
)

var t0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

const cp = provisioner.ControlPlanePool

func desired(cpCount, workers int, image string) Desired {
	return Desired{Cluster: "prod", Groups: []Group{
		{Pool: cp, Role: v1alpha1.RoleControlPlane, Count: cpCount, Image: "cp-1"},
		{Pool: "workers", Role: v1alpha1.RoleWorker, Count: workers, Image: image, MaxUnavailable: 1},
	}}
}

func name(pool string, i int) string { return provisioner.MachineName("prod", pool, i) }

func mach(pool string, i int, image string, state provisioner.State) provisioner.Machine {
	role := v1alpha1.RoleWorker
	if pool == cp {
		role = v1alpha1.RoleControlPlane
	}
	return provisioner.Machine{Name: name(pool, i), Cluster: "prod", Role: role, Pool: pool, Image: image, State: state, Created: t0.Add(-time.Hour)}
}

// fleet is a running control plane of cps on cp-1 and workers on image, all up.
func fleet(cps, workers int, image string) ([]provisioner.Machine, map[string]health.Verdict) {
	var ms []provisioner.Machine
	vs := map[string]health.Verdict{}
	for i := range cps {
		ms = append(ms, mach(cp, i, "cp-1", provisioner.StateRunning))
	}
	for i := range workers {
		ms = append(ms, mach("workers", i, image, provisioner.StateRunning))
	}
	for _, m := range ms {
		vs[m.Name] = up
	}
	return ms, vs
}

var (
	up       = health.Verdict{Healthy: true, Ready: true, Reason: "up"}
	starting = health.Verdict{Healthy: true, Reason: "starting"}
	failed   = health.Verdict{Reason: "ssh port unreachable for 6m0s, longer than 5m0s"}
)

// with returns a copy of vs with the verdicts of the named machines replaced.
func with(vs map[string]health.Verdict, kv ...any) map[string]health.Verdict {
	out := map[string]health.Verdict{}
	for k, v := range vs {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1].(health.Verdict)
	}
	return out
}

func plus(ms []provisioner.Machine, more ...provisioner.Machine) []provisioner.Machine {
	return append(append([]provisioner.Machine(nil), ms...), more...)
}

func without(ms []provisioner.Machine, names ...string) []provisioner.Machine {
	var out []provisioner.Machine
	for _, m := range ms {
		skip := false
		for _, n := range names {
			skip = skip || m.Name == n
		}
		if !skip {
			out = append(out, m)
		}
	}
	return out
}

func replacing(old, nw, reason string, started time.Time) RemediationState {
	return RemediationState{
		InFlight: []Replacement{{Old: old, New: nw, Pool: "workers", Reason: reason, Started: started}},
		Attempts: map[string][]time.Time{old: {started}},
	}
}

func TestDecide(t *testing.T) {
	steady, upAll := fleet(3, 3, "img-1")
	w := func(i int) string { return name("workers", i) }
	c := func(i int) string { return name(cp, i) }
	running := provisioner.StateRunning
	before := t0.Add(-time.Minute)

	tests := []struct {
		name     string
		desired  Desired
		observed []provisioner.Machine
		verdicts map[string]health.Verdict
		state    RemediationState
		now      time.Time
		policy   Policy
		want     Plan
	}{
		{
			name:    "empty cluster: everything is created",
			desired: desired(3, 2, "img-1"),
			want: Plan{Creates: []Create{
				{Name: c(0), Pool: cp, Role: v1alpha1.RoleControlPlane, Image: "cp-1", Reason: "pool control-plane has 0 of 3 machines"},
				{Name: c(1), Pool: cp, Role: v1alpha1.RoleControlPlane, Image: "cp-1", Reason: "pool control-plane has 0 of 3 machines"},
				{Name: c(2), Pool: cp, Role: v1alpha1.RoleControlPlane, Image: "cp-1", Reason: "pool control-plane has 0 of 3 machines"},
				{Name: w(0), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Reason: "pool workers has 0 of 2 machines"},
				{Name: w(1), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Reason: "pool workers has 0 of 2 machines"},
			}},
		},
		{
			name:    "control plane first: an empty cluster gets its control plane, the workers wait",
			desired: desired(1, 2, "img-1"),
			policy:  Policy{ControlPlaneFirst: true},
			want: Plan{
				Creates: []Create{{Name: c(0), Pool: cp, Role: v1alpha1.RoleControlPlane, Image: "cp-1", Reason: "pool control-plane has 0 of 1 machines"}},
				Blocked: []Block{{Pool: "workers", Reason: "pool workers: creating 2 machines waits for the control plane, which comes up first on these machines: pool control-plane has 0 of 1 machines up"}},
			},
		},
		{
			name:     "control plane first: a control plane still starting holds the workers",
			desired:  desired(1, 2, "img-1"),
			observed: []provisioner.Machine{mach(cp, 0, "cp-1", running)},
			verdicts: map[string]health.Verdict{c(0): starting},
			policy:   Policy{ControlPlaneFirst: true},
			want:     Plan{Blocked: []Block{{Pool: "workers", Reason: "pool workers: creating 2 machines waits for the control plane, which comes up first on these machines: pool control-plane has 0 of 1 machines up"}}},
		},
		{
			name:     "control plane first: the workers are created once the control plane is up",
			desired:  desired(1, 2, "img-1"),
			observed: []provisioner.Machine{mach(cp, 0, "cp-1", running)},
			verdicts: map[string]health.Verdict{c(0): up},
			policy:   Policy{ControlPlaneFirst: true},
			want: Plan{Creates: []Create{
				{Name: w(0), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Reason: "pool workers has 0 of 2 machines"},
				{Name: w(1), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Reason: "pool workers has 0 of 2 machines"},
			}},
		},
		{
			name:     "control plane first: a failed worker is still replaced while the control plane is up",
			desired:  desired(1, 2, "img-1"),
			observed: []provisioner.Machine{mach(cp, 0, "cp-1", running), mach("workers", 0, "img-1", running), mach("workers", 1, "img-1", running)},
			verdicts: map[string]health.Verdict{c(0): up, w(0): up, w(1): failed},
			now:      t0,
			policy:   Policy{ControlPlaneFirst: true},
			want: Plan{
				Creates: []Create{{Name: w(2), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Replaces: w(1), Reason: failed.Reason}},
				Next:    replacing(w(1), w(2), failed.Reason, t0),
			},
		},
		{
			name:    "steady state: nothing to do",
			desired: desired(3, 3, "img-1"), observed: steady, verdicts: upAll,
		},
		{
			name:     "machines of other clusters are ignored",
			desired:  desired(3, 3, "img-1"),
			observed: plus(steady, provisioner.Machine{Name: "dev-workers-0", Cluster: "dev", Pool: "workers", State: provisioner.StateError}),
			verdicts: with(upAll, "dev-workers-0", failed),
		},
		{
			name:     "missing machine: lowest free ordinal",
			desired:  desired(3, 3, "img-1"),
			observed: plus(without(steady, w(0), w(1), w(2)), mach("workers", 1, "img-1", running)),
			verdicts: upAll,
			want: Plan{Creates: []Create{
				{Name: w(0), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Reason: "pool workers has 1 of 3 machines"},
				{Name: w(2), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Reason: "pool workers has 1 of 3 machines"},
			}},
		},
		{
			name:     "extra machines: highest ordinal first, one healthy machine per pass",
			desired:  desired(3, 1, "img-1"),
			observed: plus(steady, mach("workers", 10, "img-1", running)),
			verdicts: with(upAll, w(10), up),
			want: Plan{
				Deletes: []Delete{
					{Name: w(10), Pool: "workers", Reason: "pool workers has 4 of 1 machines", Healthy: true, Surplus: true},
				},
				Blocked: []Block{
					{Pool: "workers", Machine: w(2), Reason: "prod-workers-2 waits: 1 healthy machine of pool workers already goes by this pass, at most 1 per pass (maxUnavailable 1): pool workers has 4 of 1 machines"},
					{Pool: "workers", Machine: w(1), Reason: "prod-workers-1 waits: 1 healthy machine of pool workers already goes by this pass, at most 1 per pass (maxUnavailable 1): pool workers has 4 of 1 machines"},
				},
			},
		},
		{
			name:     "extra machines: failed ones first, and at once",
			desired:  desired(3, 1, "img-1"),
			observed: plus(steady, mach("workers", 3, "img-1", running)),
			verdicts: with(upAll, w(0), failed, w(1), failed, w(3), up),
			policy:   Policy{MaxUnhealthy: "2"},
			want: Plan{Deletes: []Delete{
				{Name: w(1), Pool: "workers", Reason: "pool workers has 4 of 1 machines", Surplus: true},
				{Name: w(0), Pool: "workers", Reason: "pool workers has 4 of 1 machines", Surplus: true},
				{Name: w(3), Pool: "workers", Reason: "pool workers has 4 of 1 machines", Healthy: true, Surplus: true},
			}},
		},
		{
			name:     "extra machines: not ready before ready",
			desired:  desired(3, 2, "img-1"),
			observed: steady,
			verdicts: with(upAll, w(0), starting),
			want: Plan{Deletes: []Delete{
				{Name: w(0), Pool: "workers", Reason: "pool workers has 3 of 2 machines", Healthy: true, Surplus: true},
			}},
		},
		{
			name:     "pool no longer in the spec: its machines go",
			desired:  desired(3, 3, "img-1"),
			observed: plus(steady, mach("gpu", 0, "img-1", running)),
			verdicts: with(upAll, name("gpu", 0), up),
			want: Plan{Deletes: []Delete{
				{Name: name("gpu", 0), Pool: "gpu", Reason: "pool gpu is not in the spec any more", Healthy: true, Surplus: true},
			}},
		},
		{
			name:     "control plane shrinks one machine at a time",
			desired:  desired(3, 3, "img-1"),
			observed: plus(steady, mach(cp, 3, "cp-1", running), mach(cp, 4, "cp-1", running)),
			verdicts: with(upAll, c(3), up, c(4), up),
			want: Plan{
				Deletes: []Delete{
					{Name: c(4), Pool: cp, Reason: "pool control-plane has 5 of 3 machines", Healthy: true, Surplus: true},
				},
				Blocked: []Block{
					{Pool: cp, Machine: c(3), Reason: "prod-control-plane-3 waits: the control plane shrinks one machine per pass: pool control-plane has 5 of 3 machines"},
				},
			},
		},
		{
			name:     "control plane shrinks by a member that is not ready, keeping etcd quorum",
			desired:  desired(3, 3, "img-1"),
			observed: plus(steady, mach(cp, 3, "cp-1", running)),
			verdicts: with(upAll, c(0), starting, c(1), starting, c(3), up),
			want: Plan{Deletes: []Delete{
				{Name: c(1), Pool: cp, Reason: "pool control-plane has 4 of 3 machines", Healthy: true, Surplus: true},
			}},
		},
		{
			name:     "unhealthy machine: replacement created under a new name",
			desired:  desired(3, 3, "img-1"),
			observed: steady,
			verdicts: with(upAll, w(1), failed),
			now:      t0,
			want: Plan{
				Creates: []Create{{Name: w(3), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Replaces: w(1), Reason: failed.Reason}},
				Next:    replacing(w(1), w(3), failed.Reason, t0),
			},
		},
		{
			name:     "a machine without a verdict is not replaced",
			desired:  desired(3, 3, "img-1"),
			observed: steady,
			verdicts: func() map[string]health.Verdict { v := with(upAll); delete(v, w(1)); return v }(),
		},
		{
			name:     "replacement starting: wait",
			desired:  desired(3, 3, "img-1"),
			observed: plus(steady, mach("workers", 3, "img-1", provisioner.StatePending)),
			verdicts: with(upAll, w(1), failed, w(3), starting),
			state:    replacing(w(1), w(3), failed.Reason, before),
			now:      t0,
			want:     Plan{Next: replacing(w(1), w(3), failed.Reason, before)},
		},
		{
			name:     "replacement not listed after a crash: created again under the same name",
			desired:  desired(3, 3, "img-1"),
			observed: steady,
			verdicts: with(upAll, w(1), failed),
			state:    replacing(w(1), w(3), failed.Reason, before),
			now:      t0,
			want: Plan{
				Creates: []Create{{Name: w(3), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Replaces: w(1), Reason: failed.Reason}},
				Next:    replacing(w(1), w(3), failed.Reason, before),
			},
		},
		{
			name:     "replacement ready: old machine deleted",
			desired:  desired(3, 3, "img-1"),
			observed: plus(steady, mach("workers", 3, "img-1", running)),
			verdicts: with(upAll, w(1), failed, w(3), up),
			state:    replacing(w(1), w(3), failed.Reason, before),
			now:      t0,
			want: Plan{
				Deletes: []Delete{{Name: w(1), Pool: "workers", Reason: "replaced by prod-workers-3: " + failed.Reason}},
				Next:    replacing(w(1), w(3), failed.Reason, before),
			},
		},
		{
			name:     "replacement ready, keep failed: old machine powered off",
			desired:  desired(3, 3, "img-1"),
			observed: plus(steady, mach("workers", 3, "img-1", running)),
			verdicts: with(upAll, w(1), failed, w(3), up),
			state:    replacing(w(1), w(3), failed.Reason, before),
			now:      t0,
			policy:   Policy{KeepFailed: true},
			want: Plan{
				StopInsteadOfDelete: []Delete{{Name: w(1), Pool: "workers", Reason: "replaced by prod-workers-3: " + failed.Reason}},
				Next:                replacing(w(1), w(3), failed.Reason, before),
			},
		},
		{
			name:     "keep failed: old machine off, kept and left alone",
			desired:  desired(3, 3, "img-1"),
			observed: plus(without(steady, w(1)), mach("workers", 1, "img-1", provisioner.StateStopped), mach("workers", 3, "img-1", running)),
			verdicts: with(upAll, w(1), health.Verdict{Reason: "machine is stopped"}, w(3), up),
			state:    replacing(w(1), w(3), failed.Reason, before),
			now:      t0,
			policy:   Policy{KeepFailed: true},
			want: Plan{Next: RemediationState{
				Attempts: map[string][]time.Time{w(1): {before}},
				Kept:     []string{w(1)},
			}},
		},
		{
			name:     "kept machine running again: powered off again, not counted",
			desired:  desired(3, 3, "img-1"),
			observed: plus(steady, mach("workers", 7, "img-1", running)),
			verdicts: with(upAll, w(7), failed),
			state:    RemediationState{Kept: []string{w(7), w(8)}},
			now:      t0,
			want: Plan{
				StopInsteadOfDelete: []Delete{{Name: w(7), Pool: "workers", Reason: "kept for forensics, but running"}},
				Next:                RemediationState{Kept: []string{w(7)}},
			},
		},
		{
			name:     "keep failed: a gone machine is deleted, there is nothing to keep",
			desired:  desired(3, 3, "img-1"),
			observed: plus(without(steady, w(1)), mach("workers", 1, "img-1", provisioner.StateGone), mach("workers", 3, "img-1", running)),
			verdicts: with(upAll, w(1), health.Verdict{Reason: "machine is gone"}, w(3), up),
			state:    replacing(w(1), w(3), failed.Reason, before),
			now:      t0,
			policy:   Policy{KeepFailed: true},
			want: Plan{
				Deletes: []Delete{{Name: w(1), Pool: "workers", Reason: "replaced by prod-workers-3: " + failed.Reason}},
				Next:    replacing(w(1), w(3), failed.Reason, before),
			},
		},
		{
			name:     "control plane does not shrink while a replacement is under way",
			desired:  desired(3, 0, "img-1"),
			observed: plus(func() []provisioner.Machine { ms, _ := fleet(4, 0, "img-1"); return ms }(), mach(cp, 4, "cp-1", provisioner.StatePending)),
			verdicts: func() map[string]health.Verdict {
				_, vs := fleet(4, 0, "img-1")
				return with(vs, c(0), failed, c(4), starting)
			}(),
			state: RemediationState{
				InFlight: []Replacement{{Old: c(0), New: c(4), Pool: cp, Reason: failed.Reason, Started: before}},
				Attempts: map[string][]time.Time{c(0): {before}},
			},
			now: t0,
			want: Plan{
				Blocked: []Block{{Pool: cp, Machine: c(3), Reason: "prod-control-plane-3 waits: the control plane shrinks one machine at a time: a replacement is under way: pool control-plane has 4 of 3 machines"}},
				Next: RemediationState{
					InFlight: []Replacement{{Old: c(0), New: c(4), Pool: cp, Reason: failed.Reason, Started: before}},
					Attempts: map[string][]time.Time{c(0): {before}},
				},
			},
		},
		{
			name:     "extra machines: names kiln does not make go first",
			desired:  desired(3, 2, "img-1"),
			observed: plus(steady, provisioner.Machine{Name: "hand-made", Cluster: "prod", Pool: "workers", Image: "img-1", State: running}),
			verdicts: upAll,
			want: Plan{
				Deletes: []Delete{
					{Name: "hand-made", Pool: "workers", Reason: "pool workers has 4 of 2 machines", Healthy: true, Surplus: true},
				},
				Blocked: []Block{
					{Pool: "workers", Machine: w(2), Reason: "prod-workers-2 waits: 1 healthy machine of pool workers already goes by this pass, at most 1 per pass (maxUnavailable 1): pool workers has 4 of 2 machines"},
				},
			},
		},
		{
			name:     "failed rollout replacement, keep failed: powered off and kept",
			desired:  desired(3, 3, "img-2"),
			observed: plus(steady, mach("workers", 3, "img-2", running)),
			verdicts: with(upAll, w(3), health.Verdict{Reason: "not up within 10m0s"}),
			state: RemediationState{
				InFlight: []Replacement{{Old: w(0), New: w(3), Pool: "workers", Rollout: true, Reason: "rollout", Started: t0.Add(-11 * time.Minute)}},
				Attempts: map[string][]time.Time{w(0): {t0.Add(-11 * time.Minute)}},
			},
			now:    t0,
			policy: Policy{KeepFailed: true},
			want: Plan{
				Creates:             []Create{{Name: w(4), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-2", Replaces: w(0), Reason: "rollout: image img-1, want img-2"}},
				StopInsteadOfDelete: []Delete{{Name: w(3), Pool: "workers", Reason: "replacement of prod-workers-0 failed: not up within 10m0s"}},
				Next: RemediationState{
					InFlight: []Replacement{{Old: w(0), New: w(4), Pool: "workers", Rollout: true, Reason: "rollout: image img-1, want img-2", Started: t0}},
					Attempts: map[string][]time.Time{w(0): {t0.Add(-11 * time.Minute), t0}},
					Kept:     []string{w(3)},
				},
			},
		},
		{
			name:     "old machine gone: replacement done",
			desired:  desired(3, 3, "img-1"),
			observed: plus(without(steady, w(1)), mach("workers", 3, "img-1", running)),
			verdicts: with(upAll, w(3), up),
			state:    replacing(w(1), w(3), failed.Reason, before),
			now:      t0,
		},
		{
			name:     "replacement failed: deleted, old machine waits for backoff",
			desired:  desired(3, 3, "img-1"),
			observed: plus(steady, mach("workers", 3, "img-1", provisioner.StateError)),
			verdicts: with(upAll, w(1), failed, w(3), health.Verdict{Reason: "provider reports the machine in error"}),
			state:    replacing(w(1), w(3), failed.Reason, t0.Add(-10*time.Second)),
			now:      t0,
			want: Plan{
				Deletes: []Delete{{Name: w(3), Pool: "workers", Reason: "replacement of prod-workers-1 failed: provider reports the machine in error"}},
				Blocked: []Block{{Pool: "workers", Machine: w(1), Reason: "prod-workers-1: next attempt at 2026-01-02T03:00:20Z (backoff 30s after 1 attempt): " + failed.Reason}},
				Next:    RemediationState{Attempts: map[string][]time.Time{w(1): {t0.Add(-10 * time.Second)}}},
			},
		},
		{
			name:     "replacement failed, keep failed: powered off and kept",
			desired:  desired(3, 3, "img-1"),
			observed: plus(steady, mach("workers", 3, "img-1", running)),
			verdicts: with(upAll, w(1), failed, w(3), health.Verdict{Reason: "not up within 10m0s"}),
			state:    replacing(w(1), w(3), failed.Reason, t0.Add(-11*time.Minute)),
			now:      t0,
			policy:   Policy{KeepFailed: true},
			want: Plan{
				Creates:             []Create{{Name: w(4), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Replaces: w(1), Reason: failed.Reason}},
				StopInsteadOfDelete: []Delete{{Name: w(3), Pool: "workers", Reason: "replacement of prod-workers-1 failed: not up within 10m0s"}},
				Next: RemediationState{
					InFlight: []Replacement{{Old: w(1), New: w(4), Pool: "workers", Reason: failed.Reason, Started: t0}},
					Attempts: map[string][]time.Time{w(1): {t0.Add(-11 * time.Minute), t0}},
					Kept:     []string{w(3)},
				},
			},
		},
		{
			name:     "backoff doubles",
			desired:  desired(3, 3, "img-1"),
			observed: steady,
			verdicts: with(upAll, w(1), failed),
			state:    RemediationState{Attempts: map[string][]time.Time{w(1): {t0.Add(-5 * time.Minute), t0.Add(-50 * time.Second)}}},
			now:      t0,
			want: Plan{
				Blocked: []Block{{Pool: "workers", Machine: w(1), Reason: "prod-workers-1: next attempt at 2026-01-02T03:00:10Z (backoff 1m0s after 2 attempts): " + failed.Reason}},
				Next:    RemediationState{Attempts: map[string][]time.Time{w(1): {t0.Add(-5 * time.Minute), t0.Add(-50 * time.Second)}}},
			},
		},
		{
			name:     "backoff over: next attempt",
			desired:  desired(3, 3, "img-1"),
			observed: steady,
			verdicts: with(upAll, w(1), failed),
			state:    RemediationState{Attempts: map[string][]time.Time{w(1): {t0.Add(-30 * time.Second)}}},
			now:      t0,
			want: Plan{
				Creates: []Create{{Name: w(3), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Replaces: w(1), Reason: failed.Reason}},
				Next: RemediationState{
					InFlight: []Replacement{{Old: w(1), New: w(3), Pool: "workers", Reason: failed.Reason, Started: t0}},
					Attempts: map[string][]time.Time{w(1): {t0.Add(-30 * time.Second), t0}},
				},
			},
		},
		{
			name:     "retry cap reached",
			desired:  desired(3, 3, "img-1"),
			observed: steady,
			verdicts: with(upAll, w(1), failed),
			state:    RemediationState{Attempts: map[string][]time.Time{w(1): {t0.Add(-3 * time.Hour), t0.Add(-2 * time.Hour), t0.Add(-time.Hour)}}},
			now:      t0,
			want: Plan{
				Blocked: []Block{{Pool: "workers", Machine: w(1), Reason: "prod-workers-1: replaced 3 times without success, the limit of 3: " + failed.Reason}},
				Next:    RemediationState{Attempts: map[string][]time.Time{w(1): {t0.Add(-3 * time.Hour), t0.Add(-2 * time.Hour), t0.Add(-time.Hour)}}},
			},
		},
		{
			name:     "max unhealthy: a partition replaces nothing",
			desired:  desired(3, 5, "img-1"),
			observed: func() []provisioner.Machine { ms, _ := fleet(3, 5, "img-1"); return ms }(),
			verdicts: func() map[string]health.Verdict {
				_, vs := fleet(3, 5, "img-1")
				return with(vs, w(0), failed, w(2), failed, w(4), failed)
			}(),
			now: t0,
			want: Plan{Blocked: []Block{
				{Pool: "workers", Reason: "3 of 5 machines unhealthy, more than maxUnhealthy 40% allows (2): nothing is replaced, a partition is no reason to replace the fleet"},
			}},
		},
		{
			name:     "max unhealthy is per pool",
			desired:  desired(3, 5, "img-1"),
			observed: func() []provisioner.Machine { ms, _ := fleet(3, 5, "img-1"); return ms }(),
			verdicts: func() map[string]health.Verdict {
				_, vs := fleet(3, 5, "img-1")
				return with(vs, w(0), failed, w(2), failed, c(0), failed, c(1), failed)
			}(),
			now:    t0,
			policy: Policy{MaxInFlight: 5},
			want: Plan{
				Creates: []Create{
					{Name: w(5), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Replaces: w(0), Reason: failed.Reason},
					{Name: w(6), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-1", Replaces: w(2), Reason: failed.Reason},
				},
				Blocked: []Block{
					{Pool: cp, Reason: "2 of 3 machines unhealthy, more than maxUnhealthy 40% allows (1): nothing is replaced, a partition is no reason to replace the fleet"},
				},
				Next: RemediationState{
					InFlight: []Replacement{
						{Old: w(0), New: w(5), Pool: "workers", Reason: failed.Reason, Started: t0},
						{Old: w(2), New: w(6), Pool: "workers", Reason: failed.Reason, Started: t0},
					},
					Attempts: map[string][]time.Time{w(0): {t0}, w(2): {t0}},
				},
			},
		},
		{
			name:     "max unhealthy as a count",
			desired:  desired(3, 3, "img-1"),
			observed: steady,
			verdicts: with(upAll, w(0), failed, w(1), failed),
			now:      t0,
			policy:   Policy{MaxUnhealthy: "1"},
			want: Plan{Blocked: []Block{
				{Pool: "workers", Reason: "2 of 3 machines unhealthy, more than maxUnhealthy 1 allows (1): nothing is replaced, a partition is no reason to replace the fleet"},
			}},
		},
		{
			name:     "max in flight: one at a time by default",
			desired:  desired(3, 5, "img-1"),
			observed: func() []provisioner.Machine { ms, _ := fleet(3, 5, "img-1"); return ms }(),
			verdicts: func() map[string]health.Verdict {
				_, vs := fleet(3, 5, "img-1")
				return with(vs, w(3), failed, c(2), failed)
			}(),
			now: t0,
			want: Plan{
				Creates: []Create{
					{Name: c(3), Pool: cp, Role: v1alpha1.RoleControlPlane, Image: "cp-1", Replaces: c(2), Reason: failed.Reason},
				},
				Blocked: []Block{
					{Pool: "workers", Machine: w(3), Reason: "prod-workers-3 waits: 1 replacement under way, maxInFlight 1: " + failed.Reason},
				},
				Next: RemediationState{
					InFlight: []Replacement{{Old: c(2), New: c(3), Pool: cp, Reason: failed.Reason, Started: t0}},
					Attempts: map[string][]time.Time{c(2): {t0}},
				},
			},
		},
		{
			name:     "control plane: one replacement at a time whatever maxInFlight",
			desired:  desired(5, 0, "img-1"),
			observed: func() []provisioner.Machine { ms, _ := fleet(5, 0, "img-1"); return ms }(),
			verdicts: func() map[string]health.Verdict {
				_, vs := fleet(5, 0, "img-1")
				return with(vs, c(1), failed, c(3), failed)
			}(),
			now:    t0,
			policy: Policy{MaxInFlight: 3},
			want: Plan{
				Creates: []Create{
					{Name: c(5), Pool: cp, Role: v1alpha1.RoleControlPlane, Image: "cp-1", Replaces: c(1), Reason: failed.Reason},
				},
				Blocked: []Block{
					{Pool: cp, Machine: c(3), Reason: "prod-control-plane-3 waits: the control plane replaces one machine at a time: " + failed.Reason},
				},
				Next: RemediationState{
					InFlight: []Replacement{{Old: c(1), New: c(5), Pool: cp, Reason: failed.Reason, Started: t0}},
					Attempts: map[string][]time.Time{c(1): {t0}},
				},
			},
		},
		{
			name:     "control plane: not replaced without etcd quorum",
			desired:  desired(3, 0, "img-1"),
			observed: func() []provisioner.Machine { ms, _ := fleet(3, 0, "img-1"); return ms }(),
			verdicts: func() map[string]health.Verdict {
				_, vs := fleet(3, 0, "img-1")
				return with(vs, c(0), failed, c(1), starting)
			}(),
			now: t0,
			want: Plan{Blocked: []Block{
				{Pool: cp, Machine: c(0), Reason: "prod-control-plane-0: 1 ready control-plane machines, fewer than etcd quorum 2: not replacing it"},
			}},
		},
		{
			name:     "rollout: one machine at a time, lowest ordinal first",
			desired:  desired(3, 3, "img-2"),
			observed: steady, verdicts: upAll,
			now: t0,
			want: Plan{
				Creates: []Create{{Name: w(3), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-2", Replaces: w(0), Reason: "rollout: image img-1, want img-2"}},
				Next: RemediationState{
					InFlight: []Replacement{{Old: w(0), New: w(3), Pool: "workers", Rollout: true, Reason: "rollout: image img-1, want img-2", Started: t0}},
					Attempts: map[string][]time.Time{w(0): {t0}},
				},
			},
		},
		{
			name:     "rollout: the next machine waits for the one under way",
			desired:  desired(3, 3, "img-2"),
			observed: plus(steady, mach("workers", 3, "img-2", provisioner.StatePending)),
			verdicts: with(upAll, w(3), starting),
			state: RemediationState{
				InFlight: []Replacement{{Old: w(0), New: w(3), Pool: "workers", Rollout: true, Reason: "rollout", Started: before}},
				Attempts: map[string][]time.Time{w(0): {before}},
			},
			now:    t0,
			policy: Policy{MaxInFlight: 3},
			want: Plan{Next: RemediationState{
				InFlight: []Replacement{{Old: w(0), New: w(3), Pool: "workers", Rollout: true, Reason: "rollout", Started: before}},
				Attempts: map[string][]time.Time{w(0): {before}},
			}},
		},
		{
			name:     "rollout step done: old machine deleted even with keep failed",
			desired:  desired(3, 3, "img-2"),
			observed: plus(steady, mach("workers", 3, "img-2", running)),
			verdicts: with(upAll, w(3), up),
			state: RemediationState{
				InFlight: []Replacement{{Old: w(0), New: w(3), Pool: "workers", Rollout: true, Reason: "rollout", Started: before}},
				Attempts: map[string][]time.Time{w(0): {before}},
			},
			now:    t0,
			policy: Policy{KeepFailed: true},
			want: Plan{
				Deletes: []Delete{{Name: w(0), Pool: "workers", Reason: "replaced by prod-workers-3: rollout", Healthy: true}},
				Next: RemediationState{
					InFlight: []Replacement{{Old: w(0), New: w(3), Pool: "workers", Rollout: true, Reason: "rollout", Started: before}},
					Attempts: map[string][]time.Time{w(0): {before}},
				},
			},
		},
		{
			name:     "rollout: never below count minus maxUnavailable",
			desired:  desired(3, 3, "img-2"),
			observed: steady,
			verdicts: with(upAll, w(1), starting, w(2), starting),
			now:      t0,
			want: Plan{Blocked: []Block{
				{Pool: "workers", Machine: w(0), Reason: "prod-workers-0 waits: 1 of 3 machines available, a rollout needs at least 2: rollout: image img-1, want img-2"},
			}},
		},
		{
			name:     "remediation before rollout",
			desired:  desired(3, 3, "img-2"),
			observed: steady,
			verdicts: with(upAll, w(2), failed),
			now:      t0,
			want: Plan{
				Creates: []Create{{Name: w(3), Pool: "workers", Role: v1alpha1.RoleWorker, Image: "img-2", Replaces: w(2), Reason: failed.Reason}},
				Next:    replacing(w(2), w(3), failed.Reason, t0),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.desired, tc.observed, tc.verdicts, tc.state, tc.now, tc.policy)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			if err := checkInvariants(tc.desired, tc.observed, tc.verdicts, tc.state, got); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	p := Policy{}.withDefaults()
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	for i, w := range want {
		if got := p.backoff(i + 1); got != w {
			t.Errorf("backoff after %d attempts = %s, want %s", i+1, got, w)
		}
	}
	if got := p.backoff(1000); got != 10*time.Minute {
		t.Errorf("backoff after 1000 attempts = %s, want the cap", got)
	}
}

func TestDecideDoesNotChangeItsInput(t *testing.T) {
	ms, vs := fleet(3, 3, "img-1")
	vs = with(vs, name("workers", 1), failed)
	state := RemediationState{Attempts: map[string][]time.Time{name("workers", 1): make([]time.Time, 1, 4)}}
	state.Attempts[name("workers", 1)][0] = t0.Add(-time.Hour)
	Decide(desired(3, 3, "img-1"), ms, vs, state, t0, Policy{})
	if got := state.Attempts[name("workers", 1)][:2]; !got[1].IsZero() {
		t.Errorf("Decide wrote into the state's attempts: %v", got)
	}
}

func BenchmarkDecide1000(b *testing.B) {
	ms, vs := fleet(3, 997, "img-1")
	for i := 0; i < 997; i += 100 {
		vs[name("workers", i)] = failed
	}
	d := Desired{Cluster: "prod", Groups: []Group{
		{Pool: cp, Role: v1alpha1.RoleControlPlane, Count: 3, Image: "cp-1"},
		{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 997, Image: "img-2", MaxUnavailable: 10},
	}}
	for b.Loop() {
		Decide(d, ms, vs, RemediationState{}, t0, Policy{MaxInFlight: 5})
	}
}

func ExampleDecide() {
	d := Desired{Cluster: "prod", Groups: []Group{{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 2, Image: "img-1", MaxUnavailable: 1}}}
	observed := []provisioner.Machine{
		{Name: "prod-workers-0", Cluster: "prod", Pool: "workers", Image: "img-1", State: provisioner.StateRunning},
		{Name: "prod-workers-1", Cluster: "prod", Pool: "workers", Image: "img-1", State: provisioner.StateStopped},
	}
	verdicts := map[string]health.Verdict{
		"prod-workers-0": {Healthy: true, Ready: true, Reason: "up"},
		"prod-workers-1": {Reason: "machine is stopped"},
	}
	p := Decide(d, observed, verdicts, RemediationState{}, t0, Policy{MaxUnhealthy: "1"})
	for _, c := range p.Creates {
		fmt.Printf("create %s (replaces %s: %s)\n", c.Name, c.Replaces, c.Reason)
	}
	// Output:
	// create prod-workers-2 (replaces prod-workers-1: machine is stopped)
}
