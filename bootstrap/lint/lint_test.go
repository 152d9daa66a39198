package lint

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/google/go-cmp/cmp"
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/vincent-petithory/dataurl"
)

const fakeKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIOQ2c2VjcmV0LWtleS1ub3QtcmVhbA==\n-----END EC PRIVATE KEY-----\n"

func ptr[T any](v T) *T { return &v }

func file(path, data string) types.File {
	return types.File{
		Node:          types.Node{Path: path},
		FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{Source: ptr("data:," + dataurl.EscapeString(data))}},
	}
}

func gzipFile(path, data string) types.File {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(data))
	zw.Close()
	return types.File{
		Node: types.Node{Path: path},
		FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{
			Source:      ptr("data:;base64," + base64.StdEncoding.EncodeToString(b.Bytes())),
			Compression: ptr("gzip"),
		}},
	}
}

func remote(path, url string, hash *string) types.File {
	return types.File{
		Node: types.Node{Path: path},
		FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{
			Source: ptr(url), Verification: types.Verification{Hash: hash},
		}},
	}
}

func config(files ...types.File) []byte {
	c := types.Config{Ignition: types.Ignition{Version: "3.5.0"}}
	c.Storage.Files = files
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return b
}

func TestBytes(t *testing.T) {
	sha := ptr("sha512-" + strings.Repeat("ab", 64))
	tests := []struct {
		name   string
		config []byte
		policy Policy
		want   []Finding
	}{
		{
			name:   "plain config passes",
			config: config(file("/etc/hostname", "node-0\n")),
			policy: Policy{Role: v1alpha1.RoleWorker, Channel: Limits["aws"]},
		},
		{
			name:   "https with hash passes",
			config: config(remote("/opt/x", "https://example.internal/x", sha)),
		},
		{
			name:   "https without hash",
			config: config(remote("/opt/x", "https://example.internal/x?X-Amz-Signature=secret", nil)),
			want: []Finding{{Path: "storage.files[0].contents.verification.hash",
				Message: "remote source https://example.internal/x has no verification hash; add sha256-… or sha512-…"}},
		},
		{
			name:   "http is refused even with a hash",
			config: config(remote("/opt/x", "http://example.internal/x", sha)),
			want: []Finding{{Path: "storage.files[0].contents.source",
				Message: `remote source http://example.internal/x uses "http"; only https (with a verification hash) is allowed`}},
		},
		{
			name: "merged config over tftp",
			config: func() []byte {
				c := types.Config{Ignition: types.Ignition{Version: "3.5.0", Config: types.IgnitionConfig{
					Merge: []types.Resource{{Source: ptr("tftp://10.0.0.1/base.ign")}}}}}
				b, _ := json.Marshal(c)
				return b
			}(),
			want: []Finding{{Path: "ignition.config.merge[0].source",
				Message: `remote source tftp://10.0.0.1/base.ign uses "tftp"; only https (with a verification hash) is allowed`}},
		},
		{
			name:   "worker with a private key",
			config: config(file("/etc/kubernetes/pki/ca.key", fakeKey)),
			policy: Policy{Role: v1alpha1.RoleWorker},
			want: []Finding{{Path: "storage.files[0].contents",
				Message: "holds a private key; a worker gets its key pair by TLS bootstrap and holds none but its reboot agent's (/etc/kiln/reboot/agent.key)"}},
		},
		{
			name:   "worker with a gzip-compressed private key",
			config: config(gzipFile("/etc/kubernetes/pki/ca.key", fakeKey)),
			policy: Policy{Role: v1alpha1.RoleWorker},
			want: []Finding{{Path: "storage.files[0].contents",
				Message: "holds a private key; a worker gets its key pair by TLS bootstrap and holds none but its reboot agent's (/etc/kiln/reboot/agent.key)"}},
		},
		{
			name:   "control plane may hold its keys",
			config: config(file("/etc/kubernetes/pki/apiserver.key", fakeKey)),
			policy: Policy{Role: v1alpha1.RoleControlPlane},
		},
		{
			name:   "no node holds an SSH private key",
			config: config(file("/root/id", "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")),
			policy: Policy{Role: v1alpha1.RoleControlPlane},
			want:   []Finding{{Path: "storage.files[0].contents", Message: "holds an SSH private key; no node needs one"}},
		},
		{
			name:   "worker with an encryption configuration",
			config: config(file("/etc/kubernetes/enc.yaml", "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n")),
			policy: Policy{Role: v1alpha1.RoleWorker},
			want: []Finding{{Path: "storage.files[0].contents",
				Message: "holds an EncryptionConfiguration; only control-plane nodes hold the encryption key"}},
		},
		{
			name:   "forbidden value, base64 inside a kubeconfig",
			config: config(file("/etc/kubernetes/x.conf", "client-key-data: "+base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")))),
			policy: Policy{Role: v1alpha1.RoleControlPlane, Forbidden: []Secret{{Name: "admin client key", Value: []byte("0123456789abcdef0123456789abcdef")}}},
			want: []Finding{{Path: "storage.files[0].contents",
				Message: "holds the admin client key (base64), which a control-plane node must not hold"}},
		},
		{
			name:   "over the AWS user-data limit",
			config: config(file("/opt/big", strings.Repeat("x", 17<<10))),
			policy: Policy{Channel: Limits["aws"]},
			want:   []Finding{{Message: "config is 17.3 KiB (17686 bytes), over the AWS user-data limit of 16.0 KiB (16384 bytes)"}},
		},
		{
			name:   "within the vSphere limit: text compresses",
			config: config(file("/opt/big", strings.Repeat("x", 200<<10))),
			policy: Policy{Channel: Limits["vsphere"]},
		},
		{
			name:   "within the vSphere limit: noise",
			config: config(file("/opt/big", noise(28<<10))),
			policy: Policy{Channel: Limits["vsphere"]},
		},
		{
			name:   "over the vSphere limit once compressed and base64-encoded twice",
			config: config(file("/opt/big", noise(56<<10))),
			policy: Policy{Channel: Limits["vsphere"]},
			want:   []Finding{{Message: "config is 78.1 KiB (79968 bytes), over the vSphere guestinfo (gzip, base64) limit of 64.0 KiB (65536 bytes)"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Bytes(tc.config, tc.policy)
			var got []Finding
			var lerr *Error
			if errors.As(err, &lerr) {
				got = lerr.Findings
			} else if err != nil {
				t.Fatalf("Bytes: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

// kubeconfig is a kubeconfig with a client certificate for cn in org, valid from t0 for validity, and
// its key.
func kubeconfig(t *testing.T, cn, org string, validity time.Duration) string {
	t.Helper()
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ca, err := pki.NewCA(rand.Reader, "lint test CA", t0, 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(rand.Reader, pki.CertRequest{CommonName: cn, Organization: []string{org},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: validity}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return "apiVersion: v1\nkind: Config\nusers:\n- name: " + cn + "\n  user:\n" +
		"    client-certificate-data: " + base64.StdEncoding.EncodeToString(kp.CertPEM) + "\n" +
		"    client-key-data: " + base64.StdEncoding.EncodeToString(kp.KeyPEM) + "\n"
}

// The kubeconfigs a node holds: a worker none with a key, no node a system:masters certificate that
// lives longer than a day (as kiln's year-long cluster-init certificate did).
func TestKubeconfigCredentials(t *testing.T) {
	year := 365 * 24 * time.Hour
	for _, tc := range []struct {
		name string
		conf string
		role string
		want []string
	}{
		{name: "control plane: a component's year-long certificate", conf: kubeconfig(t, "system:kube-scheduler", "", year), role: v1alpha1.RoleControlPlane},
		{name: "control plane: the cluster init's grant, for an hour", conf: kubeconfig(t, "kiln:cluster-init-grant", "system:masters", time.Hour), role: v1alpha1.RoleControlPlane},
		{name: "control plane: system:masters for a day", conf: kubeconfig(t, "kiln:cluster-init-grant", "system:masters", 24*time.Hour), role: v1alpha1.RoleControlPlane},
		{name: "control plane: system:masters for a year", conf: kubeconfig(t, "kiln:cluster-init", "system:masters", year), role: v1alpha1.RoleControlPlane,
			want: []string{"holds a system:masters client certificate (kiln:cluster-init) valid for 8760h5m0s; a node may hold one valid for at most 24h5m0s"}},
		{name: "any role: system:masters for a year", conf: kubeconfig(t, "kiln:cluster-init", "system:masters", year),
			want: []string{"holds a system:masters client certificate (kiln:cluster-init) valid for 8760h5m0s; a node may hold one valid for at most 24h5m0s"}},
		{name: "worker: a client key", conf: kubeconfig(t, "kiln:cluster-init", "kiln:cluster-init", time.Hour), role: v1alpha1.RoleWorker,
			want: []string{"holds a private key; a worker gets its key pair by TLS bootstrap and holds none but its reboot agent's (/etc/kiln/reboot/agent.key)",
				"holds a client certificate for kiln:cluster-init in [kiln:cluster-init]; a worker holds none but its reboot agent's"}},
		{name: "worker: system:masters, even for an hour", conf: kubeconfig(t, "kiln:cluster-init-grant", "system:masters", time.Hour), role: v1alpha1.RoleWorker,
			want: []string{"holds a system:masters client certificate (kiln:cluster-init-grant); no worker may",
				"holds a private key; a worker gets its key pair by TLS bootstrap and holds none but its reboot agent's (/etc/kiln/reboot/agent.key)",
				"holds a client certificate for kiln:cluster-init-grant in [system:masters]; a worker holds none but its reboot agent's"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Bytes(config(gzipFile("/etc/kubernetes/x.conf", tc.conf)), Policy{Role: tc.role})
			var got []string
			var lerr *Error
			if errors.As(err, &lerr) {
				for _, f := range lerr.Findings {
					if f.Path != "storage.files[0].contents" {
						t.Errorf("finding at %s", f.Path)
					}
					got = append(got, f.Message)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBytesRejectsInvalid(t *testing.T) {
	for _, tc := range []struct{ name, config string }{
		{"empty", ""},
		{"not json", "variant: fcos"},
		{"unknown version", `{"ignition":{"version":"9.9.9"}}`},
		{"relative path", `{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"etc/x"}]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Bytes([]byte(tc.config), Policy{})
			var lerr *Error
			if err == nil || errors.As(err, &lerr) {
				t.Fatalf("want a parse error, got %v", err)
			}
		})
	}
}

func TestFindingNeverEchoesSecret(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	err := Bytes(config(file("/x", secret)), Policy{Role: v1alpha1.RoleWorker, Forbidden: []Secret{{Name: "encryption key", Value: []byte(secret)}}})
	if err == nil {
		t.Fatal("want a finding")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the error holds the secret: %v", err)
	}
}

// FuzzLint: any input is an error or a verdict, never a panic.
func FuzzLint(f *testing.F) {
	f.Add(config(file("/etc/hostname", "node-0\n")))
	f.Add(config(gzipFile("/k", fakeKey)))
	f.Add(config(remote("/x", "https://a/b", nil)))
	f.Add([]byte(`{"ignition":{"version":"3.4.0"},"systemd":{"units":[{"name":"a.service","contents":"[Unit]"}]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_ = Bytes(raw, Policy{Role: v1alpha1.RoleWorker, Channel: Limits["aws"], Forbidden: []Secret{{Name: "k", Value: []byte("0123456789")}}})
	})
}

// A worker holds one key pair: its reboot agent's, at its path, for a certificate that names the
// agent and its pool's reboot group only.
func TestWorkerRebootAgentCredential(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ca, err := pki.NewCA(rand.Reader, "lint test CA", t0, 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(cn string, orgs ...string) *pki.KeyPair {
		kp, err := ca.Issue(rand.Reader, pki.CertRequest{CommonName: cn, Organization: orgs,
			Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: time.Hour}, t0)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	agent := issue("kiln:reboot-agent:w-1", "kiln:reboot:workers")
	node := issue("kiln:reboot-agent:w-1", "kiln:reboot:workers", "system:nodes")
	for _, tc := range []struct {
		name  string
		files []types.File
		want  []string
	}{
		{name: "the agent's key and certificate", files: []types.File{file("/etc/kiln/reboot/agent.crt", string(agent.CertPEM)), file("/etc/kiln/reboot/agent.key", string(agent.KeyPEM))}},
		{name: "the agent's key elsewhere", files: []types.File{file("/etc/kiln/other.key", string(agent.KeyPEM))},
			want: []string{"holds a private key; a worker gets its key pair by TLS bootstrap and holds none but its reboot agent's (/etc/kiln/reboot/agent.key)"}},
		{name: "an agent certificate in a second group", files: []types.File{file("/etc/kiln/reboot/agent.crt", string(node.CertPEM))},
			want: []string{"holds a client certificate for kiln:reboot-agent:w-1 in [system:nodes kiln:reboot:workers]; a worker holds none but its reboot agent's"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Bytes(config(tc.files...), Policy{Role: v1alpha1.RoleWorker})
			var got []string
			var lerr *Error
			if errors.As(err, &lerr) {
				for _, f := range lerr.Findings {
					got = append(got, f.Message)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

// noise is n bytes of base64 text from a fixed seed: what compresses as little as certificates do.
func noise(n int) string {
	r := mrand.New(mrand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b)[:n]
}
