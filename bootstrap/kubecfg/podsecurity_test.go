package kubecfg

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	apiserverapi "k8s.io/apiserver/pkg/apis/apiserver"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	psaapi "k8s.io/pod-security-admission/admission/api"
	"k8s.io/pod-security-admission/admission/api/load"
	psavalidation "k8s.io/pod-security-admission/admission/api/validation"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// podSecurityConfigFrom reads the PodSecurity plugin's configuration out of an AdmissionConfiguration
// the way kube-apiserver does: admission.ReadAdmissionConfiguration decodes the file strictly with the
// scheme of k8s.io/apiserver/pkg/server/options/admission.go, GetAdmissionPluginConfigurationFor hands
// the plugin its embedded configuration, and the plugin loads and validates it. (The admission package
// itself is not imported: it would pull CEL and OpenAPI into go.mod for two dozen lines.)
func podSecurityConfigFrom(t *testing.T, data []byte) *psaapi.PodSecurityConfiguration {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{apiserverapi.AddToScheme, apiserverv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	obj, err := runtime.Decode(serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDecoder(), data)
	if err != nil {
		t.Fatalf("decode admission configuration: %v", err)
	}
	ac, ok := obj.(*apiserverapi.AdmissionConfiguration)
	if !ok {
		t.Fatalf("decoded %T, want an AdmissionConfiguration", obj)
	}
	var found []apiserverapi.AdmissionPluginConfiguration
	for _, p := range ac.Plugins {
		if p.Name == PodSecurityPlugin {
			found = append(found, p)
		}
	}
	if len(found) != 1 || found[0].Configuration == nil || found[0].Path != "" {
		t.Fatalf("plugins %+v, want one %s plugin with an embedded configuration", ac.Plugins, PodSecurityPlugin)
	}
	psc, err := load.LoadFromData(found[0].Configuration.Raw)
	if err != nil {
		t.Fatalf("LoadFromData: %v", err)
	}
	if errs := psavalidation.ValidatePodSecurityConfiguration(psc); len(errs) > 0 {
		t.Fatalf("ValidatePodSecurityConfiguration: %v", errs.ToAggregate())
	}
	return psc
}

func TestAdmissionConfig(t *testing.T) {
	defaults := v1alpha1.PodSecurityLevels{Enforce: "baseline", Audit: "restricted", Warn: "restricted"}
	data, err := AdmissionConfig(defaults, []string{"kube-system", "kiln-system"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "admission-config.yaml", data)

	var ac apiserverv1.AdmissionConfiguration
	strict(t, data, &ac)

	psc := podSecurityConfigFrom(t, data)
	want := psaapi.PodSecurityDefaults{
		Enforce: "baseline", EnforceVersion: "latest",
		Audit: "restricted", AuditVersion: "latest",
		Warn: "restricted", WarnVersion: "latest",
	}
	if diff := cmp.Diff(want, psc.Defaults); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"kiln-system", "kube-system"}, psc.Exemptions.Namespaces); diff != "" {
		t.Errorf("exempt namespaces (-want +got):\n%s", diff)
	}
}

