package v1alpha1

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kiln-dev/kiln/api/strictyaml"
)

// Pieces of test specs. head is lines 1-5; after it, qemu is lines 6-7, cp lines 8-9 and gen lines
// 10-11, so that anything appended to minimal starts at line 12.
const (
	head = "apiVersion: kiln.dev/v1alpha1\n" +
		"kind: Cluster\n" +
		"metadata:\n" +
		"  name: demo\n" +
		"spec:\n"
	qemu = "  provider:\n" +
		"    name: qemu\n"
	cp = "  controlPlane:\n" +
		"    image: kiln.qcow2\n"
	gen = "  ssh:\n" +
		"    generate: true\n"
	minimal = head + qemu + cp + gen
)

// findingsOf decodes doc and returns every finding: those of the *Error if it fails, else the warnings.
func findingsOf(t *testing.T, doc string) []strictyaml.Finding {
	t.Helper()
	c, warnings, err := DecodeWithWarnings([]byte(doc), "test.yaml")
	if err != nil {
		var e *strictyaml.Error
		if !errors.As(err, &e) {
			t.Fatalf("error is %T, want *Error: %v", err, err)
		}
		if c != nil || warnings != nil {
			t.Errorf("failed DecodeWithWarnings returned a cluster or warnings")
		}
		if e.File != "test.yaml" {
			t.Errorf("Error.File = %q, want test.yaml", e.File)
		}
		return e.Findings
	}
	if c == nil {
		t.Fatalf("DecodeWithWarnings returned neither a cluster nor an error")
	}
	return warnings
}

func errAt(path string, line, col int, msg string) strictyaml.Finding {
	return strictyaml.Finding{Path: path, Line: line, Column: col, Severity: strictyaml.SeverityError, Message: msg}
}

func warnAt(path string, line, col int, msg string) strictyaml.Finding {
	return strictyaml.Finding{Path: path, Line: line, Column: col, Severity: strictyaml.SeverityWarning, Message: msg}
}

