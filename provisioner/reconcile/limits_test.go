package reconcile

import (
	"math"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

// TestDecideRefusesAbsurdCounts checks that counts v1alpha1.Validate rejects are refused by the planner
// too, with a reason, no action, the state carried over, and no allocation in proportion to the count.
func TestDecideRefusesAbsurdCounts(t *testing.T) {
	cp := Group{Pool: provisioner.ControlPlanePool, Role: v1alpha1.RoleControlPlane, Count: 3, Image: "a"}
	worker := func(name string, n int) Group {
		return Group{Pool: name, Role: v1alpha1.RoleWorker, Count: n, Image: "a", MaxUnavailable: 1}
	}
	state := RemediationState{Kept: []string{"c-workers-7"}}
	tests := []struct {
		name   string
		groups []Group
		want   []Block
	}{
		{
			name:   "a pool of MaxInt machines",
			groups: []Group{cp, worker("workers", math.MaxInt)},
			want:   []Block{{Pool: "workers", Reason: "count 9223372036854775807 is more than the limit of 1000 machines a group"}},
		},
		{
			name:   "a negative count",
			groups: []Group{cp, worker("workers", -1)},
			want:   []Block{{Pool: "workers", Reason: "count -1 is negative"}},
		},
		{
			name:   "a control plane beyond etcd's useful size",
			groups: []Group{{Pool: provisioner.ControlPlanePool, Role: v1alpha1.RoleControlPlane, Count: 1 << 40, Image: "a"}},
			want:   []Block{{Pool: provisioner.ControlPlanePool, Reason: "count 1099511627776 is more than the limit of 7 machines a group"}},
		},
		{
			name:   "the cluster over its limit",
			groups: []Group{cp, worker("a", 1000), worker("b", 1000), worker("c", 1000), worker("d", 1000), worker("e", 1000)},
			want:   []Block{{Reason: "the cluster asks for 5003 machines, more than the limit of 5000"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			got := Decide(Desired{Cluster: "c", Groups: tc.groups}, nil, nil, state, t0, Policy{})
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("Decide allocated %d bytes, want a bounded amount", grew)
			}
			want := Plan{Blocked: tc.want, Next: state}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}
