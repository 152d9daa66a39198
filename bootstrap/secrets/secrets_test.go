package secrets

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/pki"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func seeded(seed byte) io.Reader { return mathrand.NewChaCha8([32]byte{seed}) }

const userKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGkyGqS1e5lTqtRzR4Kv1cRoxBJ8kQKf9aQqvV6B3yRr alice@laptop"

func cluster(name string, mutate ...func(c *v1alpha1.Cluster)) *v1alpha1.Cluster {
	c := &v1alpha1.Cluster{
		APIVersion: v1alpha1.GroupVersion,
		Kind:       v1alpha1.KindCluster,
		Metadata:   v1alpha1.Metadata{Name: name},
		Spec: v1alpha1.ClusterSpec{
			Provider: v1alpha1.Provider{Name: v1alpha1.ProviderQEMU, QEMU: &v1alpha1.QEMUProvider{}},
			Network: v1alpha1.Network{
				ServiceCIDR:   "10.96.0.0/12",
				ClusterDomain: "cluster.local",
				APIEndpoint:   v1alpha1.APIEndpoint{LoadBalancerName: "api." + name + ".example.internal", Address: "10.0.0.10", Port: 6443},
			},
			ControlPlane: v1alpha1.ControlPlane{Count: 3, Image: "debian.qcow2"},
			SSH:          v1alpha1.SSH{User: "kiln", Generate: true},
		},
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

func mustGenerate(t testing.TB, c *v1alpha1.Cluster, rand io.Reader) *Bundle {
	t.Helper()
	b, err := Generate(c, rand, t0)
	if err != nil {
		t.Fatalf("Generate(%s): %v", c.Metadata.Name, err)
	}
	return b
}

func cert(t *testing.T, kp pki.KeyPair) *x509.Certificate {
	t.Helper()
	c, err := kp.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ipStrings(c *x509.Certificate) []string {
	var out []string
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func TestControlPlaneNodeNames(t *testing.T) {
	tests := []struct {
		name  string
		count int
		want  []string
	}{
		{name: "default", count: 0, want: []string{"prod-control-plane-0"}},
		{name: "one", count: 1, want: []string{"prod-control-plane-0"}},
		{name: "three", count: 3, want: []string{"prod-control-plane-0", "prod-control-plane-1", "prod-control-plane-2"}},
		{name: "negative", count: -1, want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ControlPlaneNodeNames(cluster("prod", func(c *v1alpha1.Cluster) { c.Spec.ControlPlane.Count = tc.count }))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ControlPlaneNodeNames (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	c := cluster("prod", func(c *v1alpha1.Cluster) { c.Spec.Network.ClusterDomain = "corp.example" })
	b := mustGenerate(t, c, seeded(1))

	if err := b.Verify(t0); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := b.Verify(t0.Add(LeafValidity + time.Minute)); err == nil {
		t.Errorf("Verify after the leaves expire succeeded")
	}

	nodes := []string{"prod-control-plane-0", "prod-control-plane-1", "prod-control-plane-2"}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tests := []struct {
		name    string
		kp      pki.KeyPair
		ca      pki.KeyPair
		cn      string
		org     []string
		usages  []x509.ExtKeyUsage
		dns     []string
		ips     []string
		wrongCA []pki.KeyPair
	}{
		{
			name: "apiServer", kp: b.APIServer, ca: b.ClusterCA, cn: "kube-apiserver",
			usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			dns: append([]string{"api.prod.example.internal", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.corp.example", "localhost"}, nodes...),
			ips:     []string{"10.0.0.10", "10.96.0.1", "127.0.0.1", "::1"},
			wrongCA: []pki.KeyPair{b.EtcdCA, b.FrontProxyCA},
		},
		{name: "apiServerKubeletClient", kp: b.APIServerKubeletClient, ca: b.ClusterCA, cn: "kube-apiserver-kubelet-client",
			org: []string{"kiln:apiserver-kubelet-client"}, usages: client, wrongCA: []pki.KeyPair{b.EtcdCA}},
		{name: "apiServerEtcdClient", kp: b.APIServerEtcdClient, ca: b.EtcdCA, cn: "kube-apiserver-etcd-client",
			usages: client, wrongCA: []pki.KeyPair{b.ClusterCA, b.FrontProxyCA}},
		{name: "etcdServer", kp: b.EtcdServer, ca: b.EtcdCA, cn: "kube-etcd", usages: both,
			dns: append([]string{"localhost"}, nodes...), ips: []string{"127.0.0.1", "::1"}, wrongCA: []pki.KeyPair{b.ClusterCA}},
		{name: "etcdPeer", kp: b.EtcdPeer, ca: b.EtcdCA, cn: "kube-etcd-peer", usages: both,
			dns: append([]string{"localhost"}, nodes...), ips: []string{"127.0.0.1", "::1"}, wrongCA: []pki.KeyPair{b.ClusterCA}},
		{name: "frontProxyClient", kp: b.FrontProxyClient, ca: b.FrontProxyCA, cn: "front-proxy-client", usages: client,
			wrongCA: []pki.KeyPair{b.ClusterCA}},
		{name: "controllerManager", kp: b.ControllerManager, ca: b.ClusterCA, cn: "system:kube-controller-manager", usages: client,
			wrongCA: []pki.KeyPair{b.EtcdCA}},
		{name: "scheduler", kp: b.Scheduler, ca: b.ClusterCA, cn: "system:kube-scheduler", usages: client,
			wrongCA: []pki.KeyPair{b.EtcdCA}},
		{name: "admin", kp: b.Admin, ca: b.ClusterCA, cn: "kiln-admin", org: []string{AdminGroup}, usages: client,
			wrongCA: []pki.KeyPair{b.EtcdCA, b.FrontProxyCA}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := cert(t, tc.kp)
			if got.Subject.CommonName != tc.cn {
				t.Errorf("CN = %q, want %q", got.Subject.CommonName, tc.cn)
			}
			if diff := cmp.Diff(tc.org, got.Subject.Organization); diff != "" {
				t.Errorf("O (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.usages, got.ExtKeyUsage); diff != "" {
				t.Errorf("ExtKeyUsage (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.dns, got.DNSNames); diff != "" {
				t.Errorf("DNSNames (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.ips, ipStrings(got)); diff != "" {
				t.Errorf("IPAddresses (-want +got):\n%s", diff)
			}
			if want := t0.Add(LeafValidity); !got.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %v, want %v", got.NotAfter, want)
			}
			if err := tc.kp.VerifyAt(&tc.ca, t0); err != nil {
				t.Errorf("does not verify against its CA: %v", err)
			}
			for _, wrong := range tc.wrongCA {
				if err := tc.kp.VerifyAt(&wrong, t0); err == nil {
					t.Errorf("verifies against %s", cert(t, wrong).Subject.CommonName)
				}
			}
		})
	}

	for _, ca := range []pki.KeyPair{b.ClusterCA, b.EtcdCA, b.FrontProxyCA} {
		got := cert(t, ca)
		if !got.IsCA || !strings.Contains(got.Subject.CommonName, "prod") {
			t.Errorf("CA %q: IsCA %v, want a CA named for the cluster", got.Subject.CommonName, got.IsCA)
		}
		if want := t0.Add(CAValidity); !got.NotAfter.Equal(want) {
			t.Errorf("CA %q NotAfter = %v, want %v", got.Subject.CommonName, got.NotAfter, want)
		}
	}
	if len(b.ServiceAccount.CertPEM) != 0 || len(b.ServiceAccount.PublicPEM) == 0 {
		t.Errorf("serviceAccount: want a bare key pair with PublicPEM")
	}
	if len(b.EncryptionKey) != 32 || bytes.Equal(b.EncryptionKey, make([]byte, 32)) {
		t.Errorf("encryption key: %d bytes, want 32 random bytes", len(b.EncryptionKey))
	}
	if len(b.BootstrapTokens) != 0 {
		t.Errorf("Generate made %d bootstrap tokens, want none", len(b.BootstrapTokens))
	}

	// The generated SSH key.
	if len(b.SSH.AuthorizedKeys) != 1 || !strings.HasSuffix(b.SSH.AuthorizedKeys[0], " kiln@prod") ||
		!strings.HasPrefix(b.SSH.AuthorizedKeys[0], "ssh-ed25519 ") {
		t.Fatalf("AuthorizedKeys = %q, want one ssh-ed25519 key with comment kiln@prod", b.SSH.AuthorizedKeys)
	}
	signer, err := ssh.ParsePrivateKey(b.SSH.PrivateKeyPEM)
	if err != nil {
		t.Fatalf("private key does not parse: %v", err)
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(b.SSH.AuthorizedKeys[0]))
	if err != nil {
		t.Fatal(err)
	}
	if comment != "kiln@prod" || !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) {
		t.Errorf("authorized key %q (comment %q) is not the private key's", b.SSH.AuthorizedKeys[0], comment)
	}
	if !bytes.HasPrefix(b.SSH.PrivateKeyPEM, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		t.Errorf("private key is not in OpenSSH format")
	}
}

func TestGenerateDefaults(t *testing.T) {
	c := cluster("dev", func(c *v1alpha1.Cluster) {
		c.Spec.Network = v1alpha1.Network{}
		c.Spec.ControlPlane.Count = 0
	})
	b := mustGenerate(t, c, seeded(2))
	got := cert(t, b.APIServer)
	wantDNS := []string{"api.dev.kiln.internal", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "localhost", "dev-control-plane-0"}
	if diff := cmp.Diff(wantDNS, got.DNSNames); diff != "" {
		t.Errorf("DNSNames (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"10.96.0.1", "127.0.0.1", "::1"}, ipStrings(got)); diff != "" {
		t.Errorf("IPAddresses (-want +got):\n%s", diff)
	}
}

func TestGenerateIPv6(t *testing.T) {
	c := cluster("v6", func(c *v1alpha1.Cluster) {
		c.Spec.Network.ServiceCIDR = "fd00:10:96::/112"
		c.Spec.Network.APIEndpoint.Address = "fd00::10"
	})
	got := cert(t, mustGenerate(t, c, seeded(3)).APIServer)
	if diff := cmp.Diff([]string{"fd00::10", "fd00:10:96::1", "127.0.0.1", "::1"}, ipStrings(got)); diff != "" {
		t.Errorf("IPAddresses (-want +got):\n%s", diff)
	}
}

func TestGenerateUserKeys(t *testing.T) {
	c := cluster("byok", func(c *v1alpha1.Cluster) {
		c.Spec.SSH = v1alpha1.SSH{AuthorizedKeys: []string{userKey + "\n"}}
	})
	b := mustGenerate(t, c, seeded(4))
	if len(b.SSH.PrivateKeyPEM) != 0 {
		t.Errorf("a private key was generated although the user brings keys")
	}
	if diff := cmp.Diff([]string{userKey}, b.SSH.AuthorizedKeys); diff != "" {
		t.Errorf("AuthorizedKeys (-want +got):\n%s", diff)
	}
	if err := b.Verify(t0); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestGenerateErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *v1alpha1.Cluster)
		rand   io.Reader
		want   string
	}{
		{name: "no name", mutate: func(c *v1alpha1.Cluster) { c.Metadata.Name = "" }, want: "metadata.name"},
		{name: "address not an IP", mutate: func(c *v1alpha1.Cluster) { c.Spec.Network.APIEndpoint.Address = "lb.example" }, want: "spec.network.apiEndpoint.address"},
		{name: "bad service CIDR", mutate: func(c *v1alpha1.Cluster) { c.Spec.Network.ServiceCIDR = "10.96.0.0" }, want: "spec.network.serviceCIDR"},
		{name: "service CIDR without room", mutate: func(c *v1alpha1.Cluster) { c.Spec.Network.ServiceCIDR = "10.96.0.1/32" }, want: "spec.network.serviceCIDR"},
		{name: "ssh generate and keys", mutate: func(c *v1alpha1.Cluster) { c.Spec.SSH.AuthorizedKeys = []string{userKey} }, want: "spec.ssh"},
		{name: "ssh neither", mutate: func(c *v1alpha1.Cluster) { c.Spec.SSH = v1alpha1.SSH{} }, want: "spec.ssh"},
		{name: "ssh key garbage", mutate: func(c *v1alpha1.Cluster) {
			c.Spec.SSH = v1alpha1.SSH{AuthorizedKeys: []string{userKey, "ssh-rsa nope"}}
		}, want: "spec.ssh.authorizedKeys[1]"},
		{name: "two ssh keys in one entry", mutate: func(c *v1alpha1.Cluster) {
			c.Spec.SSH = v1alpha1.SSH{AuthorizedKeys: []string{userKey + "\n" + userKey}}
		}, want: "spec.ssh.authorizedKeys[0]"},
		{name: "negative control-plane count", mutate: func(c *v1alpha1.Cluster) { c.Spec.ControlPlane.Count = -1 }, want: "spec.controlPlane.count"},
		{name: "random source runs dry", rand: io.LimitReader(seeded(1), 200), want: "EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster("bad")
			if tc.mutate != nil {
				tc.mutate(c)
			}
			r := tc.rand
			if r == nil {
				r = seeded(1)
			}
			b, err := Generate(c, r, t0)
			if err == nil {
				t.Fatalf("Generate() = %v, want an error", b)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "secrets: generate") {
				t.Errorf("error %q does not start with \"secrets: generate\" and mention %q", err, tc.want)
			}
		})
	}
}

// allSecrets is every private or secret value in b, named.
func allSecrets(b *Bundle) map[string][]byte {
	m := map[string][]byte{
		"encryptionKey":  b.EncryptionKey,
		"sshPrivateKey":  b.SSH.PrivateKeyPEM,
		"serviceAccount": b.ServiceAccount.KeyPEM,
	}
	for _, p := range append(b.cas(), b.leaves()...) {
		m[p.name] = p.kp.KeyPEM
	}
	for i, t := range b.BootstrapTokens {
		m[fmt.Sprintf("token[%d]", i)] = []byte(t.Secret)
	}
	return m
}

func TestTwoClustersShareNothing(t *testing.T) {
	a := mustGenerate(t, cluster("alpha"), rand.Reader)
	b := mustGenerate(t, cluster("beta"), rand.Reader)
	for _, x := range []*Bundle{a, b} {
		if _, err := x.AddBootstrapToken(rand.Reader, t0, time.Hour, "test"); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]string{}
	for cname, bundle := range map[string]*Bundle{"alpha": a, "beta": b} {
		values := allSecrets(bundle)
		for _, p := range append(bundle.cas(), bundle.leaves()...) {
			values[p.name+".cert"] = p.kp.CertPEM
		}
		values["serviceAccount.public"] = bundle.ServiceAccount.PublicPEM
		values["ssh.public"] = []byte(bundle.SSH.AuthorizedKeys[0])
		for name, v := range values {
			if len(v) == 0 {
				t.Errorf("%s %s is empty", cname, name)
				continue
			}
			if other, ok := seen[string(v)]; ok {
				t.Errorf("%s %s is the same as %s", cname, name, other)
			}
			seen[string(v)] = cname + " " + name
		}
	}
	// The certificates of one cluster are not trusted by the other.
	if err := a.APIServer.VerifyAt(&b.ClusterCA, t0); err == nil {
		t.Errorf("alpha's API server certificate verifies against beta's CA")
	}
	if err := b.Admin.VerifyAt(&a.ClusterCA, t0); err == nil {
		t.Errorf("beta's admin certificate verifies against alpha's CA")
	}
}

func TestGenerateDeterministic(t *testing.T) {
	a := mustGenerate(t, cluster("same"), seeded(9))
	b := mustGenerate(t, cluster("same"), seeded(9))
	// ssh.MarshalPrivateKey writes 4 check bytes from crypto/rand, so the OpenSSH PEM differs; the key
	// inside does not.
	sa, err := ssh.ParseRawPrivateKey(a.SSH.PrivateKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := ssh.ParseRawPrivateKey(b.SSH.PrivateKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ka, oka := sa.(*ed25519.PrivateKey)
	kb, okb := sb.(*ed25519.PrivateKey)
	if !oka || !okb || !ka.Equal(*kb) {
		t.Errorf("same seed gave different SSH keys")
	}
	a.SSH.PrivateKeyPEM, b.SSH.PrivateKeyPEM = nil, nil
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Errorf("same seed and time gave different bundles")
	}
}

func TestBundleJSON(t *testing.T) {
	b := mustGenerate(t, cluster("json"), seeded(5))
	if _, err := b.AddBootstrapToken(seeded(6), t0, time.Hour, "join"); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"admin", "apiServer", "apiServerEtcdClient", "apiServerKubeletClient", "bootstrapTokens", "clusterCA",
		"controllerManager", "encryptionKey", "etcdCA", "etcdPeer", "etcdServer", "frontProxyCA", "frontProxyClient",
		"scheduler", "serviceAccount", "ssh"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("JSON fields (-want +got):\n%s", diff)
	}
	var back Bundle
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*b, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
}

func TestVerifyFindsEverything(t *testing.T) {
	a := mustGenerate(t, cluster("a"), seeded(1))
	other := mustGenerate(t, cluster("b"), seeded(2))
	a.APIServer = other.APIServer // signed by the wrong CA
	a.Admin.KeyPEM = other.Admin.KeyPEM
	a.EncryptionKey = a.EncryptionKey[:16]
	a.SSH.AuthorizedKeys = other.SSH.AuthorizedKeys
	err := a.Verify(t0)
	if err == nil {
		t.Fatal("Verify succeeded")
	}
	for _, want := range []string{"apiServer:", "admin:", "encryptionKey:", "ssh:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Verify error does not report %q:\n%v", want, err)
		}
	}
	if !errors.Is(err, pki.ErrKeyMismatch) {
		t.Errorf("Verify error does not wrap pki.ErrKeyMismatch")
	}
}

func BenchmarkGenerate(b *testing.B) {
	c := cluster("bench")
	now := time.Now()
	for b.Loop() {
		if _, err := Generate(c, rand.Reader, now); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleControlPlaneNodeNames() {
	c := &v1alpha1.Cluster{Metadata: v1alpha1.Metadata{Name: "prod"}}
	c.Spec.ControlPlane.Count = 3
	fmt.Println(ControlPlaneNodeNames(c))
	// Output: [prod-control-plane-0 prod-control-plane-1 prod-control-plane-2]
}

// An etcd member's certificates name its address, so that its peers verify it at https://ADDR:2380
// and etcd, which checks a peer's client certificate against the address it connects from, admits it.
func TestEtcdMember(t *testing.T) {
	b := mustGenerate(t, cluster("demo"), seeded(1))
	for _, tc := range []struct {
		name string
		addr netip.Addr
	}{
		{name: "demo-control-plane-1", addr: netip.MustParseAddr("10.0.0.11")},
		{name: "demo-control-plane-2", addr: netip.MustParseAddr("fd00:10::12")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, peer, err := b.EtcdMember(seeded(2), t0, tc.name, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			ca, err := b.EtcdCA.Certificate()
			if err != nil {
				t.Fatal(err)
			}
			roots.AddCert(ca)
			for what, kp := range map[string]pki.KeyPair{"server": server, "peer": peer} {
				c, err := kp.Certificate()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				for _, host := range []string{tc.addr.String(), "127.0.0.1", "localhost", tc.name} {
					if _, err := c.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: t0,
						KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
						t.Errorf("%s certificate for %s: %v", what, host, err)
					}
				}
				if err := c.VerifyHostname("demo-control-plane-0"); err == nil {
					t.Errorf("%s certificate names another member", what)
				}
			}
			if bytes.Equal(server.KeyPEM, b.EtcdServer.KeyPEM) || bytes.Equal(server.KeyPEM, peer.KeyPEM) {
				t.Error("the member's keys are not its own")
			}
		})
	}
	if _, _, err := b.EtcdMember(seeded(2), t0, "demo-control-plane-0", netip.Addr{}); err == nil {
		t.Error("EtcdMember without an address: no error")
	}
}

// The cluster init's credentials are issued per render from the cluster CA, for the window given, and
// only the grant's is in system:masters.
func TestClusterInit(t *testing.T) {
	b := mustGenerate(t, cluster("demo"), seeded(1))
	for _, tc := range []struct {
		name     string
		validity time.Duration
		wantErr  string
	}{
		{name: "one hour", validity: time.Hour},
		{name: "the longest a token lives", validity: MaxClusterInitValidity},
		{name: "longer", validity: MaxClusterInitValidity + time.Second, wantErr: "more than 24h0m0s"},
		{name: "none", validity: 0, wantErr: "not positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expires := t0.Add(tc.validity)
			apply, grant, err := b.ClusterInit(seeded(2), t0, tc.validity)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				kp  pki.KeyPair
				cn  string
				org []string
			}{
				{kp: apply, cn: ClusterInitUser, org: []string{ClusterInitGroup}},
				{kp: grant, cn: ClusterInitGrantUser, org: []string{"system:masters"}},
			} {
				got := cert(t, c.kp)
				if got.Subject.CommonName != c.cn || !slices.Equal(got.Subject.Organization, c.org) {
					t.Errorf("subject %s in %v, want %s in %v", got.Subject.CommonName, got.Subject.Organization, c.cn, c.org)
				}
				if !got.NotAfter.Equal(expires) {
					t.Errorf("%s: NotAfter %v, want %v", c.cn, got.NotAfter, expires)
				}
				if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, got.ExtKeyUsage); diff != "" {
					t.Errorf("%s: ExtKeyUsage (-want +got):\n%s", c.cn, diff)
				}
				if err := c.kp.VerifyAt(&b.ClusterCA, t0); err != nil {
					t.Errorf("%s: %v", c.cn, err)
				}
				if err := c.kp.VerifyAt(&b.ClusterCA, expires.Add(time.Second)); err == nil {
					t.Errorf("%s: still valid after it expires", c.cn)
				}
			}
			again, _, err := b.ClusterInit(seeded(3), t0, tc.validity)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(again.KeyPEM, apply.KeyPEM) {
				t.Error("two renders issued the same key")
			}
		})
	}
	if _, _, err := b.ClusterInit(nil, t0, time.Hour); err == nil {
		t.Error("nil random source: no error")
	}
}
