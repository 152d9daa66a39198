package access

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/pki"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func seeded(seed byte) io.Reader { return mathrand.NewChaCha8([32]byte{seed}) }

func testCA(t *testing.T) *pki.KeyPair {
	t.Helper()
	ca, err := pki.NewCA(seeded(1), "kiln demo cluster CA", t0.Add(-time.Hour), 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func request() Request {
	return Request{Cluster: "demo", Server: "https://api.demo.kiln.internal:6443", User: "kiln:alice", Groups: []string{"kiln:developers"}}
}

func TestIssue(t *testing.T) {
	ca := testCA(t)
	caCert, err := ca.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		req           Request
		wantGroups    []string
		wantTTL       time.Duration
		wantTLSServer string
	}{
		{name: "defaults", req: request(), wantGroups: []string{"kiln:developers"}, wantTTL: DefaultTTL},
		{
			name: "forwarded port, two groups, a day",
			req: func() Request {
				r := request()
				r.Server, r.TLSServerName = "https://127.0.0.1:40123", "api.demo.kiln.internal"
				r.Groups, r.TTL = []string{"kiln:developers", "kiln:cluster-admins", "kiln:developers"}, MaxTTL
				return r
			}(),
			wantGroups: []string{"kiln:developers", "kiln:cluster-admins"}, wantTTL: MaxTTL, wantTLSServer: "api.demo.kiln.internal",
		},
		{
			name:       "admin",
			req:        func() Request { r := request(); r.Admin, r.TTL = true, 15*time.Minute; return r }(),
			wantGroups: []string{"kiln:developers", MastersGroup}, wantTTL: 15 * time.Minute,
		},
		{
			name:       "admin naming the group itself",
			req:        func() Request { r := request(); r.Admin, r.Groups = true, []string{MastersGroup}; return r }(),
			wantGroups: []string{MastersGroup}, wantTTL: DefaultTTL,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := Issue(ca, seeded(2), t0, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantGroups, cred.Groups); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
			if !cred.NotAfter.Equal(t0.Add(tc.wantTTL)) {
				t.Errorf("NotAfter = %v, want %v", cred.NotAfter, t0.Add(tc.wantTTL))
			}
			// The kubeconfig as client-go reads it.
			rc, err := clientcmd.RESTConfigFromKubeConfig(cred.Kubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			if rc.Host != tc.req.Server || rc.TLSClientConfig.ServerName != tc.wantTLSServer || rc.TLSClientConfig.Insecure {
				t.Errorf("host %s, TLS server name %q, insecure %v; want %s, %q and verification on", rc.Host, rc.TLSClientConfig.ServerName, rc.TLSClientConfig.Insecure, tc.req.Server, tc.wantTLSServer)
			}
			if !bytes.Equal(rc.TLSClientConfig.CAData, ca.CertPEM) {
				t.Error("the kubeconfig does not trust exactly the cluster CA")
			}
			if bytes.Contains(cred.Kubeconfig, ca.KeyPEM) {
				t.Fatal("the kubeconfig holds the CA's key")
			}
			kp := pki.KeyPair{CertPEM: rc.TLSClientConfig.CertData, KeyPEM: rc.TLSClientConfig.KeyData}
			cert, err := kp.Certificate()
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != tc.req.User {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, tc.req.User)
			}
			// DER sorts the organizations of one name (a SET OF).
			if diff := cmp.Diff(tc.wantGroups, cert.Subject.Organization, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("O (-want +got):\n%s", diff)
			}
			if !cert.NotBefore.Equal(t0.Add(-pki.ClockSkew)) || !cert.NotAfter.Equal(t0.Add(tc.wantTTL)) {
				t.Errorf("valid %v to %v, want %v to %v", cert.NotBefore, cert.NotAfter, t0.Add(-pki.ClockSkew), t0.Add(tc.wantTTL))
			}
			if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage); diff != "" || cert.IsCA {
				t.Errorf("usages (-want +got):\n%s (CA %v)", diff, cert.IsCA)
			}
			pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
			if !ok || pub.Curve != elliptic.P256() {
				t.Errorf("key %T, want ECDSA P-256", cert.PublicKey)
			}
			pool := x509.NewCertPool()
			pool.AddCert(caCert)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("the certificate does not verify as a client's of the CA: %v", err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0.Add(tc.wantTTL + time.Second), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
				t.Error("the certificate still verifies after its TTL")
			}
		})
	}
}

// TestIssueFreshKey: every credential has a key of its own.
func TestIssueFreshKey(t *testing.T) {
	ca := testCA(t)
	rnd := seeded(3)
	a, err := Issue(ca, rnd, t0, request())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Issue(ca, rnd, t0, request())
	if err != nil {
		t.Fatal(err)
	}
	ka, _ := clientcmd.RESTConfigFromKubeConfig(a.Kubeconfig)
	kb, _ := clientcmd.RESTConfigFromKubeConfig(b.Kubeconfig)
	if bytes.Equal(ka.KeyData, kb.KeyData) {
		t.Error("two credentials share a key")
	}
}

