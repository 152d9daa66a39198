package servingcsr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

// known are the machines of the tests: n1 with two private addresses, n2 with one, n3 with none yet.
var known = map[string][]netip.Addr{
	"n1": {netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("fd00::10")},
	"n2": {netip.MustParseAddr("10.0.0.11")},
	"n3": nil,
}

// The tests' keys, each made once when first asked for (the fuzz workers ask for few).
var (
	keysMu sync.Mutex
	keys   = map[string]crypto.Signer{}
)

func key(t testing.TB, name string) crypto.Signer {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keys[name]; ok {
		return k
	}
	var (
		k   crypto.Signer
		err error
	)
	switch name {
	case "p224":
		k, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa1024":
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no test key %s", name)
	}
	if err != nil {
		t.Fatal(err)
	}
	keys[name] = k
	return k
}

// request is a PEM CSR of tmpl signed by k.
func request(t testing.TB, tmpl *x509.CertificateRequest, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// servingTemplate is what node's kubelet asks for: its name and addresses, as system:node:node in
// system:nodes.
func servingTemplate(node string, ips ...string) *x509.CertificateRequest {
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: NodeUserPrefix + node, Organization: []string{NodesGroup}},
		DNSNames: []string{node},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	return tmpl
}

// servingCSR is the CSR object of a kubelet-serving request made by node with the kubelet's usages.
func servingCSR(node string, req []byte) *certificatesv1.CertificateSigningRequest {
	return &certificatesv1.CertificateSigningRequest{
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    req,
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
			Username:   NodeUserPrefix + node,
			Groups:     []string{NodesGroup, "system:authenticated"},
		},
	}
}

