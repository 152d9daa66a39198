package reconcile

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/health"
)

// checkInvariants holds a plan to what every plan keeps, whatever it was asked:
//
//   - it deletes or powers off no more healthy machines of a pool than the pool's maxUnavailable (at
//     least one; one for a pool not in the spec), whether the machines are counted by their verdicts
//     or by the plan's Healthy marks;
//   - when it takes a ready control-plane member away, the members left have a ready etcd quorum;
//   - it never creates a machine that exists, nor one name twice, and it deletes only machines that
//     exist, each once.
func checkInvariants(d Desired, observed []provisioner.Machine, verdicts map[string]health.Verdict, state RemediationState, p Plan) error {
	var errs []error
	byName := map[string]provisioner.Machine{}
	for _, m := range observed {
		if m.Cluster == d.Cluster {
			byName[m.Name] = m
		}
	}
	bound := map[string]int{}
	for _, g := range d.Groups {
		bound[g.Pool] = max(g.MaxUnavailable, 1)
	}
	available := func(name string) bool {
		v, ok := verdicts[name]
		return ok && v.Healthy && v.Ready && byName[name].State == provisioner.StateRunning
	}

	removed := map[string]bool{}
	byVerdict, byMark := map[string]int{}, map[string]int{}
	for _, d := range slices.Concat(p.Deletes, p.StopInsteadOfDelete) {
		m, ok := byName[d.Name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("removes %s, which is not a machine of the cluster", d.Name))
			continue
		case removed[d.Name]:
			errs = append(errs, fmt.Errorf("removes %s twice", d.Name))
			continue
		case d.Reason == "":
			errs = append(errs, fmt.Errorf("removes %s without a reason", d.Name))
		}
		removed[d.Name] = true
		if slices.Contains(state.Kept, d.Name) {
			continue // powered off again: it was kept, not a member of its pool
		}
		if v, ok := verdicts[d.Name]; !ok || v.Healthy {
			byVerdict[m.Pool]++
		}
		if d.Healthy {
			byMark[m.Pool]++
		}
	}
	for pool, n := range byVerdict {
		if b := cmpOr(bound[pool], 1); n > b {
			errs = append(errs, fmt.Errorf("pool %s: removes %d machines that are not known to have failed, more than %d", pool, n, b))
		}
	}
	for pool, n := range byMark {
		if b := cmpOr(bound[pool], 1); n > b {
			errs = append(errs, fmt.Errorf("pool %s: removes %d machines marked healthy, more than %d", pool, n, b))
		}
	}

	readyGone, left, ready := false, 0, 0
	for name, m := range byName {
		if m.Pool != provisioner.ControlPlanePool || slices.Contains(p.Next.Kept, name) {
			continue
		}
		switch {
		case removed[name]:
			readyGone = readyGone || available(name)
		default:
			left++
			if available(name) {
				ready++
			}
		}
	}
	if readyGone && ready < quorum(left) {
		errs = append(errs, fmt.Errorf("takes a ready control-plane member away and leaves %d ready of %d, fewer than etcd quorum %d", ready, left, quorum(left)))
	}

	created := map[string]bool{}
	for _, c := range p.Creates {
		switch {
		case bound[c.Pool] == 0:
			errs = append(errs, fmt.Errorf("creates %s in pool %s, which is not in the spec", c.Name, c.Pool))
		case byName[c.Name].Name != "":
			errs = append(errs, fmt.Errorf("creates %s, which exists", c.Name))
		case created[c.Name]:
			errs = append(errs, fmt.Errorf("creates %s twice", c.Name))
		case c.Reason == "":
			errs = append(errs, fmt.Errorf("creates %s without a reason", c.Name))
		}
		created[c.Name] = true
	}
	for _, b := range p.Blocked {
		if b.Reason == "" {
			errs = append(errs, fmt.Errorf("holds %s of %s without a reason", b.Machine, b.Pool))
		}
	}
	return errors.Join(errs...)
}