func TestAdmissionConfigNoExemptions(t *testing.T) {
	data, err := AdmissionConfig(v1alpha1.PodSecurityLevels{Enforce: "restricted", Audit: "restricted", Warn: "restricted"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if psc := podSecurityConfigFrom(t, data); len(psc.Exemptions.Namespaces) != 0 || psc.Defaults.Enforce != "restricted" {
		t.Errorf("got %+v", psc)
	}
}

func TestAdmissionConfigRejects(t *testing.T) {
	ok := v1alpha1.PodSecurityLevels{Enforce: "baseline", Audit: "restricted", Warn: "restricted"}
	for _, tc := range []struct {
		name     string
		defaults v1alpha1.PodSecurityLevels
		exempt   []string
		want     []string // one entry per finding, each a part of its message
	}{
		{name: "empty enforce", defaults: v1alpha1.PodSecurityLevels{Audit: "baseline", Warn: "baseline"}, want: []string{"enforce: invalid: level is empty"}},
		{name: "all empty", want: []string{"enforce", "audit", "warn"}},
		{name: "unknown level", defaults: v1alpha1.PodSecurityLevels{Enforce: "strict", Audit: "baseline", Warn: "Restricted"}, want: []string{`enforce: invalid: level "strict"`, `warn: invalid: level "Restricted"`}},
		{name: "bad namespace", defaults: ok, exempt: []string{"Kube_System"}, want: []string{`exempt namespace "Kube_System": invalid: not a DNS label`}},
		{name: "duplicate namespace", defaults: ok, exempt: []string{"a", "b", "a"}, want: []string{`exempt namespace "a": invalid: listed twice`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := AdmissionConfig(tc.defaults, tc.exempt)
			if data != nil {
				t.Errorf("data = %q, want nil", data)
			}
			checkFindings(t, err, tc.want)
		})
	}
}

// checkFindings checks that err joins exactly one finding per entry of want, in order, each containing
// its entry and wrapping ErrInvalid.
func checkFindings(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %d findings", len(want))
	}
	var got []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		got = j.Unwrap()
	} else {
		got = []error{err}
	}
	if len(got) != len(want) {
		t.Fatalf("%d findings, want %d:\n%v", len(got), len(want), err)
	}
	for i, e := range got {
		if !strings.Contains(e.Error(), want[i]) {
			t.Errorf("finding %d = %q, want it to contain %q", i, e, want[i])
		}
		if !errors.Is(e, ErrInvalid) {
			t.Errorf("finding %d = %q does not wrap ErrInvalid", i, e)
		}
		if !strings.HasPrefix(e.Error(), "kubecfg: ") {
			t.Errorf("finding %d = %q lacks the kubecfg: prefix", i, e)
		}
	}
}

func TestNamespaceManifests(t *testing.T) {
	data, err := NamespaceManifests(map[string]v1alpha1.PodSecurityLevels{
		"monitoring":  {Enforce: "privileged", Warn: "baseline"},
		"apps":        {Enforce: "restricted", Audit: "restricted", Warn: "restricted"},
		"kiln-system": {},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "namespaces.yaml", data)

	docs := documents(t, data)
	got := map[string]map[string]string{}
	var names []string
	for _, doc := range docs {
		var ns corev1.Namespace
		strict(t, doc, &ns)
		if ns.APIVersion != "v1" || ns.Kind != "Namespace" {
			t.Errorf("%s: apiVersion %q kind %q, want v1 Namespace", ns.Name, ns.APIVersion, ns.Kind)
		}
		names = append(names, ns.Name)
		got[ns.Name] = ns.Labels
	}
	if diff := cmp.Diff([]string{"apps", "kiln-system", "monitoring"}, names); diff != "" {
		t.Errorf("namespace order (-want +got):\n%s", diff)
	}
	want := map[string]map[string]string{
		"apps": {
			"pod-security.kubernetes.io/enforce":         "restricted",
			"pod-security.kubernetes.io/enforce-version": "latest",
			"pod-security.kubernetes.io/audit":           "restricted",
			"pod-security.kubernetes.io/audit-version":   "latest",
			"pod-security.kubernetes.io/warn":            "restricted",
			"pod-security.kubernetes.io/warn-version":    "latest",
		},
		"kiln-system": nil,
		"monitoring": {
			"pod-security.kubernetes.io/enforce":         "privileged",
			"pod-security.kubernetes.io/enforce-version": "latest",
			"pod-security.kubernetes.io/warn":            "baseline",
			"pod-security.kubernetes.io/warn-version":    "latest",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
}

func TestNamespaceManifestsEmpty(t *testing.T) {
	data, err := NamespaceManifests(nil)
	if err != nil || len(data) != 0 {
		t.Errorf("NamespaceManifests(nil) = %q, %v; want nothing", data, err)
	}
}

func TestNamespaceManifestsRejects(t *testing.T) {
	_, err := NamespaceManifests(map[string]v1alpha1.PodSecurityLevels{
		"ok":       {Enforce: "baseline"},
		"Bad.Name": {Enforce: "baseline"},
		"levels":   {Enforce: "none", Audit: "baseline", Warn: "max"},
	})
	checkFindings(t, err, []string{
		`namespace "Bad.Name": invalid: not a DNS label`,
		`namespace "levels": enforce: invalid: level "none"`,
		`namespace "levels": warn: invalid: level "max"`,
	})
}