func TestDecide(t *testing.T) {
	good := func(t *testing.T) []byte { return request(t, servingTemplate("n1", "10.0.0.10"), key(t, "p256")) }
	tests := []struct {
		name string
		// tmpl and keyName make the request (default: servingTemplate("n1", "10.0.0.10"), p256);
		// raw, when set, is the request instead.
		tmpl    *x509.CertificateRequest
		keyName string
		raw     func(t *testing.T) []byte
		// edit changes the CSR object made by node n1.
		edit        func(csr *certificatesv1.CertificateSigningRequest)
		wantApprove bool
		wantNode    string
		// wantReason are substrings of the verdict's reason.
		wantReason []string
	}{
		{
			name: "the kubelet's request: its name and address, ECDSA P-256", wantApprove: true, wantNode: "n1",
			wantReason: []string{"kubelet serving certificate of node n1 for n1, 10.0.0.10"},
		},
		{
			name: "both addresses of the machine", tmpl: servingTemplate("n1", "10.0.0.10", "fd00::10"),
			wantApprove: true, wantNode: "n1", wantReason: []string{"for n1, 10.0.0.10, fd00::10"},
		},
		{
			name: "an address only", tmpl: &x509.CertificateRequest{
				Subject:     pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup}},
				IPAddresses: []net.IP{net.ParseIP("10.0.0.10")},
			},
			wantApprove: true, wantNode: "n1", wantReason: []string{"for 10.0.0.10"},
		},
		{
			name: "the name only, of a machine without an address yet", tmpl: servingTemplate("n3"),
			edit:        func(csr *certificatesv1.CertificateSigningRequest) { csr.Spec.Username = "system:node:n3" },
			wantApprove: true, wantNode: "n3", wantReason: []string{"node n3 for n3"},
		},
		{
			name: "RSA 2048 with key encipherment", keyName: "rsa2048",
			edit: func(csr *certificatesv1.CertificateSigningRequest) {
				csr.Spec.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageKeyEncipherment, certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
			},
			wantApprove: true, wantNode: "n1",
		},
		{name: "ECDSA P-384", keyName: "p384", wantApprove: true, wantNode: "n1"},

		// Who and what for.
		{
			name: "another signer",
			edit: func(csr *certificatesv1.CertificateSigningRequest) {
				csr.Spec.SignerName = certificatesv1.KubeAPIServerClientKubeletSignerName
			},
			wantReason: []string{`signer "kubernetes.io/kube-apiserver-client-kubelet", not kubernetes.io/kubelet-serving`},
		},
		{
			name: "already approved",
			edit: func(csr *certificatesv1.CertificateSigningRequest) {
				csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
			},
			wantReason: []string{"already approved"},
		},
		{
			name: "already denied",
			edit: func(csr *certificatesv1.CertificateSigningRequest) {
				csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}}
			},
			wantReason: []string{"already denied"},
		},
		{
			name: "failed",
			edit: func(csr *certificatesv1.CertificateSigningRequest) {
				csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue}}
			},
			wantReason: []string{"already failed"},
		},
		{
			name:       "requested by a user who is no node",
			edit:       func(csr *certificatesv1.CertificateSigningRequest) { csr.Spec.Username = "kiln:alice" },
			wantReason: []string{`requested by "kiln:alice", not by a node`},
		},
		{
			name:       "requested by system:node: without a name",
			edit:       func(csr *certificatesv1.CertificateSigningRequest) { csr.Spec.Username = "system:node:" },
			wantReason: []string{`requested by "system:node:", not by a node`},
		},
		{
			name: "a node's name outside system:nodes",
			edit: func(csr *certificatesv1.CertificateSigningRequest) {
				csr.Spec.Groups = []string{"system:authenticated"}
			},
			wantNode:   "n1",
			wantReason: []string{"requested by system:node:n1 outside group system:nodes"},
		},
		{
			name: "a node kiln does not manage", tmpl: servingTemplate("stranger", "10.0.0.10"),
			edit:       func(csr *certificatesv1.CertificateSigningRequest) { csr.Spec.Username = "system:node:stranger" },
			wantNode:   "stranger",
			wantReason: []string{"node stranger is not a machine kiln manages"},
		},

		// The request itself.
		{
			name:       "not PEM",
			raw:        func(*testing.T) []byte { return []byte("hello") },
			wantNode:   "n1",
			wantReason: []string{"the request is not PEM"},
		},
		{
			name: "a PEM certificate, not a request",
			raw: func(t *testing.T) []byte {
				b, _ := pem.Decode(good(t))
				return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})
			},
			wantNode:   "n1",
			wantReason: []string{`the request is a PEM "CERTIFICATE", not a CERTIFICATE REQUEST`},
		},
		{
			name: "a second request after the first",
			raw: func(t *testing.T) []byte {
				return append(good(t), request(t, servingTemplate("n1", "10.0.0.11"), key(t, "p256"))...)
			},
			wantNode:   "n1",
			wantReason: []string{"the request has data after its PEM block"},
		},
		{
			name: "a PEM block that does not parse",
			raw: func(*testing.T) []byte {
				return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x01}})
			},
			wantNode:   "n1",
			wantReason: []string{"the request does not parse"},
		},
		{
			name: "a signature that does not check",
			raw: func(t *testing.T) []byte {
				b, _ := pem.Decode(good(t))
				der := append([]byte(nil), b.Bytes...)
				der[len(der)-1] ^= 0x01 // the last byte of the signature's s
				return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
			},
			wantNode:   "n1",
			wantReason: []string{"the request's signature does not check"},
		},

		// Its subject.
		{
			name: "another node's name in the subject", tmpl: servingTemplate("n2", "10.0.0.11"),
			wantNode: "n1",
			wantReason: []string{`subject CN "system:node:n2", not system:node:n1`,
				`DNS name "n2" is not the node's name n1`, "IP address 10.0.0.11 is not an address of machine n1 (it has 10.0.0.10, fd00::10)"},
		},
		{
			name:     "no organization",
			tmpl:     &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1"}, DNSNames: []string{"n1"}},
			wantNode: "n1", wantReason: []string{`subject O [], not [system:nodes]`},
		},
		{
			name: "system:masters as well",
			tmpl: &x509.CertificateRequest{
				Subject:  pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup, "system:masters"}},
				DNSNames: []string{"n1"},
			},
			wantNode: "n1", wantReason: []string{`subject O ["system:nodes" "system:masters"], not [system:nodes]`},
		},
		{
			name: "an organizational unit",
			tmpl: &x509.CertificateRequest{
				Subject:  pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup}, OrganizationalUnit: []string{"ops"}},
				DNSNames: []string{"n1"},
			},
			wantNode: "n1", wantReason: []string{"subject attribute 2.5.4.11: only CN and O are allowed"},
		},
		{
			name: "an extra attribute",
			tmpl: &x509.CertificateRequest{
				Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup},
					ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "n1"}}},
				DNSNames: []string{"n1"},
			},
			wantNode: "n1", wantReason: []string{"subject attribute 0.9.2342.19200300.100.1.1: only CN and O are allowed"},
		},

		// Its names.
		{
			name:     "no name at all",
			tmpl:     &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup}}},
			wantNode: "n1", wantReason: []string{"no DNS name or IP address to serve"},
		},
		{
			name: "an extra DNS name",
			tmpl: &x509.CertificateRequest{
				Subject:  pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup}},
				DNSNames: []string{"n1", "kubernetes.default.svc"},
			},
			wantNode: "n1", wantReason: []string{`DNS name "kubernetes.default.svc" is not the node's name n1`},
		},
		{
			name: "a wildcard",
			tmpl: &x509.CertificateRequest{
				Subject:  pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup}},
				DNSNames: []string{"*.n1"},
			},
			wantNode: "n1", wantReason: []string{`DNS name "*.n1" is not the node's name n1`},
		},
		{
			name: "an address the machine does not have", tmpl: servingTemplate("n1", "10.0.0.10", "10.0.0.99"),
			wantNode: "n1", wantReason: []string{"IP address 10.0.0.99 is not an address of machine n1"},
		},
		{
			name: "another machine's address", tmpl: servingTemplate("n1", "10.0.0.11"),
			wantNode: "n1", wantReason: []string{"IP address 10.0.0.11 is not an address of machine n1"},
		},
		{
			name: "an address of a machine that has none yet", tmpl: servingTemplate("n3", "10.0.0.12"),
			edit:     func(csr *certificatesv1.CertificateSigningRequest) { csr.Spec.Username = "system:node:n3" },
			wantNode: "n3", wantReason: []string{"IP address 10.0.0.12 is not an address of machine n3 (it has none yet)"},
		},
		{
			name: "an email address",
			tmpl: &x509.CertificateRequest{
				Subject:        pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup}},
				DNSNames:       []string{"n1"},
				EmailAddresses: []string{"root@n1"},
			},
			wantNode: "n1", wantReason: []string{`email addresses ["root@n1"]: none allowed`},
		},
		{
			name: "a URI",
			tmpl: &x509.CertificateRequest{
				Subject:  pkix.Name{CommonName: "system:node:n1", Organization: []string{NodesGroup}},
				DNSNames: []string{"n1"},
				URIs:     []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/kube-system/sa/admin"}},
			},
			wantNode: "n1", wantReason: []string{`URIs ["spiffe://cluster.local/ns/kube-system/sa/admin"]: none allowed`},
		},

		// Its usages.
		{
			name: "client auth as well",
			edit: func(csr *certificatesv1.CertificateSigningRequest) {
				csr.Spec.Usages = append(csr.Spec.Usages, certificatesv1.UsageClientAuth)
			},
			wantNode: "n1", wantReason: []string{`usage "client auth": a kubelet serves with`},
		},
		{
			name: "no server auth",
			edit: func(csr *certificatesv1.CertificateSigningRequest) {
				csr.Spec.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}
			},
			wantNode: "n1", wantReason: []string{`usage "server auth" is missing`},
		},
		{
			name:     "no usages",
			edit:     func(csr *certificatesv1.CertificateSigningRequest) { csr.Spec.Usages = nil },
			wantNode: "n1", wantReason: []string{`usage "digital signature" is missing`, `usage "server auth" is missing`},
		},

		// Its key.
		{name: "ECDSA P-224", keyName: "p224", wantNode: "n1", wantReason: []string{"ECDSA key of 224 bits: at least 256"}},
		{name: "RSA 1024", keyName: "rsa1024", wantNode: "n1", wantReason: []string{"RSA key of 1024 bits: at least 2048"}},
		{name: "Ed25519", keyName: "ed25519", wantNode: "n1", wantReason: []string{"key type Ed25519: only ECDSA and RSA"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req []byte
			if tc.raw != nil {
				req = tc.raw(t)
			} else {
				tmpl := tc.tmpl
				if tmpl == nil {
					tmpl = servingTemplate("n1", "10.0.0.10")
				}
				keyName := tc.keyName
				if keyName == "" {
					keyName = "p256"
				}
				req = request(t, tmpl, key(t, keyName))
			}
			csr := servingCSR("n1", req)
			if tc.edit != nil {
				tc.edit(csr)
			}
			v := Decide(csr, known)
			if v.Approve != tc.wantApprove || v.Node != tc.wantNode {
				t.Errorf("Decide = approve %v, node %q (%s); want approve %v, node %q", v.Approve, v.Node, v.Reason, tc.wantApprove, tc.wantNode)
			}
			if v.Reason == "" {
				t.Error("the verdict has no reason")
			}
			for _, want := range tc.wantReason {
				if !strings.Contains(v.Reason, want) {
					t.Errorf("reason %q\ndoes not say %q", v.Reason, want)
				}
			}
		})
	}
}

