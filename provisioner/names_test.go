package provisioner

import (
	"fmt"
	"testing"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

func TestMachineNameMatchesControlPlaneNodeNames(t *testing.T) {
	c := &v1alpha1.Cluster{Metadata: v1alpha1.Metadata{Name: "prod"}, Spec: v1alpha1.ClusterSpec{ControlPlane: v1alpha1.ControlPlane{Count: 3}}}
	for i, want := range secrets.ControlPlaneNodeNames(c) {
		if got := MachineName("prod", ControlPlanePool, i); got != want {
			t.Errorf("MachineName(prod, %s, %d) = %q, want %q", ControlPlanePool, i, got, want)
		}
	}
}

func TestOrdinal(t *testing.T) {
	tests := []struct {
		name    string
		cluster string
		pool    string
		machine string
		want    int
		wantOK  bool
	}{
		{name: "worker", cluster: "prod", pool: "workers", machine: "prod-workers-12", want: 12, wantOK: true},
		{name: "control plane", cluster: "prod", pool: ControlPlanePool, machine: "prod-control-plane-0", want: 0, wantOK: true},
		{name: "other pool", cluster: "prod", pool: "workers", machine: "prod-gpu-1"},
		{name: "other cluster", cluster: "prod", pool: "workers", machine: "dev-workers-1"},
		{name: "pool name prefix", cluster: "prod", pool: "a", machine: "prod-a-b-1"},
		{name: "leading zero", cluster: "prod", pool: "workers", machine: "prod-workers-01"},
		{name: "no ordinal", cluster: "prod", pool: "workers", machine: "prod-workers-"},
		{name: "sign", cluster: "prod", pool: "workers", machine: "prod-workers--1"},
		{name: "too large", cluster: "prod", pool: "workers", machine: "prod-workers-99999999999999999999999"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Ordinal(tc.cluster, tc.pool, tc.machine)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Ordinal(%q, %q, %q) = %d, %t, want %d, %t", tc.cluster, tc.pool, tc.machine, got, ok, tc.want, tc.wantOK)
			}
			if ok && MachineName(tc.cluster, tc.pool, got) != tc.machine {
				t.Errorf("MachineName does not give %q back", tc.machine)
			}
		})
	}
}

func TestClientToken(t *testing.T) {
	a := ClientToken("prod", "prod-workers-0")
	if len(a) == 0 || len(a) > 64 {
		t.Fatalf("ClientToken length %d, want 1 to 64", len(a))
	}
	for _, r := range a {
		if r > 0x7e || r < 0x20 {
			t.Fatalf("ClientToken %q is not printable ASCII", a)
		}
	}
	if b := ClientToken("prod", "prod-workers-0"); a != b {
		t.Errorf("ClientToken is not deterministic: %q, %q", a, b)
	}
	seen := map[string][2]string{}
	for _, in := range [][2]string{{"prod", "prod-workers-0"}, {"prod", "prod-workers-1"}, {"dev", "prod-workers-0"}, {"a-b", "c"}, {"a", "b-c"}, {"a-", "bc"}} {
		tok := ClientToken(in[0], in[1])
		if prev, dup := seen[tok]; dup {
			t.Errorf("ClientToken%v = ClientToken%v", in, prev)
		}
		seen[tok] = in
	}
}

func ExampleMachineName() {
	fmt.Println(MachineName("prod", ControlPlanePool, 0))
	fmt.Println(MachineName("prod", "workers", 2))
	// Output:
	// prod-control-plane-0
	// prod-workers-2
}
