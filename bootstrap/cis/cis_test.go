package cis

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
)

// rendered is what kiln renders for a control-plane node, as kubecfg renders it.
func rendered(t *testing.T) Input {
	t.Helper()
	key := bytes.Repeat([]byte{7}, kubecfg.EncryptionKeySize)
	enc, err := kubecfg.EncryptionConfig("secretbox", key)
	if err != nil {
		t.Fatal(err)
	}
	return Input{
		APIServer: kubecfg.APIServerFlags(kubecfg.APIServerInput{
			AuditEnabled: true,
			ServiceCIDR:  "10.96.0.0/12",
			EtcdServers:  []string{"https://127.0.0.1:2379"},
		}),
		ControllerManager: kubecfg.ControllerManagerFlags(kubecfg.ControllerManagerInput{PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12"}),
		Scheduler:         kubecfg.SchedulerFlags(kubecfg.SchedulerInput{}),
		Etcd: []string{
			"--client-cert-auth=true", "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
			"--cert-file=/etc/kubernetes/pki/etcd/server.crt", "--key-file=/etc/kubernetes/pki/etcd/server.key",
			"--peer-client-cert-auth=true", "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
			"--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt", "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
		},
		Files: map[string][]byte{
			kubecfg.DefaultEncryptionConfigFile: enc,
			"/etc/kubernetes/pki/ca.crt":        []byte("cluster CA"),
			"/etc/kubernetes/pki/etcd/ca.crt":   []byte("etcd CA"),
		},
	}
}

// set replaces or adds --name=value in args; an empty value removes the flag.
func set(args []string, name, value string) []string {
	out := slices.DeleteFunc(slices.Clone(args), func(a string) bool {
		return strings.HasPrefix(a, "--"+name+"=") || a == "--"+name
	})
	if value != "" {
		out = append(out, "--"+name+"="+value)
	}
	return out
}

func failed(fs []Finding) []string {
	var ids []string
	for _, f := range fs {
		if f.Result == Fail {
			ids = append(ids, f.Component+" "+f.ID)
		}
	}
	return ids
}

func TestRenderedPasses(t *testing.T) {
	fs := Check(rendered(t))
	if got := failed(fs); len(got) > 0 {
		for _, f := range fs {
			if f.Result == Fail {
				t.Logf("%s %s %s: %s", f.ID, f.Component, f.Check, f.Detail)
			}
		}
		t.Errorf("kiln's rendered flags fail %v", got)
	}
	// Every item is checked once.
	seen := map[string]bool{}
	for _, f := range fs {
		if seen[f.ID] {
			t.Errorf("item %s checked twice", f.ID)
		}
		seen[f.ID] = true
	}
	if len(fs) != 40 {
		t.Errorf("%d findings, want 40", len(fs))
	}
}

func TestDrift(t *testing.T) {
	for _, tc := range []struct {
		name  string
		drift func(in *Input)
		want  []string
	}{
		{
			name:  "anonymous auth on",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "anonymous-auth", "true") },
			want:  []string{"kube-apiserver 1.2.1"},
		},
		{
			name:  "anonymous auth left to its default",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "anonymous-auth", "") },
			want:  []string{"kube-apiserver 1.2.1"},
		},
		{
			name:  "a static token file",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "token-auth-file", "/etc/kubernetes/tokens.csv") },
			want:  []string{"kube-apiserver 1.2.2"},
		},
		{
			name:  "AlwaysAllow",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "authorization-mode", "AlwaysAllow") },
			want:  []string{"kube-apiserver 1.2.6", "kube-apiserver 1.2.7", "kube-apiserver 1.2.8"},
		},
		{
			name:  "no authorization mode: AlwaysAllow by default",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "authorization-mode", "") },
			want:  []string{"kube-apiserver 1.2.6", "kube-apiserver 1.2.7", "kube-apiserver 1.2.8"},
		},
		{
			name:  "RBAC without Node",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "authorization-mode", "RBAC") },
			want:  []string{"kube-apiserver 1.2.7"},
		},
		{
			name: "NodeRestriction dropped, AlwaysAdmit added, ServiceAccount disabled",
			drift: func(in *Input) {
				in.APIServer = set(in.APIServer, "enable-admission-plugins", "AlwaysAdmit")
				in.APIServer = set(in.APIServer, "disable-admission-plugins", "ServiceAccount,NamespaceLifecycle")
			},
			want: []string{"kube-apiserver 1.2.10", "kube-apiserver 1.2.12", "kube-apiserver 1.2.13", "kube-apiserver 1.2.14"},
		},
		{
			name:  "kubelet client key missing",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "kubelet-client-key", "") },
			want:  []string{"kube-apiserver 1.2.4"},
		},
		{
			name:  "kubelet serving certificates not verified",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "kubelet-certificate-authority", "") },
			want:  []string{"kube-apiserver 1.2.5"},
		},
		{
			name:  "profiling as a bare flag",
			drift: func(in *Input) { in.APIServer = append(set(in.APIServer, "profiling", ""), "--profiling") },
			want:  []string{"kube-apiserver 1.2.15"},
		},
		{
			name: "no audit log",
			drift: func(in *Input) {
				for _, n := range []string{"audit-log-path", "audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize", "audit-policy-file"} {
					in.APIServer = set(in.APIServer, n, "")
				}
			},
			want: []string{"kube-apiserver 1.2.16", "kube-apiserver 1.2.17", "kube-apiserver 1.2.18", "kube-apiserver 1.2.19"},
		},
		{
			name:  "audit log kept 7 days",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "audit-log-maxage", "7") },
			want:  []string{"kube-apiserver 1.2.17"},
		},
		{
			name:  "service account lookup off",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "service-account-lookup", "false") },
			want:  []string{"kube-apiserver 1.2.21"},
		},
		{
			name: "etcd without TLS client certificate, serving certificate or CAs",
			drift: func(in *Input) {
				for _, n := range []string{"etcd-certfile", "tls-cert-file", "client-ca-file", "etcd-cafile", "service-account-key-file"} {
					in.APIServer = set(in.APIServer, n, "")
				}
			},
			want: []string{"kube-apiserver 1.2.22", "kube-apiserver 1.2.23", "kube-apiserver 1.2.24", "kube-apiserver 1.2.25", "kube-apiserver 1.2.26"},
		},
		{
			name:  "no encryption at rest",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "encryption-provider-config", "") },
			want:  []string{"kube-apiserver 1.2.27", "kube-apiserver 1.2.28"},
		},
		{
			name: "identity first",
			drift: func(in *Input) {
				in.Files[kubecfg.DefaultEncryptionConfigFile] = []byte(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - identity: {}
      - secretbox:
          keys: [{name: key1, secret: BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=}]
`)
			},
			want: []string{"kube-apiserver 1.2.28"},
		},
		{
			name:  "encryption config not among the files",
			drift: func(in *Input) { delete(in.Files, kubecfg.DefaultEncryptionConfigFile) },
			want:  []string{"kube-apiserver 1.2.28"},
		},
		{
			name: "a CBC cipher suite",
			drift: func(in *Input) {
				in.APIServer = set(in.APIServer, "tls-cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")
			},
			want: []string{"kube-apiserver 1.2.29"},
		},
		{
			name:  "TLS 1.0",
			drift: func(in *Input) { in.APIServer = set(in.APIServer, "tls-min-version", "VersionTLS10") },
			want:  []string{"kube-apiserver 1.2.29"},
		},
		{
			name: "controller manager: profiling, shared credentials, no keys, public bind, no rotation",
			drift: func(in *Input) {
				in.ControllerManager = set(in.ControllerManager, "profiling", "")
				in.ControllerManager = set(in.ControllerManager, "use-service-account-credentials", "")
				in.ControllerManager = set(in.ControllerManager, "service-account-private-key-file", "")
				in.ControllerManager = set(in.ControllerManager, "root-ca-file", "")
				in.ControllerManager = set(in.ControllerManager, "bind-address", "0.0.0.0")
				in.ControllerManager = set(in.ControllerManager, "feature-gates", "RotateKubeletServerCertificate=false")
			},
			want: []string{"kube-controller-manager 1.3.2", "kube-controller-manager 1.3.3", "kube-controller-manager 1.3.4",
				"kube-controller-manager 1.3.5", "kube-controller-manager 1.3.6", "kube-controller-manager 1.3.7"},
		},
		{
			name: "scheduler: profiling and bind address left to their defaults",
			drift: func(in *Input) {
				in.Scheduler = set(in.Scheduler, "profiling", "")
				in.Scheduler = set(in.Scheduler, "bind-address", "")
			},
			want: []string{"kube-scheduler 1.4.1", "kube-scheduler 1.4.2"},
		},
		{
			name: "etcd: no client or peer certificate auth, auto TLS",
			drift: func(in *Input) {
				in.Etcd = set(in.Etcd, "client-cert-auth", "")
				in.Etcd = set(in.Etcd, "peer-client-cert-auth", "false")
				in.Etcd = set(in.Etcd, "auto-tls", "true")
				in.Etcd = set(in.Etcd, "peer-auto-tls", "true")
				in.Etcd = set(in.Etcd, "key-file", "")
				in.Etcd = set(in.Etcd, "peer-cert-file", "")
			},
			want: []string{"etcd 2.1", "etcd 2.2", "etcd 2.3", "etcd 2.4", "etcd 2.5", "etcd 2.6"},
		},
		{
			name:  "etcd trusts the cluster CA file",
			drift: func(in *Input) { in.Etcd = set(in.Etcd, "trusted-ca-file", "/etc/kubernetes/pki/ca.crt") },
			want:  []string{"etcd 2.7"},
		},
		{
			name: "etcd's CA file holds the cluster CA",
			drift: func(in *Input) {
				in.Files["/etc/kubernetes/pki/etcd/ca.crt"] = in.Files["/etc/kubernetes/pki/ca.crt"]
			},
			want: []string{"etcd 2.7"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := rendered(t)
			tc.drift(&in)
			fs := Check(in)
			if diff := cmp.Diff(tc.want, failed(fs)); diff != "" {
				t.Errorf("failed checks (-want +got):\n%s", diff)
			}
			if Failed(fs) != len(tc.want) {
				t.Errorf("Failed = %d, want %d", Failed(fs), len(tc.want))
			}
			for _, f := range fs {
				if f.Result == Fail && f.Detail == "" {
					t.Errorf("%s failed without a detail", f.ID)
				}
				if strings.Contains(f.Detail, "BwcHBwcH") {
					t.Errorf("%s: the detail holds key material: %s", f.ID, f.Detail)
				}
			}
		})
	}
}

func TestOnlyGivenComponents(t *testing.T) {
	fs := Check(Input{Scheduler: []string{"--profiling=false", "--bind-address=127.0.0.1"}})
	want := []Finding{
		{ID: "1.4.1", Component: Scheduler, Check: "--profiling is false", Result: Pass, Detail: "--profiling=false"},
		{ID: "1.4.2", Component: Scheduler, Check: "--bind-address is 127.0.0.1", Result: Pass, Detail: "--bind-address=127.0.0.1"},
	}
	if diff := cmp.Diff(want, fs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
