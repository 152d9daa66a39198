package v1alpha1

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kiln-dev/kiln/api/strictyaml"
)

func TestStarterRoundTrip(t *testing.T) {
	tests := []struct {
		name string
	}{
		{name: "demo"},
		{name: "a"},
		{name: strings.Repeat("k", MaxClusterNameLength)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Starter(tc.name)
			if fs := Validate(c); len(fs) > 0 {
				t.Errorf("Validate(Starter) = %v", fs)
			}
			out, err := Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			got, warnings, err := DecodeWithWarnings(out, "cluster.yaml")
			if err != nil {
				t.Fatalf("Decode of the starter spec: %v\n%s", err, out)
			}
			if len(warnings) > 0 {
				t.Errorf("Decode of the starter spec warns: %v", warnings)
			}
			if diff := cmp.Diff(c, got); diff != "" {
				t.Errorf("starter changed in Marshal and Decode (-starter +decoded):\n%s", diff)
			}
		})
	}
}

func TestStarter(t *testing.T) {
	c := Starter("demo")
	want := struct {
		Provider     string
		ControlPlane ControlPlane
		Pools        []NodePool
		SSH          SSH
		AdminCIDRs   []string
		Namespaces   map[string]PodSecurityLevels
	}{
		Provider:     ProviderQEMU,
		ControlPlane: ControlPlane{Count: 1, Image: "kiln-debian-12.qcow2"},
		Pools:        []NodePool{{Name: "workers", Count: 2, Image: "kiln-debian-12.qcow2", MaxUnavailable: 1, MaxConcurrentReboots: 1}},
		SSH:          SSH{User: "kiln", Generate: true},
		AdminCIDRs:   []string{"127.0.0.1/32"},
		Namespaces: map[string]PodSecurityLevels{
			"kube-system": {Enforce: LevelPrivileged},
			"default":     {Enforce: LevelRestricted},
		},
	}
	got := want
	got.Provider = c.Spec.Provider.Name
	got.ControlPlane = c.Spec.ControlPlane
	got.Pools = c.Spec.NodePools
	got.SSH = c.Spec.SSH
	got.AdminCIDRs = c.Spec.Network.AdminCIDRs
	got.Namespaces = c.Spec.Security.PodSecurity.Namespaces
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Starter (-want +got):\n%s", diff)
	}
}

// TestMarshalRoundTrip checks that every valid fixture survives Marshal and Decode unchanged.
func TestMarshalRoundTrip(t *testing.T) {
	for _, path := range fixtures(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Decode(data, path)
		if err != nil {
			continue // an invalid fixture
		}
		t.Run(path, func(t *testing.T) {
			out, err := Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Decode(out, "marshaled.yaml")
			if err != nil {
				t.Fatalf("Decode of marshaled %s: %v\n%s", path, err, out)
			}
			if diff := cmp.Diff(c, again, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Marshal and Decode changed %s (-before +after):\n%s", path, diff)
			}
		})
	}
}

func TestMarshalQuotesAmbiguousStrings(t *testing.T) {
	tests := []struct {
		name, value string
	}{
		{name: "number", value: "1.30"},
		{name: "bool", value: "true"},
		{name: "null", value: "null"},
		{name: "octal", value: "0o17"},
		{name: "empty", value: ""},
		{name: "multi-line", value: "line one\nline two\n"},
		{name: "leading space", value: " x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{Spec: ClusterSpec{NodePools: []NodePool{{Name: "a", Labels: map[string]string{"k": tc.value}}}}}
			out, err := Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			var got Cluster
			if _, findings := strictyaml.Decode(out, &got, decodeOptions); len(findings) > 0 {
				t.Fatalf("decode %s: %v", out, findings)
			}
			if v := got.Spec.NodePools[0].Labels["k"]; v != tc.value {
				t.Errorf("label value after Marshal and decode = %q, want %q\n%s", v, tc.value, out)
			}
		})
	}
}
