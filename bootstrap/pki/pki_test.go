package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// seeded is a deterministic random stream for tests.
func seeded(seed byte) io.Reader {
	return mathrand.NewChaCha8([32]byte{seed})
}

func mustCA(t *testing.T, rand io.Reader, cn string) *KeyPair {
	t.Helper()
	ca, err := NewCA(rand, cn, t0, 10*365*24*time.Hour)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", cn, err)
	}
	return ca
}

func TestNewCA(t *testing.T) {
	ca := mustCA(t, seeded(1), "test ca")
	cert, key, err := ca.Parse()
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if key.Curve != elliptic.P256() {
		t.Errorf("curve = %v, want P-256", key.Curve.Params().Name)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v, want both true", cert.IsCA, cert.BasicConstraintsValid)
	}
	if cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("MaxPathLen = %d, MaxPathLenZero = %v, want 0, true", cert.MaxPathLen, cert.MaxPathLenZero)
	}
	wantUsage := x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	if cert.KeyUsage != wantUsage {
		t.Errorf("KeyUsage = %b, want %b", cert.KeyUsage, wantUsage)
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.SubjectKeyId) != 20 || !bytes.Equal(cert.SubjectKeyId, skid) {
		t.Errorf("SubjectKeyId = %x, want %x", cert.SubjectKeyId, skid)
	}
	if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %x is not a positive 128-bit number", cert.SerialNumber)
	}
	if cert.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("SignatureAlgorithm = %v, want ECDSAWithSHA256", cert.SignatureAlgorithm)
	}
	if want := t0.Add(-ClockSkew); !cert.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %v, want %v", cert.NotBefore, want)
	}
	if want := t0.Add(10 * 365 * 24 * time.Hour); !cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", cert.NotAfter, want)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if block, _ := pem.Decode(ca.KeyPEM); block == nil || block.Type != "PRIVATE KEY" {
		t.Errorf("KeyPEM is not a PKCS#8 PRIVATE KEY block")
	}
	if err := ca.VerifyAt(ca, t0); err != nil {
		t.Errorf("ca does not verify against itself: %v", err)
	}
}