func TestDecodeFindings(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []strictyaml.Finding
	}{
		{
			name: "minimal spec",
			doc:  minimal,
		},
		{
			name: "empty input",
			doc:  "",
			want: []strictyaml.Finding{errAt("", 0, 0, "empty document: want a Cluster spec")},
		},
		{
			name: "only comments and separators",
			doc:  "# a comment\n---\n---\n",
			want: []strictyaml.Finding{errAt("", 0, 0, "empty document: want a Cluster spec")},
		},
		{
			name: "syntax error with its line",
			doc:  head + "  provider:\n    name: qemu\n   bad: [\n",
			want: []strictyaml.Finding{errAt("", 8, 0, "invalid YAML: did not find expected key")},
		},
		{
			name: "unknown anchor",
			doc:  head + "  provider: *nothing\n",
			want: []strictyaml.Finding{errAt("", 6, 0, "invalid YAML: unknown anchor 'nothing' referenced")},
		},
		{
			name: "two documents",
			doc:  minimal + "---\n" + minimal,
			want: []strictyaml.Finding{errAt("", 12, 1, "a second YAML document: a spec file holds exactly one cluster")},
		},
		{
			name: "a trailing empty document is fine",
			doc:  minimal + "---\n",
		},
		{
			name: "root is a sequence",
			doc:  "- apiVersion: kiln.dev/v1alpha1\n",
			want: []strictyaml.Finding{errAt("", 1, 1, "expected a mapping (a Cluster spec), got a sequence")},
		},
		{
			name: "root is null",
			doc:  "~\n",
			want: []strictyaml.Finding{errAt("", 1, 1, "expected a mapping (a Cluster spec), got null")},
		},
		{
			name: "unknown field with a suggestion hides the missing field it meant",
			doc:  head + qemu + "  contrlPlane:\n    image: kiln.qcow2\n" + gen,
			want: []strictyaml.Finding{errAt("spec.contrlPlane", 8, 3, `unknown field "contrlPlane", did you mean "controlPlane"?`)},
		},
		{
			name: "unknown field suggestion ignores case",
			doc:  minimal + "  nodepools: []\n",
			want: []strictyaml.Finding{errAt("spec.nodepools", 12, 3, `unknown field "nodepools", did you mean "nodePools"?`)},
		},
		{
			name: "unknown field without a close match lists the known ones",
			doc:  minimal + "  replicas: 3\n",
			want: []strictyaml.Finding{errAt("spec.replicas", 12, 3, `unknown field "replicas" (known: kubernetesVersion, provider, network, controlPlane, nodePools, ssh, security, health)`)},
		},
		{
			name: "unknown field next to the field it resembles",
			doc:  head + qemu + "  controlPlane:\n    image: kiln.qcow2\n    imag: other\n" + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.imag", 10, 5, `unknown field "imag", did you mean "image"?`)},
		},
		{
			name: "integer field given a word",
			doc:  head + qemu + "  controlPlane:\n    count: three\n    image: kiln.qcow2\n" + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.count", 9, 12, `expected an integer, got string "three"`)},
		},
		{
			name: "integer field given a float",
			doc:  minimal + "  nodePools:\n    - name: a\n      count: 1.5\n      image: x\n",
			want: []strictyaml.Finding{errAt("spec.nodePools[0].count", 14, 14, "expected an integer, got float 1.5")},
		},
		{
			name: "integer out of range",
			doc:  minimal + "  nodePools:\n    - name: a\n      count: 99999999999999999999\n      image: x\n",
			want: []strictyaml.Finding{errAt("spec.nodePools[0].count", 14, 14, "expected an integer, got float 99999999999999999999")},
		},
		{
			name: "string field given a number suggests quoting",
			doc:  minimal + "  kubernetesVersion: 1.30\n",
			want: []strictyaml.Finding{errAt("spec.kubernetesVersion", 12, 22, `expected a string, got float 1.30 (quote it: "1.30")`)},
		},
		{
			name: "string field given a bool",
			doc:  minimal + "  nodePools:\n    - name: a\n      count: 1\n      image: x\n      labels:\n        gpu: true\n",
			want: []strictyaml.Finding{errAt(`spec.nodePools[0].labels.gpu`, 17, 14, `expected a string, got bool true (quote it: "true")`)},
		},
		{
			name: "bool field given a string",
			doc:  head + qemu + cp + "  ssh:\n    generate: yes\n",
			want: []strictyaml.Finding{errAt("spec.ssh.generate", 11, 15, `expected true or false, got string "yes"`)},
		},
		{
			name: "sequence field given a scalar",
			doc:  minimal + "  network:\n    adminCIDRs: 10.0.0.0/8\n",
			want: []strictyaml.Finding{errAt("spec.network.adminCIDRs", 13, 17, `expected a sequence, got string "10.0.0.0/8"`)},
		},
		{
			name: "mapping field given a scalar",
			doc:  minimal + "  network: private\n",
			want: []strictyaml.Finding{errAt("spec.network", 12, 12, `expected a mapping, got string "private"`)},
		},
		{
			name: "mapping field given a sequence",
			doc:  minimal + "  security:\n    podSecurity:\n      namespaces: [default]\n",
			want: []strictyaml.Finding{errAt("spec.security.podSecurity.namespaces", 14, 19, "expected a mapping, got a sequence")},
		},
		{
			name: "pointer block given a scalar",
			doc:  head + "  provider:\n    name: qemu\n    qemu: fast\n" + cp + gen,
			want: []strictyaml.Finding{errAt("spec.provider.qemu", 8, 11, `expected a mapping, got string "fast"`)},
		},
		{
			name: "duration given a number",
			doc:  minimal + "  security:\n    bootstrapTokenTTL: 3600\n",
			want: []strictyaml.Finding{errAt("spec.security.bootstrapTokenTTL", 13, 24, `not a duration (want e.g. 90s, 10m, 1h): "3600"`)},
		},
		{
			name: "duration given a mapping",
			doc:  minimal + "  health:\n    unhealthyTimeout: {minutes: 5}\n",
			want: []strictyaml.Finding{errAt("spec.health.unhealthyTimeout", 13, 23, "expected a string, got a mapping")},
		},
		{
			name: "a wrong value is reported once, not again by validation",
			doc:  head + qemu + "  controlPlane:\n    image: [a, b]\n" + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.image", 9, 12, "expected a string, got a sequence")},
		},
		{
			name: "wrong types in the ssh block do not also fail the exactly-one rule",
			doc:  head + qemu + cp + "  ssh:\n    generate: 1\n",
			want: []strictyaml.Finding{errAt("spec.ssh.generate", 11, 15, "expected true or false, got integer 1")},
		},
		{
			name: "duplicate key",
			doc:  head + qemu + "  controlPlane:\n    image: a.qcow2\n    image: b.qcow2\n" + gen,
			want: []strictyaml.Finding{errAt("spec.controlPlane.image", 10, 5, `duplicate key "image", first at line 9`)},
		},
		{
			name: "duplicate map key",
			doc:  minimal + "  security:\n    podSecurity:\n      namespaces:\n        default: {enforce: restricted}\n        default: {enforce: baseline}\n",
			want: []strictyaml.Finding{errAt("spec.security.podSecurity.namespaces.default", 16, 9, `duplicate key "default", first at line 15`)},
		},
		{
			name: "key that is not a scalar",
			doc:  minimal + "  nodePools:\n    - name: a\n      count: 1\n      image: x\n      labels:\n        [a, b]: c\n",
			want: []strictyaml.Finding{errAt("spec.nodePools[0].labels", 17, 9, "expected a string key, got a sequence")},
		},
		{
			name: "null values are absent values",
			doc:  minimal + "  network:\n  nodePools: ~\n  security:\n    audit:\n      enabled: null\n",
		},
		{
			name: "maxUnhealthy takes an integer count",
			doc:  minimal + "  health:\n    maxUnhealthy: 2\n",
		},
		{
			name: "unsupported tag",
			doc:  minimal + "  kubernetesVersion: !version v1.37.2\n",
			want: []strictyaml.Finding{errAt("spec.kubernetesVersion", 12, 22, `unsupported YAML tag "!version"`)},
		},
		{
			name: "anchors and aliases",
			doc: minimal + "  nodePools:\n" +
				"    - &pool\n" +
				"      name: a\n" +
				"      count: 1\n" +
				"      image: &image kiln.qcow2\n" +
				"    - name: b\n" +
				"      count: 2\n" +
				"      image: *image\n",
		},
		{
			name: "merge keys, own keys win",
			doc: minimal + "  nodePools:\n" +
				"    - &pool\n" +
				"      name: a\n" +
				"      count: 1\n" +
				"      image: kiln.qcow2\n" +
				"    - <<: *pool\n" +
				"      name: b\n",
		},
		{
			name: "merge key needs a mapping",
			doc:  minimal + "  nodePools:\n    - <<: [1]\n      name: b\n      count: 1\n      image: x\n",
			want: []strictyaml.Finding{errAt("spec.nodePools[0]", 13, 12, "merge key needs a mapping or a sequence of mappings")},
		},
		{
			name: "problems under an alias point at the anchored value",
			doc: minimal + "  nodePools:\n" +
				"    - &pool\n" +
				"      name: a\n" +
				"      count: x\n" +
				"      image: kiln.qcow2\n" +
				"    - *pool\n",
			want: []strictyaml.Finding{
				errAt("spec.nodePools[1].name", 14, 13, `duplicate pool name "a", also at spec.nodePools[0]`),
				errAt("spec.nodePools[0].count", 15, 14, `expected an integer, got string "x"`),
				errAt("spec.nodePools[1].count", 15, 14, `expected an integer, got string "x"`),
			},
		},
		{
			name: "explicit zero replaced by a default is a warning",
			doc:  head + qemu + "  controlPlane:\n    count: 0\n    image: kiln.qcow2\n" + gen + "  network:\n    nodeCIDR: \"\"\n",
			want: []strictyaml.Finding{
				warnAt("spec.controlPlane.count", 9, 12, "0 is replaced by the default, 1"),
				warnAt("spec.network.nodeCIDR", 14, 15, `"" is replaced by the default, "10.0.0.0/16"`),
			},
		},
		{
			name: "zero duration replaced by a default is a warning",
			doc:  minimal + "  health:\n    unhealthyTimeout: 0s\n",
			want: []strictyaml.Finding{warnAt("spec.health.unhealthyTimeout", 13, 23, "0s is replaced by the default, 5m")},
		},
		{
			name: "findings are sorted by line and column",
			doc: head + "  provider:\n    name: qemu\n  controlPlane:\n    count: 2\n    image: x\n" + gen +
				"  kubernetesVersion: latest\n",
			want: []strictyaml.Finding{
				errAt("spec.controlPlane.count", 9, 12, "must be odd: etcd needs a majority of its members for quorum, so 2 members tolerate 0 failures, no more than 1; use 1 or 3"),
				errAt("spec.kubernetesVersion", 13, 22, `"latest" is not a Kubernetes version (want e.g. v1.37.2)`),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := findingsOf(t, tc.doc)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeAliasBomb checks that aliases cannot make a short document take long to decode: merge keys
// nested ten deep, ten aliases each, would bring in 10^10 labels.
func TestDecodeAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("anchors:\n  - &l0 {k: v}\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "  - &l%d {<<: [%s]}\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	b.WriteString(minimal)
	b.WriteString("  nodePools:\n    - name: a\n      count: 1\n      image: x\n      labels: *l10\n")
	start := time.Now()
	_, err := Decode([]byte(b.String()), "bomb.yaml")
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Decode took %s", elapsed)
	}
	if err == nil || !strings.Contains(err.Error(), "document expands to more than 100000 values") {
		t.Errorf("Decode error = %v, want one about the document expanding", err)
	}
}

func TestDecodeResult(t *testing.T) {
	doc := minimal + "  nodePools:\n" +
		"    - name: workers\n" +
		"      count: 2\n" +
		"      image: kiln.qcow2\n" +
		"      labels:\n" +
		"        example.com/role: worker\n" +
		"  health:\n" +
		"    maxUnhealthy: 3\n"
	got, err := Decode([]byte(doc), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	enabled := true
	want := &Cluster{
		APIVersion: GroupVersion,
		Kind:       KindCluster,
		Metadata:   Metadata{Name: "demo"},
		Spec: ClusterSpec{
			KubernetesVersion: "v1.37.2",
			Provider: Provider{
				Name: ProviderQEMU,
				QEMU: &QEMUProvider{MemoryMiB: 2048, CPUs: 2, SSHPortBase: 2222, APIPortBase: 16443},
			},
			Network: Network{
				NodeCIDR:       "10.0.0.0/16",
				PrivateSubnets: []string{"10.0.0.0/24"},
				PodCIDR:        "10.244.0.0/16",
				ServiceCIDR:    "10.96.0.0/12",
				ClusterDomain:  "cluster.local",
				APIEndpoint:    APIEndpoint{LoadBalancerName: "api.demo.kiln.internal", Address: "10.0.0.5", Port: 6443},
			},
			ControlPlane: ControlPlane{Count: 1, Image: "kiln.qcow2"},
			NodePools: []NodePool{{
				Name:                 "workers",
				Count:                2,
				Image:                "kiln.qcow2",
				Labels:               map[string]string{"example.com/role": "worker"},
				MaxUnavailable:       1,
				MaxConcurrentReboots: 1,
			}},
			SSH: SSH{User: "kiln", Generate: true},
			Security: Security{
				PodSecurity: PodSecurity{
					Defaults: PodSecurityLevels{Enforce: LevelBaseline, Audit: LevelRestricted, Warn: LevelRestricted},
				},
				Encryption:        Encryption{Provider: EncryptionSecretbox},
				Audit:             Audit{Enabled: &enabled},
				BootstrapTokenTTL: Duration{time.Hour},
				EnrollmentTTL:     Duration{15 * time.Minute},
			},
			Health: Health{
				NodeStartupTimeout: Duration{10 * time.Minute},
				UnhealthyTimeout:   Duration{5 * time.Minute},
				MaxUnhealthy:       "3",
			},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Decode (-want +got):\n%s", diff)
	}
}

func TestDecodeErrorFormat(t *testing.T) {
	doc := head + qemu + "  controlPlane:\n    count: 4\n    image: x\n" + gen + "  network:\n    adminCIDRs: [0.0.0.0/0]\n"
	_, err := Decode([]byte(doc), "cluster.yaml")
	want := "cluster.yaml:9:12: spec.controlPlane.count: must be odd: etcd needs a majority of its members for quorum, so 4 members tolerate 1 failure, no more than 3; use 3 or 5\n" +
		"cluster.yaml:14:18: spec.network.adminCIDRs[0]: warning: 0.0.0.0/0 lets the whole internet reach SSH on the nodes"
	if err == nil || err.Error() != want {
		t.Errorf("Decode error =\n%v\nwant\n%s", err, want)
	}
}
