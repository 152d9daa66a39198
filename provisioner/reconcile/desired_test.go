package reconcile

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

func TestDesiredFromSpec(t *testing.T) {
	tests := []struct {
		name string
		spec v1alpha1.ClusterSpec
		want Desired
	}{
		{
			name: "defaults",
			spec: v1alpha1.ClusterSpec{
				ControlPlane: v1alpha1.ControlPlane{Image: "cp.qcow2"},
				NodePools:    []v1alpha1.NodePool{{Name: "workers", Count: 2, Image: "w.qcow2"}},
			},
			want: Desired{Cluster: "prod", Groups: []Group{
				{Pool: provisioner.ControlPlanePool, Role: v1alpha1.RoleControlPlane, Count: 1, Image: "cp.qcow2"},
				{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 2, Image: "w.qcow2", MaxUnavailable: 1},
			}},
		},
		{
			name: "pools in spec order",
			spec: v1alpha1.ClusterSpec{
				ControlPlane: v1alpha1.ControlPlane{Count: 3, Image: "ami-1"},
				NodePools: []v1alpha1.NodePool{
					{Name: "web", Count: 5, Image: "ami-2", MaxUnavailable: 2},
					{Name: "batch", Count: 0, Image: "ami-3"},
				},
			},
			want: Desired{Cluster: "prod", Groups: []Group{
				{Pool: provisioner.ControlPlanePool, Role: v1alpha1.RoleControlPlane, Count: 3, Image: "ami-1"},
				{Pool: "web", Role: v1alpha1.RoleWorker, Count: 5, Image: "ami-2", MaxUnavailable: 2},
				{Pool: "batch", Role: v1alpha1.RoleWorker, Count: 0, Image: "ami-3", MaxUnavailable: 1},
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := DesiredFromSpec(&v1alpha1.Cluster{Metadata: v1alpha1.Metadata{Name: "prod"}, Spec: tc.spec})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DesiredFromSpec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPolicyDefaults(t *testing.T) {
	got := PolicyFromSpec(v1alpha1.Health{}).withDefaults()
	want := Policy{MaxUnhealthy: "40%", MaxInFlight: 1, MaxAttempts: 3, BackoffBase: 30 * time.Second, BackoffCap: 10 * time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if got := PolicyFromSpec(v1alpha1.Health{MaxUnhealthy: "2"}).maxUnhealthy(10); got != 2 {
		t.Errorf("maxUnhealthy 2 of 10 = %d, want 2", got)
	}
}
