package clusterapply

import (
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// Apply against a real API server is tested in bootstrap/clustertest and internal/cli
// (TestControlPlaneRunAndSecure); these are the refusals that happen before any request.

func TestApplyRefusesBadManifests(t *testing.T) {
	// No server: a manifest that got as far as a request would fail on the unreachable host instead.
	cfg := &rest.Config{Host: "https://192.0.2.1:1"}
	for _, tc := range []struct {
		name, manifest, want string
	}{
		{name: "not YAML", manifest: "kind: [", want: "manifest 0, document 0"},
		{name: "no kind", manifest: "apiVersion: v1\nmetadata:\n  name: x\n", want: "want apiVersion, kind and metadata.name"},
		{name: "no name in the second document", manifest: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Namespace\n",
			want: "manifest 0, document 1: want apiVersion, kind and metadata.name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changes, err := Apply(t.Context(), cfg, []byte(tc.manifest))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if len(changes) != 0 {
				t.Errorf("changes %v before anything was applied", changes)
			}
		})
	}
	if changes, err := Apply(t.Context(), cfg, []byte("---\n")); err != nil || changes != nil {
		t.Errorf("nothing to apply: got %v, %v", changes, err)
	}
}

func TestChangeString(t *testing.T) {
	for _, tc := range []struct {
		ch   Change
		want string
	}{
		{Change{Kind: "Namespace", Name: "restricted", Action: Created}, "namespace/restricted created"},
		{Change{Kind: "Secret", Namespace: "kube-system", Name: "bootstrap-token-abcdef", Action: Unchanged}, "kube-system/secret/bootstrap-token-abcdef unchanged"},
	} {
		if got := tc.ch.String(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.ch, got, tc.want)
		}
	}
}

func TestSecureManifests(t *testing.T) {
	c := v1alpha1.Starter("demo")
	ms, err := SecureManifests(c)
	if err != nil {
		t.Fatal(err)
	}
	all := string(ms[0]) + string(ms[1])
	for _, want := range []string{"kind: Namespace", "pod-security.kubernetes.io/enforce", "kind: ClusterRoleBinding", "kiln:kubelet-bootstrap"} {
		if !strings.Contains(all, want) {
			t.Errorf("the manifests lack %q", want)
		}
	}
}