func cmpOr(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

// fuzzInput reads Decide's inputs from bytes, a byte at a time; past the end it reads zeros.
type fuzzInput struct {
	data []byte
}

func (in *fuzzInput) next(n int) int {
	if len(in.data) == 0 {
		return 0
	}
	b := in.data[0]
	in.data = in.data[1:]
	return int(b) % n
}

var (
	fuzzStates   = []provisioner.State{provisioner.StateRunning, provisioner.StateRunning, provisioner.StatePending, provisioner.StateStopped, provisioner.StateError, provisioner.StateGone}
	fuzzVerdicts = []*health.Verdict{&up, &up, &starting, &failed, nil}
	fuzzPools    = []string{"a", "b", "c"}
)

// decide builds a cluster from data: a control plane and up to three worker pools in the spec, up to
// two pools that are not, machines in every state with every kind of verdict, names kiln does not
// make, replacements under way (their new machines created or not), attempts, kept machines, and a
// policy.
func decodeFuzz(data []byte) (Desired, []provisioner.Machine, map[string]health.Verdict, RemediationState, Policy) {
	in := &fuzzInput{data: data}
	d := Desired{Cluster: "f", Groups: []Group{{Pool: cp, Role: v1alpha1.RoleControlPlane, Count: 1 + in.next(5), Image: "img-0", MaxUnavailable: in.next(3)}}}
	for _, p := range fuzzPools[:in.next(len(fuzzPools)+1)] {
		d.Groups = append(d.Groups, Group{Pool: p, Role: v1alpha1.RoleWorker, Count: in.next(9), Image: fmt.Sprintf("img-%d", in.next(2)), MaxUnavailable: in.next(4)})
	}
	var ms []provisioner.Machine
	vs := map[string]health.Verdict{}
	add := func(pool, role, name string) {
		m := provisioner.Machine{Name: name, Cluster: "f", Role: role, Pool: pool, Image: fmt.Sprintf("img-%d", in.next(2)), State: fuzzStates[in.next(len(fuzzStates))], Created: t0.Add(-time.Hour)}
		ms = append(ms, m)
		if v := fuzzVerdicts[in.next(len(fuzzVerdicts))]; v != nil {
			vs[name] = *v
		}
	}
	for _, pool := range []string{cp, "a", "b", "c", "gone"} {
		role := v1alpha1.RoleWorker
		if pool == cp {
			role = v1alpha1.RoleControlPlane
		}
		n, ord := in.next(9), 0
		for range n {
			ord += in.next(2)
			add(pool, role, provisioner.MachineName("f", pool, ord))
			ord++
		}
		if in.next(8) == 0 {
			add(pool, role, "hand-made-"+pool)
		}
	}
	ms = append(ms, provisioner.Machine{Name: "other-a-0", Cluster: "other", Pool: "a", State: provisioner.StateError})

	var st RemediationState
	for range in.next(3) {
		if len(ms) == 0 {
			break
		}
		old := ms[in.next(len(ms))]
		nw := provisioner.MachineName("f", old.Pool, 20+in.next(4))
		r := Replacement{Old: old.Name, New: nw, Pool: old.Pool, Rollout: in.next(2) == 0, Reason: "fuzz", Started: t0.Add(-time.Duration(in.next(30)) * time.Minute)}
		st.InFlight = append(st.InFlight, r)
		if st.Attempts == nil {
			st.Attempts = map[string][]time.Time{}
		}
		st.Attempts[old.Name] = append(st.Attempts[old.Name], r.Started)
		if in.next(2) == 0 && !slices.ContainsFunc(ms, func(m provisioner.Machine) bool { return m.Name == nw }) {
			add(old.Pool, old.Role, nw)
		}
	}
	for range in.next(3) {
		if len(ms) > 0 {
			st.Kept = append(st.Kept, ms[in.next(len(ms))].Name)
		}
	}
	p := Policy{
		MaxUnhealthy: []string{"", "1", "0", "100%", "50%"}[in.next(5)],
		MaxInFlight:  in.next(4),
		MaxAttempts:  in.next(4),
		KeepFailed:   in.next(2) == 0,
	}
	return d, ms, vs, st, p
}

// FuzzDecide holds the plans of arbitrary clusters to checkInvariants. Its seed corpus is in
// testdata/fuzz/FuzzDecide; run it with
//
//	go test -run '^$' -fuzz FuzzDecide -fuzztime 30s ./provisioner/reconcile
func FuzzDecide(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		d, ms, vs, st, p := decodeFuzz(data)
		plan := Decide(d, ms, vs, st, t0, p)
		if err := checkInvariants(d, ms, vs, st, plan); err != nil {
			t.Fatalf("%v\ndesired %+v\nobserved %+v\nverdicts %+v\nstate %+v\npolicy %+v\nplan %+v", err, d, ms, vs, st, p, plan)
		}
	})
}
