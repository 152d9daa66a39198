package strictyaml

import "testing"

func TestPathHelpers(t *testing.T) {
	tests := []struct {
		name, path, parent string
	}{
		{name: "top level", path: "spec", parent: ""},
		{name: "field", path: "spec.network.nodeCIDR", parent: "spec.network"},
		{name: "element", path: "spec.nodePools[1]", parent: "spec.nodePools"},
		{name: "field of element", path: "spec.nodePools[1].count", parent: "spec.nodePools[1]"},
		{name: "plain key", path: "spec.security.podSecurity.namespaces.kube-system", parent: "spec.security.podSecurity.namespaces"},
		{name: "quoted key", path: KeyPath("spec.nodePools[0].labels", "example.com/role"), parent: "spec.nodePools[0].labels"},
		{name: "quoted key with brackets and quotes", path: KeyPath("a", `x["y"].z`), parent: "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parentPath(tc.path); got != tc.parent {
				t.Errorf("parentPath(%q) = %q, want %q", tc.path, got, tc.parent)
			}
			if !isWithin(tc.path, tc.parent) {
				t.Errorf("isWithin(%q, %q) = false", tc.path, tc.parent)
			}
		})
	}
	if isWithin("spec.networks", "spec.network") {
		t.Errorf("isWithin(spec.networks, spec.network) = true")
	}
}