func TestIssueRefuses(t *testing.T) {
	ca := testCA(t)
	with := func(f func(r *Request)) Request {
		r := request()
		f(&r)
		return r
	}
	for _, tc := range []struct {
		name string
		req  Request
		is   error
		want []string
	}{
		{name: "masters without admin", req: with(func(r *Request) { r.Groups = []string{"kiln:dev", MastersGroup} }), is: ErrReserved,
			want: []string{"group system:masters bypasses RBAC and is given only with Admin"}},
		{name: "a node's group", req: with(func(r *Request) { r.Groups = []string{"system:nodes"} }), is: ErrReserved, want: []string{`group "system:nodes"`}},
		{name: "a component's name", req: with(func(r *Request) { r.User = "system:kube-controller-manager" }), is: ErrReserved, want: []string{`user "system:kube-controller-manager"`}},
		{name: "a node's name, even as admin", req: with(func(r *Request) { r.User, r.Admin = "system:node:demo-workers-0", true }), is: ErrReserved, want: []string{`user "system:node:demo-workers-0"`}},
		{name: "more than a day", req: with(func(r *Request) { r.TTL = 25 * time.Hour }), is: ErrInvalid, want: []string{"ttl 25h0m0s: at most 24h0m0s"}},
		{name: "negative ttl", req: with(func(r *Request) { r.TTL = -time.Second }), is: ErrInvalid, want: []string{"ttl -1s: not positive"}},
		{name: "no user", req: with(func(r *Request) { r.User = "" }), is: ErrInvalid, want: []string{"no user"}},
		{name: "long user", req: with(func(r *Request) { r.User = strings.Repeat("a", 65) }), is: ErrInvalid, want: []string{"longer than 64"}},
		{name: "comma in a group", req: with(func(r *Request) { r.Groups = []string{"a,b", ""} }), is: ErrInvalid, want: []string{`group "a,b"`, "an empty group"}},
		{name: "http server", req: with(func(r *Request) { r.Server = "http://api:6443" }), is: ErrInvalid, want: []string{`server "http://api:6443"`}},
		{name: "everything", req: Request{Groups: []string{MastersGroup}, TTL: 48 * time.Hour}, is: ErrInvalid,
			want: []string{"no cluster name", "server", "no user", "system:masters", "ttl 48h"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := Issue(ca, seeded(4), t0, tc.req)
			if cred != nil || err == nil {
				t.Fatalf("Issue = %v, %v; want a refusal", cred, err)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := Issue(&pki.KeyPair{}, seeded(4), t0, request()); !errors.Is(err, ErrInvalid) {
		t.Errorf("Issue without a CA = %v, want ErrInvalid", err)
	}
	// A CA not valid then issues nothing.
	if _, err := Issue(ca, seeded(4), t0.Add(-2*time.Hour), request()); err == nil {
		t.Error("Issue before the CA is valid succeeded")
	}
}

func TestTLSServerName(t *testing.T) {
	for _, tc := range []struct {
		server, want string
	}{
		{"https://api.demo.kiln.internal:6443", ""},
		{"https://nlb-1234.elb.eu-west-1.amazonaws.com", ""},
		{"https://127.0.0.1:40123", "api.demo.kiln.internal"},
		{"https://localhost:40123", "api.demo.kiln.internal"},
		{"https://10.0.0.10:6443", "api.demo.kiln.internal"},
		{"https://[::1]:6443", "api.demo.kiln.internal"},
	} {
		got, err := TLSServerName(tc.server, "api.demo.kiln.internal")
		if err != nil || got != tc.want {
			t.Errorf("TLSServerName(%s) = %q, %v; want %q", tc.server, got, err, tc.want)
		}
	}
	if _, err := TLSServerName("not a url", "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("TLSServerName(not a url) = %v, want ErrInvalid", err)
	}
}

func TestEndpoint(t *testing.T) {
	c := v1alpha1.Starter("demo")
	if server, name := Endpoint(c); server != "https://api.demo.kiln.internal:6443" || name != "api.demo.kiln.internal" {
		t.Errorf("Endpoint(starter) = %s, %s", server, name)
	}
	c.Spec.Network.APIEndpoint = v1alpha1.APIEndpoint{LoadBalancerName: "k8s.example.org", Port: 443}
	if server, name := Endpoint(c); server != "https://k8s.example.org:443" || name != "k8s.example.org" {
		t.Errorf("Endpoint = %s, %s", server, name)
	}
	c.Spec.Network.APIEndpoint = v1alpha1.APIEndpoint{}
	if server, _ := Endpoint(c); server != "https://api.demo.kiln.internal:6443" {
		t.Errorf("Endpoint of an undefaulted spec = %s", server)
	}
}
