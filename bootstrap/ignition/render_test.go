package ignition

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/vincent-petithory/dataurl"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/lint"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/nodeagent/reboot"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// fixture is the golden cluster with secrets from a seeded source, so that renders are repeatable.
func fixture(t testing.TB) Input {
	t.Helper()
	data, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := v1alpha1.Decode(data, "testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.NewChaCha8([32]byte{'k', 'i', 'l', 'n'})
	b, err := secrets.Generate(c, rnd, t0)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := secrets.NewBootstrapToken(rnd, t0, time.Hour, "kiln node join")
	if err != nil {
		t.Fatal(err)
	}
	b.BootstrapTokens = append(b.BootstrapTokens, tok)
	return Input{
		Cluster: c, Secrets: b, Token: tok,
		// As the local QEMU provider places nodes: the endpoint made on the control-plane nodes, and
		// every node's address reserved before its config is rendered.
		Placement:             Placement{Endpoint: EndpointVIP, NodeAddresses: true},
		ControlPlaneAddresses: map[string]netip.Addr{"golden-control-plane-0": cpAddr(0), "golden-control-plane-1": cpAddr(1), "golden-control-plane-2": cpAddr(2)},
		Rand:                  rnd,
		Now:                   func() time.Time { return t0 },
	}
}

// cpAddr is the address of the fixture's control-plane node i; workerAddr that of its i-th worker.
func cpAddr(i int) netip.Addr { return nthAddr(netip.MustParseAddr("10.0.0.10"), i) }

func workerAddr(i int) netip.Addr { return nthAddr(netip.MustParseAddr("10.0.1.0"), i) }

func nthAddr(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}

func newRenderer(t testing.TB, in Input) *Renderer {
	t.Helper()
	r, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestGolden(t *testing.T) {
	r := newRenderer(t, fixture(t))
	for _, n := range []Node{
		{Name: "golden-control-plane-0", Role: v1alpha1.RoleControlPlane, Address: cpAddr(0)},
		{Name: "golden-general-0", Role: v1alpha1.RoleWorker, Pool: "general", Address: workerAddr(0)},
		{Name: "golden-gpu-0", Role: v1alpha1.RoleWorker, Pool: "gpu", Address: workerAddr(1)},
	} {
		t.Run(n.Name, func(t *testing.T) {
			raw, err := r.Render(n)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, raw, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden := filepath.Join("testdata", n.Name+".ign")
			if *update {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./bootstrap/ignition -update)", err)
			}
			if !bytes.Equal(want, pretty.Bytes()) {
				t.Errorf("%s differs from the rendered config; if the change is intended, run go test ./bootstrap/ignition -update", golden)
			}
		})
	}
}

// files decodes every file of a rendered config by path.
func files(t testing.TB, raw []byte) (map[string]string, map[string]types.File, types.Config) {
	t.Helper()
	cfg, _, err := v3_5.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	contents := map[string]string{}
	byPath := map[string]types.File{}
	for _, f := range cfg.Storage.Files {
		b, err := lint.DecodeSource(*f.Contents.Source, f.Contents.Compression)
		if err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		contents[f.Path] = string(b)
		byPath[f.Path] = f
	}
	return contents, byPath, cfg
}

func unit(cfg types.Config, name string) string {
	for _, u := range cfg.Systemd.Units {
		if u.Name == name && u.Contents != nil {
			return *u.Contents
		}
	}
	return ""
}

func TestWorker(t *testing.T) {
	in := fixture(t)
	raw, err := newRenderer(t, in).Render(Node{Name: "golden-gpu-7", Role: v1alpha1.RoleWorker, Pool: "gpu", Address: workerAddr(7)})
	if err != nil {
		t.Fatal(err)
	}
	got, byPath, cfg := files(t, raw)
	for _, tc := range []struct {
		name, path, want string
		mode             int
	}{
		{name: "hostname is the node", path: "/etc/hostname", want: "golden-gpu-7\n", mode: 0o644},
		{name: "authorized key of the cluster", path: "/home/kiln/.ssh/authorized_keys", want: in.Secrets.SSH.AuthorizedKeys[0], mode: 0o600},
		{name: "key-only sshd", path: "/etc/ssh/sshd_config.d/10-kiln.conf", want: "PasswordAuthentication no", mode: 0o600},
		{name: "cluster CA", path: "/etc/kubernetes/pki/ca.crt", want: string(in.Secrets.ClusterCA.CertPEM), mode: 0o644},
		{name: "bootstrap token", path: "/etc/kubernetes/bootstrap-kubelet.conf", want: "token: " + in.Token.String(), mode: 0o600},
		{name: "bootstrap server is the endpoint's address", path: "/etc/kubernetes/bootstrap-kubelet.conf", want: "server: https://10.0.0.5:6443", mode: 0o600},
		{name: "kubelet config without anonymous auth", path: "/var/lib/kubelet/config.yaml", want: "anonymous:\n    enabled: false", mode: 0o644},
		{name: "node env", path: "/etc/kiln/node.env", want: "KILN_NODE=golden-gpu-7\nKILN_NODE_ADDRESS=10.0.1.7\n", mode: 0o644},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(got[tc.path], tc.want) {
				t.Errorf("%s does not contain %q:\n%s", tc.path, tc.want, got[tc.path])
			}
			if m := byPath[tc.path].Mode; m == nil || *m != tc.mode {
				t.Errorf("%s: mode %v, want %#o", tc.path, m, tc.mode)
			}
		})
	}
	kubelet := unit(cfg, "kubelet.service")
	for _, want := range []string{"--register-with-taints=example.com/gpu=true:NoSchedule", "kiln.dev/pool=gpu", "--bootstrap-kubeconfig=", "--node-ip=10.0.1.7"} {
		if !strings.Contains(kubelet, want) {
			t.Errorf("kubelet.service lacks %q:\n%s", want, kubelet)
		}
	}
	for path := range got {
		if strings.HasPrefix(path, "/etc/kubernetes/pki/") && path != "/etc/kubernetes/pki/ca.crt" {
			t.Errorf("a worker got %s", path)
		}
	}
}

