package butane

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kiln-dev/kiln/api/v1alpha1"
)

func TestRoles(t *testing.T) {
	if diff := cmp.Diff([]string{v1alpha1.RoleControlPlane, v1alpha1.RoleWorker}, Roles()); diff != "" {
		t.Errorf("roles (-want +got):\n%s", diff)
	}
}

func TestSource(t *testing.T) {
	for _, tc := range []struct {
		name, role, want, wantErr string
	}{
		{name: "worker", role: v1alpha1.RoleWorker, want: "variant: fcos"},
		{name: "control plane", role: v1alpha1.RoleControlPlane, want: "etcd.service"},
		{name: "unknown role", role: "etcd", wantErr: `butane: no template for role "etcd" (have control-plane, worker)`},
		{name: "shared pieces are not a role", role: "_common", wantErr: `no template for role "_common"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := Source(tc.role)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(string(src), tc.want) {
				t.Fatalf("got %v, source lacks %q", err, tc.want)
			}
		})
	}
}

func TestShared(t *testing.T) {
	shared, err := Shared()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(shared["_common"]), `define "common-files"`) {
		t.Errorf("shared templates: %v", shared)
	}
}
