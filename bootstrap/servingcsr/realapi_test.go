package servingcsr

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/access"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

const realSpec = `apiVersion: kiln.dev/v1alpha1
kind: Cluster
metadata:
  name: csr
spec:
  provider:
    name: qemu
  controlPlane:
    image: kiln-debian-12.qcow2
  nodePools:
    - name: workers
      count: 2
      image: kiln-debian-12.qcow2
  ssh:
    generate: true
`

// signTimeout bounds how long the controller manager may take to sign an approved CSR (its leader
// election included, on a busy machine).
const signTimeout = 2 * time.Minute

// TestApproveOnARealAPI: against a real etcd, kube-apiserver and kube-controller-manager started from
// kiln's rendered control-plane files, kubelet serving CSRs are made as the kubelets make them (each
// with a client certificate of its node, system:node:NAME in system:nodes, from the cluster CA, so that
// the API server itself sets spec.username and spec.groups), and Approve runs with the admin
// certificate (kiln:cluster-admins through kiln's RBAC, as `kiln apply`'s own). It approves the CSR
// of a machine it knows for its name and address, and the controller manager signs it; it leaves
// pending that of a node it does not know, one with an address not the machine's, one with an
// extra DNS name, and one made by one machine for another's name and address.
//
//	CI=true go test -count=1 -run TestApproveOnARealAPI -v ./bootstrap/servingcsr
func TestApproveOnARealAPI(t *testing.T) {
	ctx := t.Context()
	c, err := v1alpha1.Decode([]byte(realSpec), "cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute)
	b, err := secrets.Generate(c, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := secrets.NewBootstrapToken(rand.Reader, now, time.Hour, "servingcsr test")
	if err != nil {
		t.Fatal(err)
	}
	b.BootstrapTokens = append(b.BootstrapTokens, tok)
	cp := controlplanetest.Start(t, ignition.Input{Cluster: c, Secrets: b, Token: tok})
	admin := client(t, cp, b, b.Admin.CertPEM, b.Admin.KeyPEM)

	const w0, w1 = "csr-workers-0", "csr-workers-1"
	known := map[string][]netip.Addr{
		w0: {netip.MustParseAddr("10.0.0.10")},
		w1: {netip.MustParseAddr("10.0.0.11")},
	}
	// create makes a kubelet-serving CSR of tmpl as node, with a fresh P-256 key.
	create := func(t *testing.T, node string, tmpl *x509.CertificateRequest) (*certificatesv1.CertificateSigningRequest, error) {
		t.Helper()
		kp, err := access.ClientCertificate(&b.ClusterCA, rand.Reader, time.Now(), NodeUserPrefix+node, []string{NodesGroup}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return client(t, cp, b, kp.CertPEM, kp.KeyPEM).CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-"},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request:    request(t, tmpl, key),
				SignerName: certificatesv1.KubeletServingSignerName,
				Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
			},
		}, metav1.CreateOptions{})
	}
	// asNode is create that must succeed, and returns the CSR's name.
	asNode := func(t *testing.T, node string, tmpl *x509.CertificateRequest) string {
		t.Helper()
		csr, err := create(t, node, tmpl)
		if err != nil {
			t.Fatalf("node %s creating its serving CSR: %v", node, err)
		}
		if csr.Spec.Username != NodeUserPrefix+node || !slices.Contains(csr.Spec.Groups, NodesGroup) {
			t.Fatalf("the API server took node %s's CSR as %s in %v", node, csr.Spec.Username, csr.Spec.Groups)
		}
		return csr.Name
	}
	extraName := servingTemplate(w0, "10.0.0.10")
	extraName.DNSNames = append(extraName.DNSNames, "kubernetes.default.svc")
	// w1, in its own name (the API server's NodeRestriction refuses another CN, see below), asks for
	// w0's DNS name and address.
	othersNames := servingTemplate(w0, "10.0.0.10")
	othersNames.Subject.CommonName = NodeUserPrefix + w1
	good := asNode(t, w0, servingTemplate(w0, "10.0.0.10"))
	left := map[string]string{
		asNode(t, "stranger", servingTemplate("stranger", "10.0.0.50")): "node stranger is not a machine kiln manages",
		asNode(t, w1, servingTemplate(w1, "10.0.0.10")):                 "IP address 10.0.0.10 is not an address of machine csr-workers-1 (it has 10.0.0.11)",
		asNode(t, w0, extraName):                                        `DNS name "kubernetes.default.svc" is not the node's name csr-workers-0`,
		asNode(t, w1, othersNames): `DNS name "csr-workers-0" is not the node's name csr-workers-1; ` +
			`IP address 10.0.0.10 is not an address of machine csr-workers-1 (it has 10.0.0.11)`,
	}
	// A node's CSR in another node's name (CN) is refused by the API server itself; Decide leaves
	// one too (TestDecide, "another node's name in the subject").
	if _, err := create(t, w1, servingTemplate(w0, "10.0.0.10")); !apierrors.IsForbidden(err) {
		t.Errorf("node %s creating a CSR as %s: %v, want 403 from NodeRestriction", w1, w0, err)
	}

	r, err := Approve(ctx, admin, known, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Approved, []string{good}) {
		t.Errorf("approved %v, want only %s", r.Approved, good)
	}
	got := map[string]string{}
	for _, l := range r.Left {
		got[l.Name] = l.Reason
	}
	for name, why := range left {
		if got[name] != why {
			t.Errorf("CSR %s left because %q, want %q", name, got[name], why)
		}
	}
	if len(got) != len(left) {
		t.Errorf("left %v, want %d CSRs", got, len(left))
	}

	// The controller manager signs the approved CSR with the cluster CA, for the machine's name and
	// address, for serving.
	csr := waitSigned(t, admin, good)
	blk, _ := pem.Decode(csr.Status.Certificate)
	if blk == nil {
		t.Fatalf("the certificate of %s is not PEM", good)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.ClusterCA.CertPEM)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: w0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the issued certificate does not verify as %s's serving certificate against the cluster CA: %v", w0, err)
	}
	if len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP("10.0.0.10")) || cert.Subject.CommonName != NodeUserPrefix+w0 {
		t.Errorf("the issued certificate is for %s, %v", cert.Subject, cert.IPAddresses)
	}
	var approved *certificatesv1.CertificateSigningRequestCondition
	for i, cond := range csr.Status.Conditions {
		if cond.Type == certificatesv1.CertificateApproved {
			approved = &csr.Status.Conditions[i]
		}
	}
	if approved == nil || approved.Reason != ApprovalReason {
		t.Errorf("conditions of %s: %+v; want Approved with reason %s", good, csr.Status.Conditions, ApprovalReason)
	}

	// By now the controller manager has had its chance: what kiln left is still pending.
	for name := range left {
		csr, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(csr.Status.Conditions) != 0 || len(csr.Status.Certificate) != 0 {
			t.Errorf("CSR %s, which kiln left, has conditions %+v", name, csr.Status.Conditions)
		}
	}

	// A second run finds nothing new to approve, and leaves the same.
	r, err = Approve(ctx, admin, known, nil)
	if err != nil || len(r.Approved) != 0 || len(r.Left) != len(left) {
		t.Errorf("Approve again = %+v, %v; want nothing approved, %d left", r, err, len(left))
	}
}

// client is a client of cp's API server that trusts the cluster CA and presents certPEM and keyPEM.
func client(t *testing.T, cp *controlplane.ControlPlane, b *secrets.Bundle, certPEM, keyPEM []byte) kubernetes.Interface {
	t.Helper()
	cfg := controlplanetest.Config(cp, b.ClusterCA.CertPEM)
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitSigned waits until CSR name has a certificate and returns it.
func waitSigned(t *testing.T, c kubernetes.Interface, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	var (
		csr *certificatesv1.CertificateSigningRequest
		err error
	)
	_ = wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, signTimeout, true, func(ctx context.Context) (bool, error) {
		csr, err = c.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		return err == nil && len(csr.Status.Certificate) > 0, nil
	})
	if err != nil || len(csr.Status.Certificate) == 0 {
		t.Fatalf("CSR %s was not signed within %v: %v", name, signTimeout, err)
	}
	return csr
}