func TestIssueVerify(t *testing.T) {
	ca := mustCA(t, seeded(1), "ca one")
	other := mustCA(t, seeded(2), "ca two")
	// Same subject as ca, different key: only the signature tells them apart.
	impostor := mustCA(t, seeded(3), "ca one")

	server, err := ca.Issue(seeded(4), CertRequest{
		CommonName: "kube-apiserver",
		DNSNames:   []string{"api.example.internal", "kubernetes"},
		IPs:        []net.IP{net.ParseIP("10.96.0.1"), net.ParseIP("::1")},
		Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		Validity:   365 * 24 * time.Hour,
	}, t0)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	cert, key, err := server.Parse()
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if key.Curve != elliptic.P256() {
		t.Errorf("leaf curve = %s, want P-256", key.Curve.Params().Name)
	}
	if diff := cmp.Diff([]string{"api.example.internal", "kubernetes"}, cert.DNSNames); diff != "" {
		t.Errorf("DNSNames (-want +got):\n%s", diff)
	}
	gotIPs := make([]string, len(cert.IPAddresses))
	for i, ip := range cert.IPAddresses {
		gotIPs[i] = ip.String()
	}
	if diff := cmp.Diff([]string{"10.96.0.1", "::1"}, gotIPs); diff != "" {
		t.Errorf("IPAddresses (-want +got):\n%s", diff)
	}
	caCert, _ := ca.Certificate()
	if !bytes.Equal(cert.AuthorityKeyId, caCert.SubjectKeyId) || len(cert.AuthorityKeyId) == 0 {
		t.Errorf("AuthorityKeyId = %x, want the ca's SubjectKeyId %x", cert.AuthorityKeyId, caCert.SubjectKeyId)
	}
	if cert.IsCA || !cert.BasicConstraintsValid {
		t.Errorf("leaf IsCA = %v, BasicConstraintsValid = %v", cert.IsCA, cert.BasicConstraintsValid)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("leaf KeyUsage = %b, want DigitalSignature", cert.KeyUsage)
	}
	if err := cert.VerifyHostname("api.example.internal"); err != nil {
		t.Errorf("VerifyHostname: %v", err)
	}

	expires := t0.Add(365 * 24 * time.Hour)
	tests := []struct {
		name    string
		ca      *KeyPair
		now     time.Time
		wantErr bool
	}{
		{name: "own ca", ca: ca, now: t0},
		{name: "own ca within clock skew", ca: ca, now: t0.Add(-ClockSkew + time.Second)},
		{name: "own ca just before expiry", ca: ca, now: expires.Add(-time.Second)},
		{name: "another ca", ca: other, now: t0, wantErr: true},
		{name: "ca with the same name and another key", ca: impostor, now: t0, wantErr: true},
		{name: "expired", ca: ca, now: expires.Add(time.Second), wantErr: true},
		{name: "not yet valid", ca: ca, now: t0.Add(-ClockSkew - time.Second), wantErr: true},
		{name: "leaf is not a ca", ca: server, now: t0, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := server.VerifyAt(tc.ca, tc.now)
			if (err != nil) != tc.wantErr {
				t.Fatalf("VerifyAt() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestIssueErrors(t *testing.T) {
	ca := mustCA(t, seeded(1), "ca")
	leaf, err := ca.Issue(seeded(2), CertRequest{CommonName: "leaf", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: time.Hour}, t0)
	if err != nil {
		t.Fatal(err)
	}
	ok := CertRequest{CommonName: "x", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: time.Hour}
	tests := []struct {
		name    string
		ca      *KeyPair
		req     func(r CertRequest) CertRequest
		now     time.Time
		rand    io.Reader
		nilRand bool
		wantErr error
	}{
		{name: "empty common name", ca: ca, now: t0, req: func(r CertRequest) CertRequest { r.CommonName = ""; return r }},
		{name: "zero validity", ca: ca, now: t0, req: func(r CertRequest) CertRequest { r.Validity = 0; return r }},
		{name: "no usages", ca: ca, now: t0, req: func(r CertRequest) CertRequest { r.Usages = nil; return r }},
		{name: "issuer is a leaf", ca: leaf, now: t0, wantErr: ErrNotCA},
		{name: "ca expired", ca: ca, now: t0.Add(11 * 365 * 24 * time.Hour)},
		{name: "ca not yet valid", ca: ca, now: t0.Add(-time.Hour)},
		{name: "leaf would outlive ca", ca: ca, now: t0.Add(10*365*24*time.Hour - time.Minute)},
		{name: "nil random source", ca: ca, now: t0, nilRand: true},
		{name: "random source fails", ca: ca, now: t0, rand: iotestErrReader{}},
		{name: "ca without certificate", ca: &KeyPair{KeyPEM: ca.KeyPEM}, now: t0, wantErr: ErrNoCertificate},
		{name: "ca with mismatched key", ca: &KeyPair{CertPEM: ca.CertPEM, KeyPEM: leaf.KeyPEM}, now: t0, wantErr: ErrKeyMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := ok
			if tc.req != nil {
				req = tc.req(req)
			}
			r := tc.rand
			if r == nil && !tc.nilRand {
				r = seeded(9)
			}
			kp, err := tc.ca.Issue(r, req, tc.now)
			if err == nil {
				t.Fatalf("Issue() = %v, want an error", kp)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Issue() = %v, want errors.Is %v", err, tc.wantErr)
			}
			if msg := err.Error(); msg != strings.ToLower(msg[:1])+msg[1:] {
				t.Errorf("error %q does not start lowercase", msg)
			}
		})
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("entropy exhausted") }

func TestDeterministic(t *testing.T) {
	issue := func(seed byte) (*KeyPair, *KeyPair, *KeyPair) {
		r := seeded(seed)
		ca := mustCA(t, r, "ca")
		leaf, err := ca.Issue(r, CertRequest{CommonName: "leaf", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, Validity: time.Hour}, t0)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := NewKeyPair(r)
		if err != nil {
			t.Fatal(err)
		}
		return ca, leaf, sa
	}
	ca1, leaf1, sa1 := issue(7)
	ca2, leaf2, sa2 := issue(7)
	for _, p := range []struct {
		name string
		a, b *KeyPair
	}{{"ca", ca1, ca2}, {"leaf", leaf1, leaf2}, {"service account", sa1, sa2}} {
		if !bytes.Equal(p.a.CertPEM, p.b.CertPEM) || !bytes.Equal(p.a.KeyPEM, p.b.KeyPEM) || !bytes.Equal(p.a.PublicPEM, p.b.PublicPEM) {
			t.Errorf("%s: same seed and time gave different key pairs", p.name)
		}
	}
	ca3, leaf3, sa3 := issue(8)
	for _, p := range []struct {
		name string
		a, b *KeyPair
	}{{"ca", ca1, ca3}, {"leaf", leaf1, leaf3}, {"service account", sa1, sa3}} {
		if bytes.Equal(p.a.KeyPEM, p.b.KeyPEM) {
			t.Errorf("%s: different seeds gave the same key", p.name)
		}
	}
}

func TestNewKeyPair(t *testing.T) {
	kp, err := NewKeyPair(seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(kp.CertPEM) != 0 {
		t.Errorf("bare key pair has a certificate")
	}
	if block, _ := pem.Decode(kp.PublicPEM); block == nil || block.Type != "PUBLIC KEY" {
		t.Errorf("PublicPEM is not a PUBLIC KEY block")
	}
	if block, _ := pem.Decode(kp.KeyPEM); block == nil || block.Type != "PRIVATE KEY" {
		t.Errorf("KeyPEM is not a PRIVATE KEY block")
	}
	if err := kp.VerifyAt(nil, t0); err != nil {
		t.Errorf("VerifyAt: %v", err)
	}
	if _, err := kp.Certificate(); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("Certificate() = %v, want ErrNoCertificate", err)
	}
	other, err := NewKeyPair(seeded(2))
	if err != nil {
		t.Fatal(err)
	}
	mixed := &KeyPair{KeyPEM: other.KeyPEM, PublicPEM: kp.PublicPEM}
	if err := mixed.VerifyAt(nil, t0); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("mismatched bare pair VerifyAt() = %v, want ErrKeyMismatch", err)
	}
}

func TestParseRejects(t *testing.T) {
	ca := mustCA(t, seeded(1), "ca")
	other := mustCA(t, seeded(2), "other")
	pubOnly, _ := NewKeyPair(seeded(3))
	tests := []struct {
		name    string
		kp      KeyPair
		wantErr error
	}{
		{name: "key of another certificate", kp: KeyPair{CertPEM: ca.CertPEM, KeyPEM: other.KeyPEM}, wantErr: ErrKeyMismatch},
		{name: "no key", kp: KeyPair{CertPEM: ca.CertPEM}},
		{name: "garbage certificate", kp: KeyPair{CertPEM: []byte("not pem"), KeyPEM: ca.KeyPEM}},
		{name: "public key where the certificate belongs", kp: KeyPair{CertPEM: pubOnly.PublicPEM, KeyPEM: ca.KeyPEM}},
		{name: "two certificates", kp: KeyPair{CertPEM: append(append([]byte(nil), ca.CertPEM...), other.CertPEM...), KeyPEM: ca.KeyPEM}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.kp.Parse()
			if err == nil {
				t.Fatal("Parse() succeeded, want an error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Parse() = %v, want errors.Is %v", err, tc.wantErr)
			}
		})
	}
}

// TestTLSHandshake proves the certificates work for what they are for: mutual TLS between a server
// certificate and a client certificate from the same CA, refused for a client from another CA.
func TestTLSHandshake(t *testing.T) {
	now := time.Now() // crypto/tls checks validity against the wall clock
	ca := mustCANow(t, seeded(1), now)
	other := mustCANow(t, seeded(2), now)
	server, err := ca.Issue(seeded(3), CertRequest{CommonName: "server", DNSNames: []string{"server.test"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, Validity: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		issuer  *KeyPair
		wantErr bool
	}{
		{name: "client from the same ca", issuer: ca},
		{name: "client from another ca", issuer: other, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, err := tc.issuer.Issue(seeded(4), CertRequest{CommonName: "client", Organization: []string{"group"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: time.Hour}, now)
			if err != nil {
				t.Fatal(err)
			}
			err = handshake(t, ca, server, client)
			if (err != nil) != tc.wantErr {
				t.Fatalf("handshake() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func mustCANow(t *testing.T, rand io.Reader, now time.Time) *KeyPair {
	t.Helper()
	ca, err := NewCA(rand, "ca", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func handshake(t *testing.T, ca, server, client *KeyPair) error {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertPEM) {
		t.Fatal("AppendCertsFromPEM failed")
	}
	serverCert, err := tls.X509KeyPair(server.CertPEM, server.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	srv := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})
	cli := tls.Client(c, &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: pool, ServerName: "server.test", MinVersion: tls.VersionTLS13})
	errc := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		s.Close()
		errc <- err
	}()
	cerr := cli.Handshake()
	if cerr == nil {
		// In TLS 1.3 the client learns that the server refused its certificate on the first read.
		_, cerr = cli.Read(make([]byte, 1))
		if errors.Is(cerr, io.EOF) {
			cerr = nil
		}
	}
	c.Close()
	serr := <-errc
	return errors.Join(serr, cerr)
}

func TestFormatRedactsKey(t *testing.T) {
	ca := mustCA(t, seeded(1), "ca")
	sa, _ := NewKeyPair(seeded(2))
	for _, kp := range []*KeyPair{ca, sa} {
		der, _ := pem.Decode(kp.KeyPEM)
		secrets := []string{string(kp.KeyPEM), fmt.Sprint([]byte(kp.KeyPEM)[:40]), fmt.Sprintf("%x", der.Bytes[:16]), string(kp.KeyPEM[40:80])}
		var logs bytes.Buffer
		slog.New(slog.NewJSONHandler(&logs, nil)).Info("pair", "kp", *kp, "ptr", kp)
		slog.New(slog.NewTextHandler(&logs, nil)).Info("pair", "kp", *kp, "ptr", kp)
		out := fmt.Sprintf("%v %+v %#v %s %q %x %X %d", *kp, *kp, *kp, *kp, *kp, *kp, *kp, *kp) +
			fmt.Sprintf("%v %+v %#v %s", kp, kp, kp, kp) + kp.String() + kp.GoString() + logs.String()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("formatted key pair contains key material %q:\n%s", s, out)
			}
		}
		if !strings.Contains(out, Redacted) {
			t.Errorf("formatted key pair does not say %s:\n%s", Redacted, out)
		}
	}
}

func TestNewKeyRejectionSampling(t *testing.T) {
	// All-ones is above the P-256 group order and must be rejected, then the next draw used.
	ones := bytes.Repeat([]byte{0xff}, 32)
	good := bytes.Repeat([]byte{0x01}, 32)
	key, err := newKey(io.MultiReader(bytes.NewReader(ones), bytes.NewReader(good)))
	if err != nil {
		t.Fatalf("newKey: %v", err)
	}
	want, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), good)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(want) {
		t.Errorf("newKey did not use the first in-range draw")
	}
	if _, err := newKey(bytes.NewReader(bytes.Repeat([]byte{0xff}, 32*64))); err == nil {
		t.Errorf("newKey accepted a reader that only gives out-of-range scalars")
	}
	if _, err := newKey(bytes.NewReader(make([]byte, 32*64))); err == nil {
		t.Errorf("newKey accepted a zero scalar")
	}
}

func ExampleNewCA() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rand := mathrand.NewChaCha8([32]byte{}) // crypto/rand.Reader in production
	ca, _ := NewCA(rand, "example ca", now, 24*time.Hour)
	leaf, _ := ca.Issue(rand, CertRequest{
		CommonName: "example.internal",
		DNSNames:   []string{"example.internal"},
		Usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		Validity:   time.Hour,
	}, now)
	fmt.Println(leaf.VerifyAt(ca, now.Add(30*time.Minute)))
	fmt.Println(leaf.VerifyAt(ca, now.Add(2*time.Hour)) != nil)
	// Output:
	// <nil>
	// true
}
