package kubecfg

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	cliflag "k8s.io/component-base/cli/flag"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

func TestKubeletConfig(t *testing.T) {
	data, err := KubeletConfig(KubeletInput{ServiceCIDR: "10.96.0.0/12"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kubelet-config.yaml", data)

	var c kubeletv1beta1.KubeletConfiguration
	strict(t, data, &c)

	// Every setting is written out, not left to the kubelet's defaults (which, for the anonymous and
	// webhook switches, differ between the flag and the config file).
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"cgroupDriver":             "systemd",
		"clusterDNS":               []any{"10.96.0.10"},
		"clusterDomain":            "cluster.local",
		"containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
		"eventRecordQPS":           float64(5),
		"makeIPTablesUtilChains":   true,
		"protectKernelDefaults":    true,
		"readOnlyPort":             float64(0),
		"rotateCertificates":       true,
		"serverTLSBootstrap":       true,
		"tlsCipherSuites":          anySlice(TLSCipherSuites),
		"tlsMinVersion":            "VersionTLS12",
	}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("kubelet config (-want +got):\n%s", diff)
	}
	if _, err := cliflag.TLSCipherSuites(c.TLSCipherSuites); err != nil {
		t.Errorf("tlsCipherSuites: %v", err)
	}
	if _, err := cliflag.TLSVersion(c.TLSMinVersion); err != nil {
		t.Errorf("tlsMinVersion: %v", err)
	}
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func TestKubeletConfigInputs(t *testing.T) {
	data, err := KubeletConfig(KubeletInput{ServiceCIDR: "fd00:10:96::/108", ClusterDomain: "example.internal", ClientCAFile: "/srv/pki/ca.crt"})
	if err != nil {
		t.Fatal(err)
	}
	var c kubeletv1beta1.KubeletConfiguration
	strict(t, data, &c)
	if got := []string{c.ClusterDNS[0], c.ClusterDomain, c.Authentication.X509.ClientCAFile}; !cmp.Equal(got, []string{"fd00:10:96::a", "example.internal", "/srv/pki/ca.crt"}) {
		t.Errorf("got %v", got)
	}
}

func TestKubeletConfigRejects(t *testing.T) {
	_, err := KubeletConfig(KubeletInput{ServiceCIDR: "10.96.0.0/29", ClusterDomain: "Cluster Local", ClientCAFile: "ca.crt"})
	checkFindings(t, err, []string{"service cidr 10.96.0.0/29: invalid: too small", `cluster domain "Cluster Local"`, `client ca file "ca.crt"`})
}

func TestClusterDNSAddress(t *testing.T) {
	for _, tc := range []struct {
		cidr, want string
		err        error
	}{
		{cidr: "10.96.0.0/12", want: "10.96.0.10"},
		{cidr: "172.20.0.0/16", want: "172.20.0.10"},
		{cidr: "10.0.0.0/28", want: "10.0.0.10"},
		{cidr: "fd00::/108", want: "fd00::a"},
		{cidr: "10.0.0.0/29", err: ErrInvalid},
		{cidr: "10.96.0.1/12", err: ErrInvalid},
		{cidr: "10.96.0.0", err: ErrInvalid},
		{cidr: "", err: ErrInvalid},
	} {
		t.Run(tc.cidr, func(t *testing.T) {
			got, err := ClusterDNSAddress(tc.cidr)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Errorf("ClusterDNSAddress(%q) = %q, %v; want %q, %v", tc.cidr, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestKubeletSysctls(t *testing.T) {
	got := map[string]string{}
	for _, line := range strings.Split(string(KubeletSysctls()), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, " = ")
		if !ok {
			t.Fatalf("line %q is not key = value", line)
		}
		got[k] = v
	}
	// The values of k8s.io/component-helpers/node/util/sysctl that the kubelet's setupKernelTunables checks.
	want := map[string]string{
		"vm.overcommit_memory":      "1",
		"vm.panic_on_oom":           "0",
		"kernel.panic":              "10",
		"kernel.panic_on_oops":      "1",
		"kernel.keys.root_maxkeys":  "1000000",
		"kernel.keys.root_maxbytes": "25000000",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sysctls (-want +got):\n%s", diff)
	}
}