func TestDecideNil(t *testing.T) {
	if v := Decide(nil, known); v.Approve || v.Reason == "" {
		t.Errorf("Decide(nil) = %+v", v)
	}
}

// Nothing is known: nothing is approved, not even a perfect request.
func TestDecideKnowsNoMachine(t *testing.T) {
	csr := servingCSR("n1", request(t, servingTemplate("n1", "10.0.0.10"), key(t, "p256")))
	for _, k := range []map[string][]netip.Addr{nil, {}} {
		if v := Decide(csr, k); v.Approve {
			t.Errorf("Decide with known %v approved: %s", k, v.Reason)
		}
	}
}

// FuzzDecide feeds arbitrary bytes to Decide as the CSR's request, as they are (PEM) or wrapped in a
// CERTIFICATE REQUEST block (DER): it must never panic, and what it approves must hold to its rules.
//
//	go test -run '^$' -fuzz FuzzDecide -fuzztime 1m ./bootstrap/servingcsr
func FuzzDecide(f *testing.F) {
	good := request(f, servingTemplate("n1", "10.0.0.10", "fd00::10"), key(f, "p256"))
	block, _ := pem.Decode(good)
	f.Add(good, false)
	f.Add(block.Bytes, true)
	f.Add(request(f, servingTemplate("n1", "10.0.0.99"), key(f, "p384")), false)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"), false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, data []byte, wrap bool) {
		if wrap {
			data = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: data})
		}
		v := Decide(servingCSR("n1", data), known)
		if v.Reason == "" {
			t.Error("a verdict without a reason")
		}
		if !v.Approve {
			return
		}
		b, _ := pem.Decode(data)
		req, err := x509.ParseCertificateRequest(b.Bytes)
		if err != nil || req.CheckSignature() != nil {
			t.Fatalf("approved a request that does not parse or check: %v", err)
		}
		if req.Subject.CommonName != "system:node:n1" || len(req.EmailAddresses)+len(req.URIs) > 0 {
			t.Fatalf("approved %+v", req)
		}
		for _, n := range req.DNSNames {
			if n != "n1" {
				t.Fatalf("approved DNS name %q", n)
			}
		}
		for _, ip := range req.IPAddresses {
			if ip.String() != "10.0.0.10" && ip.String() != "fd00::10" {
				t.Fatalf("approved IP address %s", ip)
			}
		}
	})
}