func TestControlPlaneSecurity(t *testing.T) {
	in := fixture(t)
	raw, err := newRenderer(t, in).Render(Node{Name: "golden-control-plane-1", Role: v1alpha1.RoleControlPlane, Address: cpAddr(1)})
	if err != nil {
		t.Fatal(err)
	}
	got, _, cfg := files(t, raw)
	api := unit(cfg, "kube-apiserver.service")
	for _, want := range []string{
		"--anonymous-auth=false",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--encryption-provider-config=/etc/kubernetes/encryption-config.yaml",
		"--admission-control-config-file=/etc/kubernetes/admission-config.yaml",
		"--audit-policy-file=/etc/kubernetes/audit-policy.yaml",
		"--client-ca-file=/etc/kubernetes/pki/ca.crt",
		"--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
		"--enable-bootstrap-token-auth=true",
	} {
		if !strings.Contains(api, want) {
			t.Errorf("kube-apiserver.service lacks %s", want)
		}
	}
	etcd := unit(cfg, "etcd.service")
	for _, want := range []string{"--name=golden-control-plane-1", "--initial-cluster=golden-control-plane-0=https://10.0.0.10:2380,golden-control-plane-1=https://10.0.0.11:2380,golden-control-plane-2=https://10.0.0.12:2380", "--client-cert-auth=true", "--peer-client-cert-auth=true"} {
		if !strings.Contains(etcd, want) {
			t.Errorf("etcd.service lacks %s", want)
		}
	}
	if err := kubecfg.CheckEncryptionConfig([]byte(got["/etc/kubernetes/encryption-config.yaml"])); err != nil {
		t.Errorf("encryption config: %v", err)
	}
	if !strings.Contains(got["/etc/kubernetes/encryption-config.yaml"], "secretbox") {
		t.Errorf("encryption config does not use the spec's provider (secretbox)")
	}
	ns := got["/etc/kubernetes/kiln/00-namespaces.yaml"]
	for _, want := range []string{"pod-security.kubernetes.io/enforce: restricted", "pod-security.kubernetes.io/enforce: privileged", "name: apps", "name: kube-system"} {
		if !strings.Contains(ns, want) {
			t.Errorf("namespaces lack %q", want)
		}
	}
	if !strings.Contains(got["/etc/kubernetes/kiln/20-bootstrap-tokens.yaml"], "bootstrap-token-"+in.Token.ID) {
		t.Errorf("the control plane does not get the bootstrap token Secret")
	}
	for _, p := range []string{"/etc/kubernetes/pki/ca.key", "/etc/kubernetes/pki/sa.key", "/etc/kubernetes/pki/apiserver.key", "/etc/kubernetes/pki/etcd/server.key", "/etc/kubernetes/cluster-init.conf"} {
		if _, ok := got[p]; !ok {
			t.Errorf("control plane lacks %s", p)
		}
	}
	for _, p := range []string{"/etc/kubernetes/pki/etcd/ca.key", "/etc/kubernetes/pki/front-proxy-ca.key", "/etc/kubernetes/admin.conf"} {
		if _, ok := got[p]; ok {
			t.Errorf("control plane holds %s, which stays in the state store", p)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	in := fixture(t)
	r := newRenderer(t, in)
	for _, tc := range []struct {
		name string
		node Node
		want string
	}{
		{name: "bad node name", node: Node{Name: "Node_1", Role: v1alpha1.RoleWorker, Pool: "gpu", Address: workerAddr(0)}, want: `node name "Node_1" is not a DNS label`},
		{name: "unknown role", node: Node{Name: "n1", Role: "etcd", Address: workerAddr(0)}, want: `unknown role "etcd"`},
		{name: "unknown pool", node: Node{Name: "n1", Role: v1alpha1.RoleWorker, Pool: "gpus", Address: workerAddr(0)}, want: `no node pool "gpus" in cluster golden (have general, gpu)`},
		{name: "control plane with a pool", node: Node{Name: "n1", Role: v1alpha1.RoleControlPlane, Pool: "gpu", Address: workerAddr(0)}, want: "a control-plane node has no pool"},
		{name: "worker without an address where nodes have them", node: Node{Name: "golden-gpu-0", Role: v1alpha1.RoleWorker, Pool: "gpu"},
			want: "node golden-gpu-0: no address: the provider gives every node its address before rendering"},
		{name: "control plane at another address than reserved", node: Node{Name: "golden-control-plane-1", Role: v1alpha1.RoleControlPlane, Address: cpAddr(2)},
			want: "node golden-control-plane-1: address 10.0.0.12, but the control-plane addresses give it 10.0.0.11"},
		{name: "an address with a zone", node: Node{Name: "golden-gpu-0", Role: v1alpha1.RoleWorker, Pool: "gpu", Address: netip.MustParseAddr("fe80::1%eth0")},
			want: `node golden-gpu-0: "fe80::1%eth0" is not an address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Render(tc.node)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		change func(in *Input)
		want   []string
	}{
		{
			name:   "no control-plane addresses where nodes have them",
			change: func(in *Input) { in.ControlPlaneAddresses = nil },
			want:   []string{"no control-plane addresses: the placement gives nodes their addresses before rendering, and etcd and haproxy name every control-plane node's (golden-control-plane-0, golden-control-plane-1, golden-control-plane-2)"},
		},
		{
			name: "a control-plane node missing, two at one address",
			change: func(in *Input) {
				in.ControlPlaneAddresses = map[string]netip.Addr{"golden-control-plane-0": cpAddr(0), "golden-control-plane-1": cpAddr(0)}
			},
			want: []string{"control-plane nodes golden-control-plane-0 and golden-control-plane-1 have the same address 10.0.0.10", "control-plane node golden-control-plane-2 has no address"},
		},
		{
			name: "a virtual endpoint without an address, on haproxy's backends' port",
			change: func(in *Input) {
				c := *in.Cluster
				c.Spec.Network.APIEndpoint.Address, c.Spec.Network.APIEndpoint.Port = "", 6444
				in.Cluster = &c
			},
			want: []string{`spec.network.apiEndpoint.address "": the endpoint is a virtual address on the control-plane nodes, and needs one`, "spec.network.apiEndpoint.port 6444: kube-apiserver listens there behind haproxy"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := fixture(t)
			tc.change(&in)
			_, err := New(in)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("New: got %v, want an error saying %q", err, w)
				}
			}
		})
	}
	t.Run("token unknown to the control plane", func(t *testing.T) {
		in := fixture(t)
		in.Token.Secret = "0000000000000000"
		if _, err := New(in); err == nil || !strings.Contains(err.Error(), "not among the cluster's tokens") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a role without a channel has no size limit; one with a channel is held to it", func(t *testing.T) {
		in := fixture(t)
		in.Placement = Placement{Channels: map[string]lint.Limit{v1alpha1.RoleWorker: lint.Limits["aws"]}}
		cfg, err := newRenderer(t, in).Render(Node{Name: "golden-control-plane-0", Role: v1alpha1.RoleControlPlane, Address: cpAddr(0)})
		if err != nil || len(cfg) <= 16<<10 {
			t.Fatalf("got %d bytes, %v; want a config over 16 KiB and no error", len(cfg), err)
		}
		// The same config through the channel is refused by the lint.
		if err := lint.Bytes(cfg, lint.Policy{Role: v1alpha1.RoleControlPlane, Channel: lint.Limits["aws"]}); err == nil || !strings.Contains(err.Error(), "over the AWS user-data limit of 16.0 KiB (16384 bytes)") {
			t.Fatalf("lint as AWS user-data: %v", err)
		}
		in.Placement.Channels[v1alpha1.RoleControlPlane] = lint.Limits["aws"]
		if _, err := newRenderer(t, in).Render(Node{Name: "golden-control-plane-0", Role: v1alpha1.RoleControlPlane, Address: cpAddr(0)}); err == nil || !strings.Contains(err.Error(), "over the AWS user-data limit") {
			t.Fatalf("control plane held to the AWS user-data channel: got %v, want the size finding", err)
		}
	})
}

// A worker config that somehow carries the CA key must fail lint: the check that guards every render.
func TestWorkerWithCAKeyFailsLint(t *testing.T) {
	in := fixture(t)
	raw, err := newRenderer(t, in).Render(Node{Name: "golden-general-0", Role: v1alpha1.RoleWorker, Pool: "general", Address: workerAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	var cfg types.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	src := "data:," + dataurl.Escape(in.Secrets.ClusterCA.KeyPEM)
	mode := 0o600
	cfg.Storage.Files = append(cfg.Storage.Files, types.File{
		Node:          types.Node{Path: "/etc/kubernetes/pki/ca.key"},
		FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{Source: &src}, Mode: &mode},
	})
	bad, _ := json.Marshal(cfg)
	err = lint.Bytes(bad, lint.Policy{Role: v1alpha1.RoleWorker, Forbidden: ForbiddenSecrets(v1alpha1.RoleWorker, in.Secrets)})
	var lerr *lint.Error
	if !errors.As(err, &lerr) {
		t.Fatalf("lint passed a worker config holding the CA key: %v", err)
	}
	msg := lerr.Error()
	for _, want := range []string{"holds a private key", "holds the cluster CA key"} {
		if !strings.Contains(msg, want) {
			t.Errorf("lint error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, string(in.Secrets.ClusterCA.KeyPEM)) {
		t.Error("the lint error holds the key itself")
	}
}

func TestDistinctNodesShareTheTranslation(t *testing.T) {
	r := newRenderer(t, fixture(t))
	a, err := r.Render(Node{Name: "golden-general-0", Role: v1alpha1.RoleWorker, Pool: "general", Address: workerAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Render(Node{Name: "golden-general-1", Role: v1alpha1.RoleWorker, Pool: "general", Address: workerAddr(1)})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two nodes got the same config")
	}
	a, b = withoutAgentCredential(t, a), withoutAgentCredential(t, b)
	got := bytes.ReplaceAll(b, []byte("golden-general-1"), []byte("golden-general-0"))
	got = bytes.ReplaceAll(got, []byte("10.0.1.1%0A"), []byte("10.0.1.0%0A"))                   // node.env, a data URL
	got = bytes.ReplaceAll(got, []byte(`--node-ip=10.0.1.1\n`), []byte(`--node-ip=10.0.1.0\n`)) // a unit, in JSON
	if !bytes.Equal(a, got) {
		t.Errorf("configs of two nodes of one pool differ in more than the node's name and address:\n%s\n%s", a, got)
	}
	if len(r.compiled) != 1 {
		t.Errorf("translated %d times for one pool", len(r.compiled))
	}
}

func workerNodes(n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{Name: fmt.Sprintf("golden-general-%d", i), Role: v1alpha1.RoleWorker, Pool: "general", Address: workerAddr(i)}
	}
	return nodes
}

func TestRenderAll(t *testing.T) {
	r := newRenderer(t, fixture(t))
	nodes := workerNodes(20)
	got, err := r.RenderAll(nodes)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		want, err := r.Render(n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(withoutAgentCredential(t, got[i]), withoutAgentCredential(t, want)) {
			t.Errorf("RenderAll[%d] is not %s's config", i, n.Name)
		}
	}
	nodes[3].Name, nodes[7].Pool = "Bad_Name", "nope"
	_, err = r.RenderAll(nodes)
	if err == nil || !strings.Contains(err.Error(), "Bad_Name") || !strings.Contains(err.Error(), `no node pool "nope"`) {
		t.Fatalf("want both nodes' errors, got %v", err)
	}
}

// BenchmarkRender renders 1,000 distinct worker configs, each validated by Ignition's validator and
// linted, one after another (sequential) and with RenderAll on every CPU (parallel). The Butane
// translation is part of each iteration (a new Renderer). Goal: 1,000 in under 1 s on 2 cores.
func BenchmarkRender(b *testing.B) {
	in := fixture(b)
	nodes := workerNodes(1000)
	b.Run("workers=1000/sequential", func(b *testing.B) {
		for b.Loop() {
			r := newRenderer(b, in)
			for _, n := range nodes {
				if _, err := r.Render(n); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("workers=1000/parallel", func(b *testing.B) {
		for b.Loop() {
			if _, err := newRenderer(b, in).RenderAll(nodes); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Where the provider enforces the intent outside the nodes (security groups), the nodes do not load it;
// everywhere else each node loads it itself. The provider's name plays no part: an AWS spec rendered for
// a placement with a host firewall gets one.
func TestFirewallByPlacement(t *testing.T) {
	for _, tc := range []struct {
		name      string
		provider  string
		placement Placement
		want      bool
	}{
		{name: "host firewall", provider: v1alpha1.ProviderQEMU, want: true},
		{name: "external firewall", provider: v1alpha1.ProviderAWS, placement: Placement{ExternalFirewall: true}, want: false},
		{name: "aws spec, host firewall", provider: v1alpha1.ProviderAWS, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := fixture(t)
			c := *in.Cluster
			c.Spec.Provider = v1alpha1.Provider{Name: tc.provider, AWS: &v1alpha1.AWSProvider{Region: "eu-central-1"}}
			in.Cluster = &c
			in.Placement = tc.placement
			raw, err := newRenderer(t, in).Render(Node{Name: "golden-general-0", Role: v1alpha1.RoleWorker, Pool: "general", Address: workerAddr(0)})
			if err != nil {
				t.Fatal(err)
			}
			got, _, cfg := files(t, raw)
			_, has := got["/etc/kiln/firewall.nft"]
			if has != tc.want || (unit(cfg, "kiln-firewall.service") != "") != tc.want {
				t.Fatalf("firewall ruleset present: %v, want %v", has, tc.want)
			}
			if tc.want && !strings.Contains(got["/etc/kiln/firewall.nft"], "ip saddr 10.1.0.0/24 tcp dport 22 accept") {
				t.Errorf("ruleset lacks the admin SSH rule:\n%s", got["/etc/kiln/firewall.nft"])
			}
		})
	}
}

// The cluster init's credentials are issued per render from the cluster CA, for the spec's token
// lifetime; its unit applies the RBAC with the grant before the manifests with its own, and removes
// both credentials; no worker gets them, and lint refuses a worker config that holds one.
func TestClusterInitCredentials(t *testing.T) {
	in := fixture(t)
	node := Node{Name: "golden-control-plane-0", Role: v1alpha1.RoleControlPlane, Address: cpAddr(0)}
	render := func() (map[string]string, types.Config) {
		raw, err := newRenderer(t, in).Render(node)
		if err != nil {
			t.Fatal(err)
		}
		got, _, cfg := files(t, raw)
		return got, cfg
	}
	got, cfg := render()
	ca, err := in.Secrets.ClusterCA.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	certOf := func(t *testing.T, files map[string]string, path string) *x509.Certificate {
		t.Helper()
		kc, err := clientcmd.Load([]byte(files[path]))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, a := range kc.AuthInfos {
			block, _ := pem.Decode(a.ClientCertificateData)
			if block == nil {
				t.Fatalf("%s: no client certificate", path)
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		t.Fatalf("%s: no user", path)
		return nil
	}
	for _, tc := range []struct {
		path, user, group string
	}{
		{kubecfg.DefaultClusterInitKubeconfig, secrets.ClusterInitUser, secrets.ClusterInitGroup},
		{kubecfg.DefaultClusterInitGrantKubeconfig, secrets.ClusterInitGrantUser, "system:masters"},
	} {
		c := certOf(t, got, tc.path)
		if c.Subject.CommonName != tc.user || !slices.Equal(c.Subject.Organization, []string{tc.group}) {
			t.Errorf("%s: %s in %v, want %s in %s", tc.path, c.Subject.CommonName, c.Subject.Organization, tc.user, tc.group)
		}
		if want := t0.Add(secrets.TokenTTL(in.Cluster)); !c.NotAfter.Equal(want) {
			t.Errorf("%s: NotAfter %v, want %v (the spec's token lifetime from the render)", tc.path, c.NotAfter, want)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", tc.path, err)
		}
	}
	again, _ := render()
	if certOf(t, again, kubecfg.DefaultClusterInitKubeconfig).SerialNumber.Cmp(certOf(t, got, kubecfg.DefaultClusterInitKubeconfig).SerialNumber) == 0 {
		t.Error("two renders carry the same cluster-init certificate")
	}

	var manifests [][]byte
	for _, name := range []string{"00-namespaces.yaml", "10-bootstrap-rbac.yaml", "15-podnet-rbac.yaml", "16-kube-proxy-rbac.yaml", "17-reboot-lock.yaml", "20-bootstrap-tokens.yaml"} {
		manifests = append(manifests, []byte(got[kubecfg.DefaultClusterInitManifestsDir+"/"+name]))
	}
	want, err := kubecfg.ClusterInitRBAC(secrets.ClusterInitGroup, manifests...)
	if err != nil {
		t.Fatal(err)
	}
	// The grant applies that RBAC and, after it, the reboot lock's admission policy.
	_, policy := kubecfg.RebootLock(kubecfg.RebootPools(in.Cluster))
	if got[kubecfg.DefaultClusterInitRBACFile] != string(want)+"---\n"+string(policy) {
		t.Errorf("%s is not the RBAC of the manifests in %s and the reboot lock's policy", kubecfg.DefaultClusterInitRBACFile, kubecfg.DefaultClusterInitManifestsDir)
	}

	u := unit(cfg, "kiln-cluster-init.service")
	grant := strings.Index(u, "--kubeconfig="+kubecfg.DefaultClusterInitGrantKubeconfig+" apply --server-side --validate=false -f "+kubecfg.DefaultClusterInitRBACFile+" &&")
	apply := strings.Index(u, "--kubeconfig="+kubecfg.DefaultClusterInitKubeconfig+" apply --server-side --validate=false -f "+kubecfg.DefaultClusterInitManifestsDir+"/")
	if grant < 0 || apply < grant {
		t.Errorf("kiln-cluster-init.service does not apply the RBAC with the grant, then the manifests with its own credential:\n%s", u)
	}
	for _, hook := range []string{"ExecStartPost", "ExecStopPost"} {
		if !strings.Contains(u, hook+"=/bin/rm -f "+kubecfg.DefaultClusterInitGrantKubeconfig+" "+kubecfg.DefaultClusterInitKubeconfig+"\n") {
			t.Errorf("kiln-cluster-init.service does not remove both credentials in %s:\n%s", hook, u)
		}
	}

	raw, err := newRenderer(t, in).Render(Node{Name: "golden-general-0", Role: v1alpha1.RoleWorker, Pool: "general", Address: workerAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	worker, _, wcfg := files(t, raw)
	for _, p := range []string{kubecfg.DefaultClusterInitKubeconfig, kubecfg.DefaultClusterInitGrantKubeconfig, kubecfg.DefaultClusterInitRBACFile} {
		if _, ok := worker[p]; ok {
			t.Errorf("a worker holds %s", p)
		}
	}
	for _, p := range []string{kubecfg.DefaultClusterInitKubeconfig, kubecfg.DefaultClusterInitGrantKubeconfig} {
		src := "data:," + dataurl.EscapeString(got[p])
		bad := wcfg
		bad.Storage.Files = append(slices.Clone(wcfg.Storage.Files), types.File{Node: types.Node{Path: p}, FileEmbedded1: types.FileEmbedded1{Contents: types.Resource{Source: &src}}})
		data, _ := json.Marshal(bad)
		err := lint.Bytes(data, lint.Policy{Role: v1alpha1.RoleWorker, Forbidden: ForbiddenSecrets(v1alpha1.RoleWorker, in.Secrets)})
		if err == nil || !strings.Contains(err.Error(), "holds a private key") {
			t.Errorf("lint of a worker config holding %s: %v, want a private key found", p, err)
		}
	}
}

// withoutAgentCredential is cfg with the contents of its reboot agent's certificate and key, which
// every render issues anew, blanked out (after checking that they are there).
func withoutAgentCredential(t *testing.T, cfg []byte) []byte {
	t.Helper()
	var c types.Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	found := 0
	for i, f := range c.Storage.Files {
		if f.Path == reboot.DefaultLockCert || f.Path == reboot.DefaultLockKey {
			if f.Contents.Source == nil || !strings.Contains(*f.Contents.Source, "BEGIN") {
				t.Errorf("%s holds no PEM", f.Path)
			}
			c.Storage.Files[i].Contents.Source = nil
			found++
		}
	}
	if found != 2 {
		t.Errorf("the config holds %d of the reboot agent's 2 credential files", found)
	}
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
